"""The base of every wire model: camelCase on the wire, snake_case in Python, strict."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from rlm.errors import InvalidInput

__all__ = [
    "INTEGRAL",
    "Identifier",
    "WireModel",
    "parse_model",
    "validation_error_to_invalid_input",
]

M = TypeVar("M", bound=BaseModel)

#: An id a caller chooses (user, team, org, project): printable ASCII without spaces, so it is
#: safe in URLs, logs, JSON and the state store.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,200}$"
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)]


def _integral(value: Any) -> Any:
    # JSON has one number type: ``22.0`` is the integer 22 to JSON Schema (and so to the API
    # document), though strict validation would refuse the float. Strings stay refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Put last in an integer field's ``Annotated[int, Field(...), INTEGRAL]`` (after its
#: constraints, so they stay ``minimum``/``maximum`` in the JSON schema): the field then takes
#: a JSON number with no fractional part, ``22`` or ``22.0``.
INTEGRAL = BeforeValidator(_integral)


class WireModel(BaseModel):
    """A model that crosses the API: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=False,
        ser_json_inf_nan="null",
    )

    def to_wire(self, **kwargs: Any) -> dict[str, Any]:
        """The JSON-ready dict with camelCase keys, unset optional fields left out."""
        kwargs.setdefault("exclude_none", True)
        return self.model_dump(mode="json", by_alias=True, **kwargs)


def _loc_to_field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_error_to_invalid_input(err: ValidationError, prefix: str = "") -> InvalidInput:
    """Turn pydantic's error into INVALID_INPUT naming the first bad field.

    Args:
        err: The validation error.
        prefix: A path to put before every field (e.g. ``body``).

    Returns:
        An :class:`InvalidInput` whose ``details`` hold ``field`` and every ``errors`` entry.
    """
    errors = []
    for e in err.errors(include_url=False, include_context=False, include_input=False):
        field = _loc_to_field(tuple(e["loc"]))
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        errors.append({"field": field, "message": e["msg"], "type": e["type"]})
    first = errors[0] if errors else {"field": prefix, "message": "invalid"}
    return InvalidInput(
        f"{first['field'] or 'request'}: {first['message']}",
        {"field": first["field"], "errors": errors},
    )


def parse_model(cls: type[M], data: Any, *, prefix: str = "") -> M:
    """Validate ``data`` (a model, a dict or JSON text) into ``cls``.

    Raises:
        InvalidInput: naming the first invalid field.
    """
    if isinstance(data, cls):
        return data
    try:
        if isinstance(data, str | bytes):
            return cls.model_validate_json(data)
        if isinstance(data, BaseModel):
            data = data.model_dump(by_alias=True)
        return cls.model_validate(data)
    except ValidationError as err:
        raise validation_error_to_invalid_input(err, prefix) from None
