"""The vocabulary and the field checks every judge-profile reader shares: ESC-RANK's JSON and our YAML schema.

``esc_eval.agents.judge.profiles`` (the loaders) and ``esc_eval.agents.judge.profile_schema`` (our format as pydantic
models) both check fields with these, so a field means the same and fails with the same words in either.
"""

from __future__ import annotations

import re
from typing import Any

#: Dimension keys (as in ESC-Eval's score files) in the order reports show them.
DIMENSIONS: tuple[str, ...] = ("fluency", "diversity", "empathic", "suggestion", "tech", "human", "overall")

#: Dimension key -> the name the ESC-Eval paper uses for it.
PAPER_NAMES: dict[str, str] = {
    "fluency": "Fluency",
    "diversity": "Expression",
    "empathic": "Empathy",
    "suggestion": "Information",
    "tech": "Skillful",
    "human": "Humanoid",
    "overall": "Overall",
}

# Placeholders a template may use; anything else in braces is literal text.
_PLACEHOLDER = re.compile(r"\{(rubric|dialogue_stripped|dialogue|name_in_prompt)\}")

class ProfileError(ValueError):
    """A profile file or a request against a profile is invalid; names the file and the field."""

    def __init__(self, source: str, message: str, *, field: str | None = None):
        where = str(source)
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
        self.source, self.field, self.reason = str(source), field, message



def text(value: Any, source: str, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        shown = "missing" if value is None else f"must be {'text' if allow_empty else 'non-empty text'}, got {type(value).__name__}"
        raise ProfileError(source, shown, field=field)
    return value


def mapping(value: Any, source: str, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProfileError(source, f"must be a mapping, got {type(value).__name__}", field=field)
    return value


def template(value: Any, source: str, field: str) -> str:
    template = text(value, source, field)
    used = set(_PLACEHOLDER.findall(template))
    if "rubric" not in used or not used & {"dialogue", "dialogue_stripped"}:
        raise ProfileError(source, "must contain {rubric} and {dialogue} or {dialogue_stripped}", field=field)
    return template


def rewrites(value: Any, source: str, field: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ProfileError(source, f"must be a list of [old, new] pairs, got {type(value).__name__}", field=field)
    pairs = []
    for index, pair in enumerate(value):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(s, str) for s in pair) and pair[0]):
            raise ProfileError(source, "must be a pair [old, new] of text, old non-empty", field=f"{field}[{index}]")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def paper_name(key: str, given: Any, source: str, field: str) -> str:
    if given is not None:
        return text(given, source, field)
    if key not in PAPER_NAMES:
        raise ProfileError(source, f"unknown dimension key {key!r} needs a paper_name (known keys: {', '.join(DIMENSIONS)})", field=field)
    return PAPER_NAMES[key]


def dimension_list(value: Any, source: str, field: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ProfileError(source, "must be a non-empty list of dimensions", field=field)
    return value
