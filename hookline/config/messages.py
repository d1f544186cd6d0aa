"""Turn pydantic's validation errors into hookline's one line per problem.

Each line is ``key.path: what is wrong; what to do``, in the order the keys appear in
the file. Bounds, choices and the known keys of a table are read from the schema, so
that a message says ``must be between 0 and 65535`` and an unknown key gets the closest
known one. Only values of plain keys are echoed; a secret's value never is.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from hookline.config.schema import NOT_A_KEY, Settings

Loc = tuple[int | str, ...]
#: Error types that mean a table was expected.
_NOT_A_TABLE = {"model_type", "model_attributes_type", "dict_type"}
_BOUNDS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


def problems(
    exc: ValidationError, data: Mapping[str, Any], renames: Mapping[tuple[str, str], str]
) -> list[str]:
    """One ``key: message`` line per error of ``exc``, in the order of the keys in ``data``.

    Args:
        exc: what validating ``data`` against :class:`Settings` raised.
        data: the parsed file, for the order of its keys.
        renames: keys whose value came from elsewhere (an environment variable), by the
            name to report them under.
    """
    found = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "hookline" and "key" in error.get("ctx", {}):
            loc = (*loc, error["ctx"]["key"])  # a check of a table, about one of its keys
        found.append((_position(loc, data), _key(loc, renames), _describe(error, loc)))
    found.sort(key=lambda item: item[0])  # stable: pydantic's order among equals
    return [f"{key}: {message}" for _, key, message in found]


def key_paths(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Every key a file may set, dotted, with ``*`` for a source's name."""
    for key, field in _keys(model).items():
        inner = _bare(field.annotation)
        if _is_table(inner):
            yield from key_paths(inner, f"{prefix}{key}.")
        elif (value := _mapping_value(inner)) is not None:
            yield from key_paths(value, f"{prefix}{key}.*.")
        else:
            yield f"{prefix}{key}"


def _describe(error: ErrorDetails, loc: Loc) -> str:
    kind, value, ctx = error["type"], error["input"], error.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown(str(loc[-1]), _locate(loc[:-1])[0])
    field = _locate(loc)[1]
    if kind == "missing":
        return f"missing; {_what_to_set(field)}"
    if kind in _NOT_A_TABLE:
        return f"expected a table, got {type(value).__name__}"
    if kind == "int_type":
        return f"expected a whole number, got {_show(value)}"
    if kind in _BOUNDS:
        return f"must be {_bounds(field, ctx)}, got {_show(value)}"
    if kind == "literal_error":
        return f"expected one of {', '.join(_choices(field))}, got {_show(value)}"
    if kind == "string_type":
        return f"expected a string, got {_show(value)}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "hookline":
        return str(ctx["message"])
    # Any other of pydantic's sentences, never with its input (which may be a secret).
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _unknown(key: str, model: type[BaseModel] | None) -> str:
    known = sorted(_keys(model)) if model is not None else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    return f"unknown key; expected one of {', '.join(known)}" if known else "unknown key"


def _what_to_set(field: FieldInfo | None) -> str:
    if field is None:
        return "set it"
    if choices := _choices(field):
        return f"set one of {', '.join(choices)}"
    extra = field.json_schema_extra
    hint = extra.get("missing") if isinstance(extra, dict) else None
    return str(hint) if hint else f"set it ({field.description})"


def _bounds(field: FieldInfo | None, ctx: Mapping[str, Any]) -> str:
    limits = dict(ctx)
    for item in field.metadata if field is not None else []:
        for name in ("ge", "le", "gt", "lt"):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                limits[name] = getattr(item, name)
    if "ge" in limits and "le" in limits:
        return f"between {limits['ge']} and {limits['le']}"
    parts = [
        f"{words} {limits[name]}"
        for name, words in (("ge", "at least"), ("gt", "more than"), ("le", "at most"))
        if name in limits
    ]
    parts += [f"less than {limits['lt']}"] if "lt" in limits else []
    return " and ".join(parts)


def _choices(field: FieldInfo | None) -> tuple[str, ...]:
    inner = _bare(field.annotation) if field is not None else None
    return tuple(map(str, get_args(inner))) if get_origin(inner) is Literal else ()


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _key(loc: Loc, renames: Mapping[tuple[str, str], str]) -> str:
    for where, name in renames.items():
        if loc == where:
            return name
    text = ""
    for part in loc:
        if part == "[key]":  # pydantic's mark for an error in a mapping's key
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.removeprefix(".")


def _position(loc: Loc, data: object) -> tuple[int, ...]:
    """Where ``loc`` is in the file: a key it lacks sorts after those it has."""
    where = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            where.append(list(data).index(part))
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            where.append(part)
            data = data[part]
        elif part != "[key]":
            where.append(1 << 30)
            data = None
    return tuple(where)


def _locate(loc: Loc) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The table at ``loc`` (``None`` past a leaf) and the field ``loc`` ends on."""
    model: type[BaseModel] | None = Settings
    field: FieldInfo | None = None
    values_of: type[BaseModel] | None = None  # set while at a mapping, before its key
    for part in loc:
        if part == "[key]" or isinstance(part, int):
            continue
        if values_of is not None:
            model, field, values_of = values_of, None, None
            continue
        if model is None:
            return None, field
        field = model.model_fields.get(part) or _keys(model).get(part)
        if field is None:
            return model, None
        inner = _bare(field.annotation)
        model = inner if _is_table(inner) else None
        values_of = _mapping_value(inner)
    return model, field


def _keys(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The keys of a table, as the file spells them (its attributes that are not keys left out)."""
    return {
        field.alias or name: field
        for name, field in model.model_fields.items()
        if NOT_A_KEY not in field.metadata
    }


def _bare(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` and ``| None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _is_table(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _mapping_value(annotation: Any) -> type[BaseModel] | None:
    """The table type of a mapping of tables (``sources``), else ``None``."""
    if get_origin(annotation) not in (dict, Mapping):
        return None
    value = _bare(get_args(annotation)[1])
    return value if _is_table(value) else None
