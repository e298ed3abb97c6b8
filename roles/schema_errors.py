"""pydantic schemas with the project's one-line errors: ``FILE: field 'PATH': what is wrong``.

Schemas of data files are declared once as pydantic models (``esc_eval.roles.persona_schema``,
``esc_eval.agents.judge.profile_schema``): the model validates the file and is the source of
their JSON Schema. Their checks raise ``invalid(message)`` with the final wording;
``describe`` turns the first error of a ``ValidationError`` into the dotted field path
and that message (pydantic's own reports name neither file nor field the way ours do).
Only loaded when a file is validated: ``import esc_eval.runs.cli`` must not pay for pydantic.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError


class Section(BaseModel):
    """A section of a data file: unknown keys are errors, values keep their types, attribute docstrings describe the fields."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


def invalid(message: str, *, at: str = "") -> PydanticCustomError:
    """An error saying ``message``; ``at`` is appended to the field path (``.key``, ``[2]``) of a check over a whole value."""
    return PydanticCustomError("esc_eval", "{message}", {"message": message, "at": at})


def checks(check: Callable[[Any], Any], shown_as: Any) -> PlainValidator:
    """The validator of a field declared ``Annotated[T, checks(check, shown_as)]``.

    ``check`` raises ``invalid(...)`` or returns the value (it alone validates: ``T`` is the static type, so
    ``T | None`` for a field that may be left out yet must not be null); the JSON Schema shows ``shown_as``.
    """
    return PlainValidator(check, json_schema_input_type=shown_as)


def describe(exc: ValidationError, model: type[BaseModel], *, unknown: str, mapping: str) -> tuple[str, str]:
    """The field path and message of the first error (an unknown key first: it is the likely cause of the rest).

    ``unknown`` words an unknown key (``{known}``: the allowed ones); ``mapping`` a value that
    should be a mapping (``{type}``, ``{value}``).
    """
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    path, known = _path(model, error["loc"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        message = unknown.format(known=", ".join(sorted(known)))
    elif error["type"] in ("dict_type", "model_type", "model_attributes_type"):
        message = mapping.format(type=type(value).__name__, value=value)
    elif error["type"] == "missing":
        message = "missing"
    elif "message" in ctx:
        path, message = path + ctx.get("at", ""), ctx["message"]
    else:
        message = error["msg"]
    return path.lstrip(".") or "(top level)", message


def _path(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, set[str]]:
    """``loc`` as a dotted path (``[i]`` for list items), and the fields of the last model on the way."""
    path, known = "", set(_fields(model))
    kind: Any = model
    for part in loc:
        if part == "[key]":
            continue
        kind = _bare(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            known = set(_fields(kind))
            field = _fields(kind).get(str(part))
            kind, path = (field.annotation if field else Any), f"{path}.{part}"
        elif get_origin(kind) in (list, tuple):
            kind, path = get_args(kind)[0], f"{path}[{part}]"
        else:
            kind, path = (get_args(kind)[1] if get_origin(kind) is dict else Any), f"{path}.{part}"
    return path, known


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the names a file uses (their aliases)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _bare(kind: Any) -> Any:
    """``kind`` without ``Annotated`` metadata and without ``| None``."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        elif get_origin(kind) in (Union, types.UnionType):
            rest = [a for a in get_args(kind) if a is not type(None)]
            if len(rest) != 1:
                return kind
            kind = rest[0]
        else:
            return kind


def without_null_defaults(node: Any) -> Any:
    """A JSON Schema without ``"default": null`` on fields that cannot be null (leaving them out is the default)."""
    if isinstance(node, dict):
        if node.get("default", 0) is None and "null" not in str(node.get("anyOf", node.get("type", ""))):
            node = {k: v for k, v in node.items() if k != "default"}
        return {k: without_null_defaults(v) for k, v in node.items()}
    if isinstance(node, list):
        return [without_null_defaults(v) for v in node]
    return node


__all__ = ["checks", "describe", "invalid", "without_null_defaults"]
