"""A small stateful fake of the Stripe API for what localstripe does not model.

It answers the real ``stripe`` SDK over HTTP on 127.0.0.1 with Stripe's documented object
shapes, error bodies and status codes, for ``send_invoice`` invoices and their life cycle:

    POST /v1/invoices                      create a draft (customer, currency, collection_method,
                                           days_until_due, auto_advance, description, metadata,
                                           pending_invoice_items_behavior)
    GET  /v1/invoices?customer=&status=    list (limit, starting_after)
    GET  /v1/invoices/{id}                 retrieve
    POST /v1/invoices/{id}                 update (metadata on any invoice; the rest on drafts)
    GET  /v1/invoices/{id}/lines           the invoice's lines
    POST /v1/invoices/{id}/finalize        draft -> open (a number, a due date; 0 due -> paid)
    POST /v1/invoices/{id}/void            open | uncollectible -> void
    POST /v1/invoices/{id}/mark_uncollectible   open -> uncollectible
    POST /v1/invoices/{id}/pay             open | uncollectible -> paid (paid_out_of_band=true)
    POST /v1/invoiceitems                  an item on a draft invoice (invoice=) or pending
    GET  /v1/invoiceitems?invoice=&customer=&pending=   list
    POST /v1/credit_notes                  on open or paid invoices (amount or lines)
    GET  /v1/credit_notes?invoice=&customer=, GET /v1/credit_notes/{id}

Like Stripe: unknown parameters are refused (``parameter_unknown``), unknown ids answer 404
``resource_missing``, invalid state transitions 400 ``invalid_request_error``. A POST with an
``Idempotency-Key`` seen before (per API key) with the same method, path and parameters replays
the first response byte for byte with ``Idempotent-Replayed: true``; with other parameters it
answers 400 ``idempotency_error``. As Stripe does not save results of requests that failed
validation, only successful responses are saved for replay here.

Modelled simply: no taxes, discounts, customer balance or payments; ``expand`` is accepted and
ignored; a void invoice has nothing remaining; a credit note is ``pre_payment`` on an open
invoice (it lowers ``amount_due``; reaching 0 marks the invoice paid, as Stripe does) and
``post_payment`` on a paid one.

Test controls: :meth:`FakeStripe.reset`, the snapshots :attr:`~FakeStripe.invoices`,
:attr:`~FakeStripe.invoice_items`, :attr:`~FakeStripe.credit_notes`, the request log
:attr:`~FakeStripe.requests`, and signed webhooks with :meth:`~FakeStripe.send_event` (or
:meth:`~FakeStripe.build_event` + :meth:`~FakeStripe.deliver` to replay or reorder them).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import string
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

from tests.stripe_servers import QuietHandler, serve_in_thread, server_url, stop_server

_ALPHABET = string.ascii_letters + string.digits
INVOICE_NUMBER_PREFIX = "MBFAKE01"
EMBEDDED_LIST_LIMIT = 10


def stripe_id(prefix: str) -> str:
    """An id shaped like Stripe's: ``in_`` + 24 characters."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


class ApiError(Exception):
    """An error the fake answers with, in Stripe's body shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type, "code": code, "message": message, "param": param}}


def missing(kind: str, object_id: str, param: str = "id") -> ApiError:
    return ApiError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


# --- Stripe's form encoding ----------------------------------------------------------------

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``metadata[a]=1&lines[0][amount]=5&expand[]=x`` as nested dicts and lists.

    Dicts whose keys are all indexes become lists (except under ``metadata``, whose keys are
    the caller's); ``name[]`` appends.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if not match:
            raise ApiError(400, f"Invalid parameter name: {key}", param=key)
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        node = root
        for depth, part in enumerate(path):
            part = part or str(len(node))
            if depth == len(path) - 1:
                if isinstance(node.get(part), dict):
                    raise ApiError(400, f"Invalid parameter: {key} is an object", param=key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ApiError(400, f"Invalid parameter: {key} is not an object", param=key)
                node = child
    return _listify(root, None)


def _listify(node: Any, key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v, k) for k, v in node.items()}
    if key != "metadata" and out and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


class Params:
    """Typed reads of one request's parameters, refusing unknown ones like Stripe does."""

    def __init__(self, data: dict[str, Any], allowed: Iterable[str], prefix: str = ""):
        self.data = data
        self.prefix = prefix
        for name in data:
            if name not in allowed and not (not prefix and name == "expand"):
                raise ApiError(
                    400,
                    f"Received unknown parameter: {prefix}{name}",
                    code="parameter_unknown",
                    param=f"{prefix}{name}",
                )

    def _param(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def has(self, name: str) -> bool:
        return name in self.data

    def str(self, name: str, *, required: bool = False, choices: Iterable[str] = ()) -> Any:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise ApiError(
                    400,
                    f"Missing required param: {self._param(name)}.",
                    code="parameter_missing",
                    param=self._param(name),
                )
            return None if value is None else ""
        if not isinstance(value, str):
            raise ApiError(400, f"Invalid string: {self._param(name)}", param=self._param(name))
        choices = tuple(choices)
        if choices and value not in choices:
            raise ApiError(
                400,
                f"Invalid {self._param(name)}: must be one of {', '.join(choices)}",
                param=self._param(name),
            )
        return value

    def int(self, name: str, *, required: bool = False, minimum: int | None = None) -> Any:
        raw = self.str(name, required=required)
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(
                400,
                f"Invalid integer: {raw}",
                code="parameter_invalid_integer",
                param=self._param(name),
            ) from None
        if minimum is not None and value < minimum:
            raise ApiError(
                400,
                f"This value must be greater than or equal to {minimum}.",
                param=self._param(name),
            )
        return value

    def bool(self, name: str) -> bool | None:
        raw = self.str(name)
        if not raw:
            return None
        if raw not in ("true", "false"):
            raise ApiError(400, f"Invalid boolean: {raw}", param=self._param(name))
        return raw == "true"

    def metadata(self) -> dict[str, str] | None:
        """The metadata to merge: a value of "" removes a key; ``metadata=""`` removes all."""
        value = self.data.get("metadata")
        if value is None:
            return None
        if value == "":
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ApiError(400, "Invalid object", param="metadata")
        for key, text in value.items():
            if len(key) > 40 or len(text) > 500:
                raise ApiError(
                    400,
                    "Metadata keys can be up to 40 characters and values up to 500.",
                    param=f"metadata[{key}]",
                )
        return value

    def objects(self, name: str) -> list[dict[str, Any]]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ApiError(400, "Invalid array", param=self._param(name))
        return value


def merge_metadata(current: dict[str, str], update: dict[str, str] | None) -> dict[str, str]:
    if update is None:
        return current
    if not update:
        return {}
    merged = {**current, **update}
    return {k: v for k, v in merged.items() if v != ""}


def currency_param(params: Params, *, default: str | None = None) -> Any:
    currency = params.str("currency")
    if not currency:
        return default
    if not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise ApiError(400, f"Invalid currency: {currency}", param="currency")
    return currency.lower()


# --- Requests, idempotency, events ----------------------------------------------------------


@dataclass(frozen=True)
class FakeRequest:
    """One request the fake answered, for tests to count and inspect."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    api_key: str | None
    status: int
    replayed: bool


@dataclass(frozen=True)
class _Saved:
    fingerprint: tuple
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery: the exact payload sent (replay it with :meth:`FakeStripe.deliver`)."""

    event_id: str
    payload: bytes
    status: int


@dataclass
class _Route:
    method: str
    pattern: re.Pattern
    handler: Callable[..., tuple[int, dict]]


@dataclass
class _State:
    seq: int = 0
    numbers: int = 0
    order: dict[str, int] = field(default_factory=dict)
    invoices: dict[str, dict] = field(default_factory=dict)
    lines: dict[str, list[dict]] = field(default_factory=dict)  # invoice id -> its lines
    items: dict[str, dict] = field(default_factory=dict)
    credit_notes: dict[str, dict] = field(default_factory=dict)
    credited_by_line: dict[str, int] = field(default_factory=dict)
    saved: dict[tuple[str | None, str], _Saved] = field(default_factory=dict)
    requests: list[FakeRequest] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)


class _Handler(QuietHandler):
    def _serve(self) -> None:
        fake: FakeStripe = self.server.fake
        status, headers, body = fake.handle(
            self.command, self.path, dict(self.headers.items()), self.read_body()
        )
        self.send_bytes(status, body, headers)

    do_GET = do_POST = _serve


class FakeStripe:
    """The fake server: start it, point the SDK (or the fault proxy) at :attr:`url`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = _State()
        self._routes = self._build_routes()
        self._server = serve_in_thread(_Handler, "fake-stripe", fake=self)
        self.url = server_url(self._server)

    def close(self) -> None:
        stop_server(self._server)

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # --- snapshots for tests ----------------------------------------------------------------

    @property
    def invoices(self) -> list[dict]:
        """Every invoice as the API shows it, oldest first."""
        with self._lock:
            return [self._render_invoice(inv) for inv in self._state.invoices.values()]

    def invoice(self, invoice_id: str) -> dict:
        with self._lock:
            return self._render_invoice(self._get_invoice(invoice_id))

    @property
    def invoice_items(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self._state.items.values()))

    @property
    def credit_notes(self) -> list[dict]:
        with self._lock:
            return [self._render_credit_note(cn) for cn in self._state.credit_notes.values()]

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def events(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._state.events)

    # --- HTTP -------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: ``(status, headers, body)``."""
        headers = {k.lower(): v for k, v in headers.items()}
        split = urlsplit(target)
        path = split.path
        pairs = parse_qsl(split.query, keep_blank_values=True)
        if method == "POST" and body:
            pairs += parse_qsl(body.decode(), keep_blank_values=True)
        api_key = _api_key(headers.get("authorization", ""))
        idem_key = headers.get("idempotency-key") if method == "POST" else None
        out_headers = {
            "Content-Type": "application/json",
            "Request-Id": stripe_id("req"),
            "Stripe-Version": headers.get("stripe-version", stripe.api_version),
        }
        if idem_key:
            out_headers["Idempotency-Key"] = idem_key

        with self._lock:
            params: dict[str, Any] = {}
            replayed = False
            try:
                if api_key is None:
                    raise ApiError(
                        401,
                        "Invalid API Key provided. Pass it as a Bearer token (sk_test_...).",
                    )
                params = parse_form(pairs)
                fingerprint = (method, path, tuple(sorted(pairs)))
                saved = self._state.saved.get((api_key, idem_key)) if idem_key else None
                if saved and saved.fingerprint != fingerprint:
                    raise ApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{idem_key}' if you meant to execute a different request.",
                        type="idempotency_error",
                    )
                if saved:
                    status, out_headers, payload = saved.status, dict(saved.headers), saved.body
                    out_headers["Idempotent-Replayed"] = "true"
                    replayed = True
                else:
                    status, obj = self._dispatch(method, path, params)
                    payload = json.dumps(obj, indent=2).encode()
                    if idem_key:
                        self._state.saved[(api_key, idem_key)] = _Saved(
                            fingerprint, status, dict(out_headers), payload
                        )
            except ApiError as exc:
                status, payload = exc.status, json.dumps(exc.body, indent=2).encode()
            self._state.requests.append(
                FakeRequest(method, path, params, idem_key, api_key, status, replayed)
            )
        return status, out_headers, payload

    def _dispatch(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                return route.handler(params, **match.groupdict())
        raise ApiError(404, f"Unrecognized request URL ({method}: {path}).")

    def _build_routes(self) -> list[_Route]:
        table = [
            ("POST", r"/v1/invoices", self._invoice_create),
            ("GET", r"/v1/invoices", self._invoice_list),
            ("GET", r"/v1/invoices/(?P<id>[^/]+)", self._invoice_retrieve),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)", self._invoice_update),
            ("GET", r"/v1/invoices/(?P<id>[^/]+)/lines", self._invoice_lines),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)/finalize", self._invoice_finalize),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)/void", self._invoice_void),
            (
                "POST",
                r"/v1/invoices/(?P<id>[^/]+)/mark_uncollectible",
                self._invoice_mark_uncollectible,
            ),
            ("POST", r"/v1/invoices/(?P<id>[^/]+)/pay", self._invoice_pay),
            ("POST", r"/v1/invoiceitems", self._item_create),
            ("GET", r"/v1/invoiceitems", self._item_list),
            ("POST", r"/v1/credit_notes", self._credit_note_create),
            ("GET", r"/v1/credit_notes", self._credit_note_list),
            ("GET", r"/v1/credit_notes/(?P<id>[^/]+)", self._credit_note_retrieve),
        ]
        return [_Route(m, re.compile(p), h) for m, p, h in table]

    # --- helpers ----------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        object_id = stripe_id(prefix)
        self._state.seq += 1
        self._state.order[object_id] = self._state.seq
        return object_id

    def _list(self, url: str, objects: list[dict], params: Params) -> tuple[int, dict]:
        limit = params.int("limit", minimum=1) or 10
        objects = sorted(objects, key=lambda o: self._state.order[o["id"]], reverse=True)
        after = params.str("starting_after")
        if after:
            ids = [o["id"] for o in objects]
            if after not in ids:
                raise missing("object", after, "starting_after")
            objects = objects[ids.index(after) + 1 :]
        page = objects[: min(limit, 100)]
        return 200, {
            "object": "list",
            "data": page,
            "has_more": len(objects) > len(page),
            "url": url,
        }

    def _get_invoice(self, invoice_id: str, param: str = "id") -> dict:
        invoice = self._state.invoices.get(invoice_id)
        if invoice is None:
            raise missing("invoice", invoice_id, param)
        return invoice

    def _require_status(self, invoice: dict, allowed: tuple[str, ...], action: str) -> None:
        if invoice["status"] not in allowed:
            raise ApiError(
                400,
                f"You can only {action} {' or '.join(allowed)} invoices; "
                f"invoice {invoice['id']} is {invoice['status']}.",
                code="invoice_not_editable" if allowed == ("draft",) else None,
            )

    def _recompute(self, invoice: dict) -> None:
        """Keep the totals consistent with the lines, credit notes and payments."""
        subtotal = sum(line["amount"] for line in self._state.lines[invoice["id"]])
        invoice.update(subtotal=subtotal, subtotal_excluding_tax=subtotal)
        invoice.update(total=subtotal, total_excluding_tax=subtotal)
        due = max(subtotal - invoice["pre_payment_credit_notes_amount"], 0)
        invoice["amount_due"] = due
        if invoice["status"] == "paid" or invoice["status"] == "void":
            invoice["amount_remaining"] = 0
        else:
            invoice["amount_remaining"] = due - invoice["amount_paid"]

    def _render_invoice(self, invoice: dict) -> dict:
        rendered = copy.deepcopy(invoice)
        lines = self._state.lines[invoice["id"]]
        rendered["lines"] = {
            "object": "list",
            "data": copy.deepcopy(lines[:EMBEDDED_LIST_LIMIT]),
            "has_more": len(lines) > EMBEDDED_LIST_LIMIT,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice['id']}/lines",
        }
        return rendered

    def _render_credit_note(self, note: dict) -> dict:
        return copy.deepcopy(note)

    def _add_line(self, invoice: dict, item: dict) -> None:
        line = {
            "id": self._new_id("il"),
            "object": "line_item",
            "amount": item["amount"],
            "currency": item["currency"],
            "description": item["description"],
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice": invoice["id"],
            "livemode": False,
            "metadata": dict(item["metadata"]),
            "parent": {
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
            },
            "period": dict(item["period"]),
            "pricing": {"type": None, "unit_amount_decimal": str(item["unit_amount"])},
            "quantity": item["quantity"],
            "taxes": [],
        }
        self._state.lines[invoice["id"]].append(line)
        self._recompute(invoice)

    # --- invoices ---------------------------------------------------------------------------

    def _invoice_create(self, data: dict) -> tuple[int, dict]:
        params = Params(
            data,
            {
                "customer",
                "currency",
                "collection_method",
                "days_until_due",
                "auto_advance",
                "pending_invoice_items_behavior",
                "description",
                "metadata",
            },
        )
        customer = params.str("customer", required=True)
        method = (
            params.str("collection_method", choices=("charge_automatically", "send_invoice"))
            or "charge_automatically"
        )
        days = params.int("days_until_due", minimum=0)
        if method == "send_invoice" and days is None:
            raise ApiError(
                400,
                "Missing required param: days_until_due (required when collection_method is "
                "send_invoice).",
                code="parameter_missing",
                param="days_until_due",
            )
        if method == "charge_automatically" and days is not None:
            raise ApiError(
                400,
                "days_until_due can only be set when collection_method is send_invoice.",
                param="days_until_due",
            )
        behavior = params.str("pending_invoice_items_behavior", choices=("include", "exclude"))
        currency = currency_param(params, default="usd")
        now = int(time.time())
        invoice = {
            "id": self._new_id("in"),
            "object": "invoice",
            "amount_due": 0,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": bool(params.bool("auto_advance")),
            "billing_reason": "manual",
            "collection_method": method,
            "created": now,
            "currency": currency,
            "customer": customer,
            "days_until_due": days,
            "description": params.str("description") or None,
            "due_date": None,
            "effective_at": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "livemode": False,
            "metadata": merge_metadata({}, params.metadata()),
            "number": None,
            "paid_out_of_band": False,
            "period_end": now,
            "period_start": now,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "starting_balance": 0,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": 0,
            "subtotal_excluding_tax": 0,
            "total": 0,
            "total_excluding_tax": 0,
        }
        self._state.invoices[invoice["id"]] = invoice
        self._state.lines[invoice["id"]] = []
        self._recompute(invoice)
        if behavior == "include":
            for item in self._state.items.values():
                pending = item["invoice"] is None and item["customer"] == customer
                if pending and item["currency"] == currency:
                    item["invoice"] = invoice["id"]
                    self._add_line(invoice, item)
        return 200, self._render_invoice(invoice)

    def _invoice_list(self, data: dict) -> tuple[int, dict]:
        params = Params(data, {"customer", "status", "limit", "starting_after"})
        customer, status = params.str("customer"), params.str("status")
        found = [
            self._render_invoice(inv)
            for inv in self._state.invoices.values()
            if (not customer or inv["customer"] == customer)
            and (not status or inv["status"] == status)
        ]
        return self._list("/v1/invoices", found, params)

    def _invoice_retrieve(self, data: dict, id: str) -> tuple[int, dict]:
        Params(data, ())
        return 200, self._render_invoice(self._get_invoice(id))

    def _invoice_update(self, data: dict, id: str) -> tuple[int, dict]:
        params = Params(data, {"metadata", "description", "days_until_due", "auto_advance"})
        invoice = self._get_invoice(id)
        if set(data) - {"metadata", "expand"}:
            self._require_status(invoice, ("draft",), "update fields other than metadata on")
        invoice["metadata"] = merge_metadata(invoice["metadata"], params.metadata())
        if params.has("description"):
            invoice["description"] = params.str("description") or None
        if params.has("days_until_due"):
            invoice["days_until_due"] = params.int("days_until_due", minimum=0)
        if params.has("auto_advance"):
            invoice["auto_advance"] = bool(params.bool("auto_advance"))
        return 200, self._render_invoice(invoice)

    def _invoice_lines(self, data: dict, id: str) -> tuple[int, dict]:
        params = Params(data, {"limit", "starting_after"})
        lines = copy.deepcopy(self._state.lines[self._get_invoice(id)["id"]])
        return self._list(f"/v1/invoices/{id}/lines", lines, params)

    def _invoice_finalize(self, data: dict, id: str) -> tuple[int, dict]:
        params = Params(data, {"auto_advance"})
        invoice = self._get_invoice(id)
        self._require_status(invoice, ("draft",), "finalize")
        now = int(time.time())
        self._state.numbers += 1
        invoice["number"] = f"{INVOICE_NUMBER_PREFIX}-{self._state.numbers:04d}"
        invoice["status"] = "open"
        invoice["effective_at"] = now
        invoice["status_transitions"]["finalized_at"] = now
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.test/i/{invoice['id']}"
        invoice["invoice_pdf"] = f"https://pay.stripe.test/invoice/{invoice['id']}/pdf"
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = now + 86400 * (invoice["days_until_due"] or 0)
        if params.has("auto_advance"):
            invoice["auto_advance"] = bool(params.bool("auto_advance"))
        self._recompute(invoice)
        if invoice["amount_due"] == 0:  # Stripe marks an invoice with nothing due paid
            self._mark_paid(invoice, now)
        return 200, self._render_invoice(invoice)

    def _mark_paid(self, invoice: dict, now: int) -> None:
        invoice["status"] = "paid"
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["status_transitions"]["paid_at"] = now
        self._recompute(invoice)

    def _invoice_void(self, data: dict, id: str) -> tuple[int, dict]:
        Params(data, ())
        invoice = self._get_invoice(id)
        self._require_status(invoice, ("open", "uncollectible"), "void")
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = int(time.time())
        self._recompute(invoice)
        return 200, self._render_invoice(invoice)

    def _invoice_mark_uncollectible(self, data: dict, id: str) -> tuple[int, dict]:
        Params(data, ())
        invoice = self._get_invoice(id)
        self._require_status(invoice, ("open",), "mark uncollectible")
        invoice["status"] = "uncollectible"
        invoice["status_transitions"]["marked_uncollectible_at"] = int(time.time())
        return 200, self._render_invoice(invoice)

    def _invoice_pay(self, data: dict, id: str) -> tuple[int, dict]:
        params = Params(data, {"paid_out_of_band"})
        invoice = self._get_invoice(id)
        self._require_status(invoice, ("open", "uncollectible"), "pay")
        if not params.bool("paid_out_of_band"):
            raise ApiError(
                400,
                "The fake models payments out of band only: pass paid_out_of_band=true.",
                param="paid_out_of_band",
            )
        invoice["paid_out_of_band"] = True
        self._mark_paid(invoice, int(time.time()))
        return 200, self._render_invoice(invoice)

    # --- invoice items ----------------------------------------------------------------------

    def _item_create(self, data: dict) -> tuple[int, dict]:
        params = Params(
            data,
            {
                "customer",
                "invoice",
                "amount",
                "unit_amount",
                "quantity",
                "currency",
                "description",
                "metadata",
                "period",
            },
        )
        invoice = None
        if params.str("invoice"):
            invoice = self._get_invoice(params.str("invoice"), "invoice")
            self._require_status(invoice, ("draft",), "add items to")
        customer = params.str("customer", required=invoice is None)
        if invoice and customer and customer != invoice["customer"]:
            raise ApiError(
                400,
                f"The invoice {invoice['id']} belongs to another customer.",
                param="invoice",
            )
        customer = customer or invoice["customer"]
        currency = currency_param(params, default=invoice["currency"] if invoice else "usd")
        if invoice and currency != invoice["currency"]:
            raise ApiError(
                400,
                f"The currency {currency} does not match the invoice's {invoice['currency']}.",
                param="currency",
            )
        quantity = params.int("quantity", minimum=0)
        unit_amount = params.int("unit_amount")
        amount = params.int("amount")
        if amount is not None and unit_amount is not None:
            raise ApiError(
                400,
                "You may only specify one of these parameters: amount, unit_amount.",
                code="parameters_exclusive",
                param="amount",
            )
        if amount is None and unit_amount is None:
            raise ApiError(
                400, "Missing required param: amount.", code="parameter_missing", param="amount"
            )
        quantity = 1 if quantity is None else quantity
        if amount is None:
            amount = unit_amount * quantity
        elif quantity != 1:
            raise ApiError(400, "quantity needs unit_amount, not amount.", param="quantity")
        period = Params(params.data.get("period") or {}, {"start", "end"}, "period.")
        now = int(time.time())
        item = {
            "id": self._new_id("ii"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer,
            "date": now,
            "description": params.str("description") or None,
            "discountable": True,
            "invoice": invoice["id"] if invoice else None,
            "livemode": False,
            "metadata": merge_metadata({}, params.metadata()),
            "period": {
                "start": period.int("start") or now,
                "end": period.int("end") or now,
            },
            "proration": False,
            "quantity": quantity,
            "unit_amount": unit_amount if unit_amount is not None else amount,
        }
        self._state.items[item["id"]] = item
        if invoice:
            self._add_line(invoice, item)
        return 200, copy.deepcopy(item)

    def _item_list(self, data: dict) -> tuple[int, dict]:
        params = Params(data, {"invoice", "customer", "pending", "limit", "starting_after"})
        invoice, customer, pending = (
            params.str("invoice"),
            params.str("customer"),
            params.bool("pending"),
        )
        found = [
            copy.deepcopy(item)
            for item in self._state.items.values()
            if (not invoice or item["invoice"] == invoice)
            and (not customer or item["customer"] == customer)
            and (pending is None or (item["invoice"] is None) == pending)
        ]
        return self._list("/v1/invoiceitems", found, params)

    # --- credit notes -----------------------------------------------------------------------

    def _credit_note_create(self, data: dict) -> tuple[int, dict]:
        params = Params(
            data,
            {
                "invoice",
                "amount",
                "lines",
                "reason",
                "memo",
                "metadata",
                "credit_amount",
                "out_of_band_amount",
                "refund_amount",
            },
        )
        invoice = self._get_invoice(params.str("invoice", required=True), "invoice")
        reason = params.str(
            "reason",
            choices=("duplicate", "fraudulent", "order_change", "product_unsatisfactory"),
        )
        if invoice["status"] not in ("open", "paid"):
            raise ApiError(
                400,
                f"Credit notes can only be issued on open or paid invoices; invoice "
                f"{invoice['id']} is {invoice['status']}.",
                param="invoice",
            )
        note_id = self._new_id("cn")
        lines = self._credit_note_lines(invoice, params.objects("lines"))
        amount = params.int("amount", minimum=1)
        if not lines and amount is None:
            raise ApiError(
                400, "One of amount or lines must be provided.", code="parameter_missing"
            )
        lines_total = sum(line["amount"] for line in lines)
        if lines and amount is not None and amount != lines_total:
            raise ApiError(
                400,
                f"amount ({amount}) must equal the sum of the lines ({lines_total}).",
                param="amount",
            )
        amount = lines_total if lines else amount
        if amount <= 0:
            raise ApiError(400, "The credit note amount must be positive.", param="amount")
        creditable = (
            invoice["total"]
            - invoice["pre_payment_credit_notes_amount"]
            - invoice["post_payment_credit_notes_amount"]
        )
        if amount > creditable:
            raise ApiError(
                400,
                f"The credit note amount ({amount}) exceeds the amount that can still be "
                f"credited on invoice {invoice['id']} ({creditable}).",
                param="amount",
            )
        kind = "pre_payment" if invoice["status"] == "open" else "post_payment"
        splits = {
            name: params.int(name, minimum=0)
            for name in ("credit_amount", "out_of_band_amount", "refund_amount")
        }
        if any(v is not None for v in splits.values()):
            if kind == "pre_payment":
                raise ApiError(
                    400,
                    "credit_amount, out_of_band_amount and refund_amount apply to paid "
                    "invoices only.",
                    param=next(k for k, v in splits.items() if v is not None),
                )
            if sum(v or 0 for v in splits.values()) != amount:
                raise ApiError(
                    400,
                    "credit_amount + out_of_band_amount + refund_amount must equal the "
                    "credit note amount.",
                    param="out_of_band_amount",
                )
        for line in lines:
            if line["invoice_line_item"]:
                key = line["invoice_line_item"]
                self._state.credited_by_line[key] = (
                    self._state.credited_by_line.get(key, 0) + line["amount"]
                )
        now = int(time.time())
        count = 1 + sum(
            1 for n in self._state.credit_notes.values() if n["invoice"] == invoice["id"]
        )
        note = {
            "id": note_id,
            "object": "credit_note",
            "amount": amount,
            "amount_shipping": 0,
            "created": now,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "customer_balance_transaction": None,
            "discount_amount": 0,
            "discount_amounts": [],
            "effective_at": now,
            "invoice": invoice["id"],
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "url": f"/v1/credit_notes/{note_id}/lines",
            },
            "livemode": False,
            "memo": params.str("memo"),
            "metadata": merge_metadata({}, params.metadata()),
            "number": f"{invoice['number']}-CN-{count:02d}",
            "out_of_band_amount": splits["out_of_band_amount"],
            "pdf": f"https://pay.stripe.test/credit_notes/{note_id}/pdf",
            "post_payment_amount": amount if kind == "post_payment" else 0,
            "pre_payment_amount": amount if kind == "pre_payment" else 0,
            "reason": reason,
            "refunds": [],
            "status": "issued",
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "total": amount,
            "total_excluding_tax": amount,
            "total_taxes": [],
            "type": kind,
            "voided_at": None,
        }
        self._state.credit_notes[note_id] = note
        invoice[f"{kind}_credit_notes_amount"] += amount
        self._recompute(invoice)
        if kind == "pre_payment" and invoice["amount_remaining"] == 0:
            self._mark_paid(invoice, now)
        return 200, self._render_credit_note(note)

    def _credit_note_lines(self, invoice: dict, raw: list[dict]) -> list[dict]:
        invoice_lines = {line["id"]: line for line in self._state.lines[invoice["id"]]}
        lines = []
        for index, entry in enumerate(raw):
            prefix = f"lines[{index}]."
            line = Params(
                entry,
                {"type", "invoice_line_item", "amount", "quantity", "unit_amount", "description"},
                prefix,
            )
            kind = line.str(
                "type", required=True, choices=("invoice_line_item", "custom_line_item")
            )
            quantity = line.int("quantity", minimum=1) or 1
            if kind == "invoice_line_item":
                line_id = line.str("invoice_line_item", required=True)
                source = invoice_lines.get(line_id)
                if source is None:
                    raise missing("invoice line item", line_id, prefix + "invoice_line_item")
                left = source["amount"] - self._state.credited_by_line.get(line_id, 0)
                amount = line.int("amount", minimum=1)
                amount = left if amount is None else amount
                if amount > left:
                    raise ApiError(
                        400,
                        f"The amount ({amount}) exceeds what is left to credit on line "
                        f"{line_id} ({left}).",
                        param=prefix + "amount",
                    )
                description = line.str("description") or source["description"]
                unit_amount = amount
            else:
                unit_amount = line.int("unit_amount", required=True, minimum=1)
                amount = unit_amount * quantity
                description = line.str("description", required=True)
                line_id = None
            lines.append(
                {
                    "id": stripe_id("cnli"),
                    "object": "credit_note_line_item",
                    "amount": amount,
                    "description": description,
                    "discount_amount": 0,
                    "discount_amounts": [],
                    "invoice_line_item": line_id,
                    "livemode": False,
                    "quantity": quantity,
                    "type": kind,
                    "unit_amount": unit_amount,
                }
            )
        return lines

    def _credit_note_list(self, data: dict) -> tuple[int, dict]:
        params = Params(data, {"invoice", "customer", "limit", "starting_after"})
        invoice, customer = params.str("invoice"), params.str("customer")
        found = [
            self._render_credit_note(note)
            for note in self._state.credit_notes.values()
            if (not invoice or note["invoice"] == invoice)
            and (not customer or note["customer"] == customer)
        ]
        return self._list("/v1/credit_notes", found, params)

    def _credit_note_retrieve(self, data: dict, id: str) -> tuple[int, dict]:
        Params(data, ())
        note = self._state.credit_notes.get(id)
        if note is None:
            raise missing("credit_note", id)
        return 200, self._render_credit_note(note)

    # --- webhooks ---------------------------------------------------------------------------

    def build_event(self, type: str, obj: dict) -> bytes:
        """A Stripe ``event`` object around ``obj``, as the exact payload bytes to deliver."""
        event = {
            "id": stripe_id("evt"),
            "object": "event",
            "api_version": stripe.api_version,
            "created": int(time.time()),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }
        with self._lock:
            self._state.events.append(event)
        return json.dumps(event, indent=2).encode()

    @staticmethod
    def deliver(payload: bytes, url: str, secret: str, *, timestamp: int | None = None) -> int:
        """POST ``payload`` to ``url`` signed like Stripe does; the receiver's status code."""
        signature = stripe.WebhookSignature.generate_signature_header(
            payload.decode(), secret, timestamp
        )
        request = urllib.request.Request(
            url,
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def send_event(self, type: str, obj: dict, url: str, secret: str) -> Delivery:
        """Build an event around ``obj`` and deliver it once; replay ``.payload`` at will."""
        payload = self.build_event(type, obj)
        status = self.deliver(payload, url, secret)
        return Delivery(json.loads(payload)["id"], payload, status)


def _api_key(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value).decode().partition(":")[0]
        except ValueError:
            return None
    elif scheme.lower() != "bearer":
        return None
    return value if value.startswith(("sk_", "rk_")) and len(value) > 5 else None


# --- a webhook receiver for tests -----------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class _ReceiverHandler(QuietHandler):
    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.receiver
        got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, self.read_body())
        with receiver._cond:
            receiver._received.append(got)
            receiver._cond.notify_all()
        self.send_bytes(receiver.status, b"{}", {"Content-Type": "application/json"})


class WebhookReceiver:
    """A loopback endpoint that records every POST; ``wait_for`` polls instead of sleeping."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self._received: list[Received] = []
        self._cond = threading.Condition()
        self._server = serve_in_thread(_ReceiverHandler, "webhook-receiver", receiver=self)
        self.url = server_url(self._server) + "/stripe/webhook"

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def wait_for(
        self, predicate: Callable[[Received], bool] = lambda r: True, timeout: float = 5.0
    ) -> Received:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for got in self._received:
                    if predicate(got):
                        return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no matching webhook within {timeout} s; got {len(self._received)}"
                    )
                self._cond.wait(left)

    def close(self) -> None:
        stop_server(self._server)
