"""The catalog services refuse text PostgreSQL cannot store, by name and before writing."""

import pytest

from accounts.errors import InvalidInput
from invoicing import services
from invoicing.models import Plan, PlanVersion
from tests.invoicing.factories import flat

pytestmark = pytest.mark.django_db


@pytest.fixture
def plan():
    return services.plan_create(actor=None, code="growth", name="Growth", currency="USD")


@pytest.mark.parametrize(
    ("components", "notes", "field"),
    [
        ([flat("1", description="a\x00b")], "", "components[0].description"),
        ([flat("1")], "\x00", "notes"),
    ],
)
def test_a_version_with_a_nul_in_its_text_is_refused_and_nothing_published(
    plan, components, notes, field
):
    with pytest.raises(InvalidInput) as refused:
        services.plan_version_create(
            actor=None, plan=plan, interval="month", components=components, notes=notes
        )
    assert (refused.value.code, refused.value.field) == ("null_characters_not_allowed", field)
    assert not PlanVersion.objects.exists()


def test_a_plan_with_a_nul_in_its_name_is_refused_and_not_created():
    with pytest.raises(InvalidInput) as refused:
        services.plan_create(actor=None, code="growth", name="Gro\x00wth", currency="USD")
    assert (refused.value.code, refused.value.field) == ("null_characters_not_allowed", "name")
    assert not Plan.objects.exists()
