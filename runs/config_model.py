"""The pydantic models of the config sections: they validate each section and give its JSON Schema.

Each model is made from a section dataclass (``esc_eval.runs.config``, ``esc_eval.runs.cards.config``: its
fields, types, defaults, attribute docstrings, and in field metadata ``ge``/``gt``/``le``
bounds and ``choices``), so a section is declared once; the checks that span fields live
on the model classes below. Types are strict as TOML's are
(``"5"`` is not an int), except that lists become the dataclasses' tuples and ints are taken
as floats. Errors become one line naming file, section, field and value via
``esc_eval.roles.schema_errors``. Only imported when a config is parsed: ``import esc_eval.runs.cli`` must
not pay for pydantic.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import textwrap
from dataclasses import MISSING, fields
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from esc_eval.roles.schema_errors import describe, invalid
from esc_eval.runs.config_sections import CardsSection, ConfigError, EndpointConfig, JudgeSection, SafetySection, SeekerSection


class Section(BaseModel):
    """Any section: unknown keys are errors, values keep TOML's types."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Endpoint(Section):
    """A model endpoint: a known backend, with what that backend needs."""

    @model_validator(mode="after")
    def _backend(self) -> Endpoint:
        from esc_eval.agents.backends import BACKENDS
        from esc_eval.roles.registry import RegistryError

        known = BACKENDS.names()
        if self.backend not in known:  # type: ignore[attr-defined]
            raise invalid(f"unknown backend {self.backend!r} (known: {', '.join(known)})", at=".backend")  # type: ignore[attr-defined]
        try:  # the factory's signature declares the options it takes: bound here, before anything runs
            BACKENDS.check(self.backend, self.options, None, name="", shared=None)  # type: ignore[attr-defined]
        except RegistryError as exc:
            raise invalid(str(exc), at=".options") from None
        check_price(self.price)  # type: ignore[attr-defined]
        if self.api_key_env is not None and not self.api_key_env.strip():  # type: ignore[attr-defined]
            raise invalid("must name an environment variable (the key itself never goes in the file), got ''", at=".api_key_env")
        if self.backend == "vllm" and not self.model:  # type: ignore[attr-defined]
            raise invalid("missing field 'model' (required by backend 'vllm': a folder or hub id)")
        if self.backend == "auto" and self.base_url:  # type: ignore[attr-defined]
            raise invalid("backend 'auto' runs the model in this process (vllm or transformers); "
                          "for a server at base_url use backend 'openai'", at=".base_url")
        if self.backend == "openai":  # type: ignore[attr-defined]
            for required in ("base_url", "model"):
                if not getattr(self, required):
                    raise invalid(f"missing field '{required}' (required by backend 'openai')")
            if not self.base_url.startswith(("http://", "https://")):  # type: ignore[attr-defined]
                raise invalid(f"must start with http:// or https://, got {self.base_url!r}", at=".base_url")  # type: ignore[attr-defined]
        return self


def check_price(price: dict[str, float] | None) -> None:
    """A ``price`` table gives both ``input`` and ``output``, each USD per million tokens, at least 0 and finite
    (an infinite price would make every cost inf, which JSON reports cannot hold)."""
    if not price:
        return
    unknown = sorted(price.keys() - {"input", "output"})
    if unknown:
        raise invalid(f"unknown key {unknown[0]!r} (known: input, output: USD per million tokens)", at=".price")
    for key in ("input", "output"):
        if key not in price:
            raise invalid(f"missing key {key!r} (both input and output, USD per million tokens)", at=".price")
        if not 0 <= price[key] < math.inf:
            raise invalid(f"{key} must be a finite amount of at least 0 (USD per million tokens), got {price[key]}", at=".price")


class Safety(Section):
    @model_validator(mode="after")
    def _price(self) -> Safety:
        check_price(self.price)  # type: ignore[attr-defined]
        return self


class Seeker(Endpoint):
    """One persona or a list of distinct ones; whether each exists is checked by ``RunPlan.prepare``."""

    @model_validator(mode="after")
    def _personas(self) -> Seeker:
        given = self.model_fields_set
        if {"persona", "personas"} <= given:
            raise invalid("set either 'persona' (one) or 'personas' (a list), not both", at=".personas")
        if "personas" in given and not self.personas:  # type: ignore[attr-defined]
            raise invalid("must list at least one persona", at=".personas")
        field_name = "personas" if self.personas else "persona"  # type: ignore[attr-defined]
        names = self.personas or (self.persona,)  # type: ignore[attr-defined]
        if any(not persona.strip() for persona in names):
            raise invalid("a persona name must not be empty", at=f".{field_name}")
        seen = [p for i, p in enumerate(names) if p in names[:i]]
        if seen:
            raise invalid(f"{seen[0]!r} is listed twice", at=f".{field_name}")
        return self


class Judge(Endpoint):
    @model_validator(mode="after")
    def _samples(self) -> Judge:
        if self.samples > 1 and not self.temperature:  # type: ignore[attr-defined]
            raise invalid(f"{self.samples} samples need a 'temperature' above 0 "  # type: ignore[attr-defined]
                          "(greedy decoding gives the same label every time)", at=".samples")
        return self


class Cards(Section):
    @model_validator(mode="after")
    def _language(self) -> Cards:
        if self.language not in (None, "en", "zh"):  # type: ignore[attr-defined]
            raise invalid(f"must be 'en' or 'zh', got {self.language!r}", at=".language")  # type: ignore[attr-defined]
        return self


CHECKS: dict[type, type[Section]] = {CardsSection: Cards, SeekerSection: Seeker, JudgeSection: Judge, SafetySection: Safety}
"""The model class that carries a section's cross-field checks (any other endpoint: ``Endpoint``)."""


@functools.cache
def model(cls: type) -> type[BaseModel]:
    """The pydantic model of section dataclass ``cls`` (same name, fields, defaults and docs)."""
    base = CHECKS.get(cls, Endpoint if issubclass(cls, EndpointConfig) else Section)
    hints = get_type_hints(cls)
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        docs |= _attribute_docs(klass)
    specs: dict[str, Any] = {}
    for f in fields(cls):
        default: Any = {"default_factory": f.default_factory} if f.default is MISSING else {"default": f.default}
        bounds: dict[str, Any] = {k: v for k, v in f.metadata.items() if k in ("ge", "gt", "le")}
        if hints[f.name] in (float, float | None):
            bounds["allow_inf_nan"] = False     # inf is no amount, and a store's config (JSON) cannot hold it
        kind = _lax_tuples(hints[f.name])
        if "choices" in f.metadata:
            kind = Annotated[kind, AfterValidator(functools.partial(_one_of, f.metadata["choices"]))]
            bounds["json_schema_extra"] = {"enum": list(f.metadata["choices"])}
        specs[f.name] = (kind, Field(**default, description=docs.get(f.name), **bounds))
    written = cls.__doc__ if not (cls.__doc__ or "").startswith(f"{cls.__name__}(") else None  # not dataclass's signature
    return create_model(cls.__name__, __base__=base, __doc__=written, **specs)


def _lax_tuples(hint: Any) -> Any:
    """``tuple[X, ...]`` read from a TOML list (strict mode takes only tuples)."""
    if get_origin(hint) is tuple:
        return Annotated[list[get_args(hint)[0]], AfterValidator(tuple)]  # type: ignore[misc]
    return hint


def _one_of(choices: tuple[str, ...], value: str | None) -> str | None:
    """A ``choices`` field's check (an unset optional field passes)."""
    if value is not None and value not in choices:
        raise invalid(f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def validate(where: str, raw: Any, cls: type) -> Any:
    """Section ``raw`` as a ``cls``; ``ConfigError`` in one line starting with ``where`` (``FILE: [section]``)."""
    section = model(cls)
    try:
        values = section.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_line(where, exc, section, cls, raw)) from None
    return cls(**{f.name: getattr(values, f.name) for f in fields(cls)})


def _line(where: str, exc: ValidationError, section: type[BaseModel], cls: type, raw: Any) -> str:
    """The error line: ``WHERE field 'x': what``, or ``WHERE: what`` for a whole section."""
    path, message = describe(exc, section, unknown="(known: {known})", mapping="must be a table, got {type}")
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown field '{path}' {message}"
    if kind == "missing":
        return f"{where}: missing field '{path}'"
    if path == "(top level)":
        return f"{where}: {message}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal"):
        ge, gt, le = (next(f.metadata for f in fields(cls) if f.name == path).get(k) for k in ("ge", "gt", "le"))
        value = error["input"]
        if type(value) is int and "float" in str(get_type_hints(cls)[path]):
            value = float(value)  # as the field holds it
        message = f"{_bounds(ge, gt, le)}, got {value}"
    elif kind == "finite_number":
        message = f"must be a finite number, got {error['input']}"
    elif kind != "esc_eval":
        path = str(error["loc"][0])
        message = _type_message(get_type_hints(cls)[path], raw[path])
    return f"{where} field '{path}': {message}"


def _bounds(ge: float | None, gt: float | None, le: float | None) -> str:
    """What a bounded field takes: ``must be in [0, 2]``, ``must be in (0, 1]``, ``must be at least 1``, ``must be positive``."""
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    if le is not None:
        return f"must be in {low}, {le}]" if low else f"must be at most {le}"
    if ge is not None:
        return f"must be at least {ge}"
    return "must be positive" if gt == 0 else f"must be above {gt}"


def _type_message(hint: Any, value: Any) -> str:
    """What a field of type ``hint`` takes, said about the ``value`` it got instead."""
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    for kind, wanted in (("tuple[dict", "a list of tables"), ("dict[str, typing.Any]", "a table"), ("dict[str, Any]", "a table"),
                         ("tuple[str, ...]", "a list of text values"), ("dict[str, str]", "a table of text values"),
                         ("dict[str, float]", "a table of numbers")):
        if kind in text:
            return f"must be {wanted}, got {value!r:.80}"
    expected = text.replace("typing.", "").replace(" | None", "")
    return f"expected {expected}, got {type(value).__name__} {value!r:.80}"


__all__ = ["model", "validate"]


def _attribute_docs(cls: type) -> dict[str, str]:
    """``field -> docstring`` for the string literals written under a class's annotated fields (PEP 257 attribute docs)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (a class made at run time): no descriptions
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for field, after in zip(body, body[1:]):
        if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[field.target.id] = inspect.cleandoc(after.value.value)
    return docs
