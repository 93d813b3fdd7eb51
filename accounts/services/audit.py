"""The audit trail every service writes, and the small helpers services share."""

import json
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder

from ..errors import InvalidInput
from ..models import ApiKey, AuditLog, Customer, User

Actor = User | ApiKey | None

# --- Audit ---------------------------------------------------------------------------


def jsonable(value):
    """Dates, decimals and UUIDs as the JSON the audit log stores."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(instance, fields) -> dict:
    """The named fields of a model instance as JSON-safe values (for audit before/after)."""
    data = {}
    for name in fields:
        value = getattr(instance, name)
        if hasattr(value, "pk"):
            value = value.pk
        data[name] = jsonable(value)
    return data


def actor_label(actor: Actor) -> str:
    if isinstance(actor, User):
        return actor.email
    if isinstance(actor, ApiKey):
        return f"api key {actor.prefix} ({actor.name})"
    return "system"


def audit_entry(
    *, actor: Actor, action: str, obj, customer: Customer | None, before=None, after=None
) -> AuditLog:
    """An unsaved audit row: a service writing many at once saves them with one
    ``AuditLog.objects.bulk_create``."""
    return AuditLog(
        actor_user=actor if isinstance(actor, User) else None,
        actor_api_key=actor if isinstance(actor, ApiKey) else None,
        actor_label=actor_label(actor)[:200],
        customer=customer,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:300],
        before=before,
        after=after,
    )


def audit_record(
    *, actor: Actor, action: str, obj, customer: Customer | None, before=None, after=None
) -> AuditLog:
    entry = audit_entry(
        actor=actor, action=action, obj=obj, customer=customer, before=before, after=after
    )
    entry.save()
    return entry


def changed_fields(before: dict, after: dict) -> tuple[dict, dict]:
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def exact_decimal(value, *, field: str) -> Decimal:
    """A number given as a string or an integer, exactly. Floats are refused: 0.1 is not
    one tenth, and money and quantities must be exact. (Infinity and NaN parse; callers
    bound the value.)"""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidInput(
            f'{field} must be a number written as a string or integer, such as "0.0025".',
            field=field,
        )
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(f"{field} must be a number, not {value!r}.", field=field) from None


def reject_unknown_fields(given, allowed, *, what: str) -> None:
    """Writes name their fields; one the service does not know is refused, never dropped."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"{unknown[0]} is not a {what} field you can set.",
            code="unknown_field",
            field=unknown[0],
        )


def validate_model(instance, *, exclude=None) -> None:
    """Model validation as a last line of defence; the first problem becomes InvalidInput.
    Text with a NUL character is refused too: PostgreSQL would fail the write with a 500."""
    for field in instance._meta.concrete_fields:
        value = getattr(instance, field.attname)
        if isinstance(value, str) and "\x00" in value and field.name not in (exclude or ()):
            raise InvalidInput(
                f"{field.name} cannot contain NUL characters.",
                field=field.name,
                code="null_characters_not_allowed",
            )
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(messages[0], field=None if field == "__all__" else field) from exc
