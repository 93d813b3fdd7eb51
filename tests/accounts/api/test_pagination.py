"""Lists page with an opaque cursor; walking ``next`` visits every row exactly once."""

import pytest

from tests.accounts.api.support import api
from tests.accounts.factories import ContactFactory, CustomerFactory

pytestmark = pytest.mark.django_db


def walk(client, url: str, **params) -> tuple[list[dict], list[dict]]:
    """Every row of a list by following ``next``; also the pages as returned."""
    pages, rows = [], []
    response = client.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        page = response.json()
        pages.append(page)
        rows.extend(page["results"])
        if page["next"] is None:
            return rows, pages
        response = client.get(page["next"])


def test_contacts_are_walked_page_by_page_without_duplicates(
    customer_a, customer_b, operator_token
):
    made = [ContactFactory(customer=customer_a) for _ in range(4)]
    made += [ContactFactory(customer=customer_b) for _ in range(3)]

    rows, pages = walk(api(operator_token), "/api/v1/contacts", limit=2)

    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == {c.pk for c in made}
    assert [len(p["results"]) for p in pages] == [2, 2, 2, 1]
    assert "cursor=" in pages[0]["next"]
    assert pages[0]["previous"] is None
    # Newest first.
    assert ids == sorted(ids, reverse=True)


def test_customers_are_walked_page_by_page_without_duplicates(operator_token):
    made = {CustomerFactory().external_id for _ in range(5)}

    rows, pages = walk(api(operator_token), "/api/v1/customers", limit=2)

    external_ids = [row["external_id"] for row in rows]
    assert len(external_ids) == len(set(external_ids)) == 5
    assert set(external_ids) == made
    assert len(pages) == 3


def test_filter_is_kept_across_pages(customer_a, customer_b, operator_token):
    mine = {ContactFactory(customer=customer_a).pk for _ in range(3)}
    ContactFactory(customer=customer_b)

    rows, _ = walk(api(operator_token), "/api/v1/contacts", limit=2, customer="alpha")

    assert {row["id"] for row in rows} == mine


def test_default_page_is_one_page_when_everything_fits(customer_a, customer_a_token):
    ContactFactory(customer=customer_a)
    body = api(customer_a_token).get("/api/v1/contacts").json()
    assert (len(body["results"]), body["next"]) == (1, None)
