"""Judge prompt profiles: how a transcript becomes a judge prompt, and how a reply becomes a label.

A ``JudgeProfile`` is data, not code: a template, a rubric per dimension and
language, speaker prefixes, a join string, text rewrites and the name of a label
parser. Two kinds of source are loaded by ``load_profile``:

* built-in profiles, YAML files in ``agents/judge/data/profiles/`` named by their stem
  (``"default"`` is ours, written in our own words);
* an ESC-RANK prompt file (JSON of the form of ESC-Eval's
  ``esc_rank_prompts.json``), given by path, which reproduces ESC-Eval's judge
  prompt byte for byte and its label parsing quirk for quirk.

Example::

    profile = load_profile("default")
    messages = profile.messages("empathic", "en", [("supporter", "Hi"), ("seeker", "I'm sad")])
    score = profile.parse(reply_text)          # 0..4, or -1 when the reply holds no label
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from esc_eval.agents.judge.labels import LABELS, MAX_LABEL, NO_LABEL, PARSE_RULES, POINTS, to_points
from esc_eval.agents.judge.profile_fields import (
    _PLACEHOLDER,
    DIMENSIONS,
    PAPER_NAMES,
    ProfileError,
    dimension_list,
    mapping,
    paper_name,
    rewrites,
    template,
    text,
)
from esc_eval.agents.messages import ChatMessage
from esc_eval.roles.jsonl import json_error
from esc_eval.roles.yaml_errors import yaml_error

ROLES = ("supporter", "seeker")

# Fallbacks for ESC-Eval's speaker prefixes, used only when an ESC-RANK file's
# ``assembly.dialogue_lines`` text does not state them in a form we can read.
_ESC_SUPPORTER_PREFIX = "AI assistant\uff1a"
_ESC_SEEKER_PREFIX = "ESC-Role\uff1a"


@dataclass(frozen=True)
class Dimension:
    """One scored dimension.

    Attributes:
        key: the score-file key (``fluency``, ``empathic``, ...).
        name_in_prompt: how the prompt names the dimension (ESC-RANK keeps its typos: ``fluecy``).
        rubric: language -> rubric text placed at ``{rubric}``.
        paper_name: the ESC-Eval paper's name for it (``Empathy``, ``Skillful``, ...).
        names: language -> ``name_in_prompt`` override (e.g. a Chinese name for ``zh``).
    """

    key: str
    name_in_prompt: str
    rubric: Mapping[str, str]
    paper_name: str
    names: Mapping[str, str] = field(default_factory=dict)

    def prompt_name(self, language: str) -> str:
        return self.names.get(language, self.name_in_prompt)


@dataclass(frozen=True)
class JudgeProfile:
    """How to ask a judge about one dimension of one transcript, and how to read its answer.

    The user prompt is ``template`` with ``{rubric}``, ``{name_in_prompt}``,
    ``{dialogue}`` (the formatted dialogue) and ``{dialogue_stripped}`` (the same
    with Python's ``str.strip()`` applied once to the whole string) substituted in
    one pass; other braces are literal. The formatted dialogue is each line's
    speaker prefix plus its text, joined with ``join``, then each ``(old, new)`` of
    ``rewrites`` applied in order with ``str.replace`` over the joined string.

    Attributes:
        name: profile name (``default``, ``esc-rank``, ...).
        dimensions: the dimensions, in the profile's order.
        system_prompt: the system message, or ``None`` for a user message only.
        template: the user prompt template.
        supporter_prefix / seeker_prefix: prepended to each supporter / seeker line.
        join: the string between lines.
        rewrites: ``(old, new)`` pairs applied in order to the joined dialogue.
        parse_rule: ``"esc_rank"`` or ``"label"`` (see ``PARSE_RULES``).
        by_language: language -> overrides of ``template``, ``system_prompt``,
            ``supporter_prefix``, ``seeker_prefix``.
        source: where the profile came from (built-in name or file path).
    """

    name: str
    dimensions: tuple[Dimension, ...]
    system_prompt: str | None
    template: str
    supporter_prefix: str
    seeker_prefix: str
    join: str
    rewrites: tuple[tuple[str, str], ...] = ()
    parse_rule: str = "label"
    by_language: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.parse_rule not in PARSE_RULES:
            raise ProfileError(self.source or self.name, f"unknown parse rule {self.parse_rule!r} (use one of {', '.join(PARSE_RULES)})",
                               field="parse")
        keys = [d.key for d in self.dimensions]
        if len(set(keys)) != len(keys):
            raise ProfileError(self.source or self.name, f"duplicate dimension keys in {keys}", field="dimensions")

    # -- lookups -----------------------------------------------------------------

    @property
    def keys(self) -> tuple[str, ...]:
        """Dimension keys in the profile's order."""
        return tuple(d.key for d in self.dimensions)

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages every dimension has a rubric for."""
        common: list[str] | None = None
        for d in self.dimensions:
            common = list(d.rubric) if common is None else [lang for lang in common if lang in d.rubric]
        return tuple(common or ())

    def dimension(self, key: str) -> Dimension:
        for d in self.dimensions:
            if d.key == key:
                return d
        raise ProfileError(self.source or self.name, f"unknown dimension {key!r} (known: {', '.join(self.keys)})", field="dimensions")

    def _setting(self, name: str, language: str) -> Any:
        overrides = self.by_language.get(language, {})
        return overrides[name] if name in overrides else getattr(self, name)

    # -- prompt assembly ----------------------------------------------------------

    def format_dialogue(self, transcript: Sequence[tuple[str, str]], language: str = "en") -> str:
        """Prefix, join and rewrite a transcript of ``(role, text)`` lines, role ``supporter`` or ``seeker``.

        The result is not stripped; ``{dialogue_stripped}`` in a template is this
        string with ``.strip()`` applied.
        """
        prefixes = {"supporter": self._setting("supporter_prefix", language), "seeker": self._setting("seeker_prefix", language)}
        lines = []
        for index, line in enumerate(transcript):
            role, text = line
            if role not in prefixes:
                raise ValueError(f"transcript line {index}: role must be 'supporter' or 'seeker', got {role!r}")
            lines.append(prefixes[role] + text)
        dialogue = self.join.join(lines)
        for old, new in self.rewrites:
            dialogue = dialogue.replace(old, new)
        return dialogue

    def prompt(self, dimension_key: str, language: str, transcript: Sequence[tuple[str, str]]) -> str:
        """The user prompt for one dimension of one transcript."""
        dim = self.dimension(dimension_key)
        if language not in dim.rubric:
            raise ProfileError(
                self.source or self.name,
                f"no {language!r} rubric for dimension {dim.key!r} (have: {', '.join(dim.rubric) or 'none'})",
                field=f"dimensions.{dim.key}.rubric",
            )
        dialogue = self.format_dialogue(transcript, language)
        values = {
            "rubric": dim.rubric[language],
            "dialogue": dialogue,
            "dialogue_stripped": dialogue.strip(),
            "name_in_prompt": dim.prompt_name(language),
        }
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self._setting("template", language))

    def messages(self, dimension_key: str, language: str, transcript: Sequence[tuple[str, str]]) -> list[ChatMessage]:
        """The chat request: a system message when the profile has one, then the user prompt."""
        out: list[ChatMessage] = []
        system = self._setting("system_prompt", language)
        if system is not None:
            out.append(ChatMessage(role="system", content=system))
        out.append(ChatMessage(role="user", content=self.prompt(dimension_key, language, transcript)))
        return out

    labels: ClassVar[range] = LABELS
    """The scale every profile's parse rule reads (``labels.LABELS``, 0..``MAX_LABEL``); ``to_points`` makes it 0-100."""

    def parse(self, text: str | None) -> int:
        """The label 0..4 in a judge reply, or -1 when it holds none."""
        if not text:
            return NO_LABEL
        return PARSE_RULES[self.parse_rule](text)


# -- loading ----------------------------------------------------------------------

_PROFILE_DIR = "data/profiles"
_PROFILE_SUFFIXES = (".yaml", ".yml")


def builtin_profiles() -> list[str]:
    """Names of the built-in profiles (stems of the YAML files in ``agents/judge/data/profiles``)."""
    folder = resources.files("esc_eval.agents.judge").joinpath(_PROFILE_DIR)
    return sorted(
        entry.name.rsplit(".", 1)[0] for entry in folder.iterdir() if entry.name.endswith(_PROFILE_SUFFIXES)
    )


def load_profile(name_or_path: str | Path) -> JudgeProfile:
    """Load a built-in profile by name, or a profile file by path.

    A path ending in ``.json`` whose object has an ``assembly`` section is an
    ESC-RANK prompt file (see ``esc_rank_profile``); any other ``.json``,
    ``.yaml`` or ``.yml`` file is a profile in our schema (that of
    ``agents/judge/data/profiles/default.yaml``).

    Raises:
        ProfileError: unknown built-in name (the message lists the known ones), or
            an unreadable or invalid file (the message names the file and field).
    """
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith((".json", *_PROFILE_SUFFIXES))
    if not looks_like_path:
        known = builtin_profiles()
        if text not in known:
            raise ProfileError("profile", f"unknown built-in profile {text!r} (known: {', '.join(known)}); or give a path to a profile file")
        for suffix in _PROFILE_SUFFIXES:
            entry = resources.files("esc_eval.agents.judge").joinpath(_PROFILE_DIR, text + suffix)
            if entry.is_file():
                return _our_profile(_parse_file(entry.read_text(encoding="utf-8"), f"builtin:{text}", yaml_syntax=True), f"builtin:{text}", text)
    path = Path(name_or_path)
    source = str(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(source, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(source, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProfileError(source, f"cannot read: {exc.strerror or exc}") from None
    if path.suffix.lower() not in (".json", *_PROFILE_SUFFIXES):
        raise ProfileError(source, f"unknown profile format '{path.suffix or '(no suffix)'}' (use .json, .yaml or .yml)")
    data = _parse_file(raw, source, yaml_syntax=path.suffix.lower() != ".json")
    if isinstance(data, dict) and "assembly" in data:
        return esc_rank_profile(data, source)
    return _our_profile(data, source, path.stem)


def _parse_file(raw: str, source: str, *, yaml_syntax: bool) -> Any:
    try:
        return yaml.safe_load(raw) if yaml_syntax else json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProfileError(source, json_error(exc)) from None
    except yaml.YAMLError as exc:
        raise ProfileError(source, yaml_error(exc)) from None


def _dimensions(raw: Any, source: str, parse_one: Callable[[Mapping[str, Any], str, str], Dimension]) -> tuple[Dimension, ...]:
    """A profile's ``dimensions`` list: each entry must be a mapping, read by ``parse_one(entry, source, where)``."""
    dimensions = []
    for index, entry in enumerate(dimension_list(raw, source, "dimensions")):
        where = f"dimensions[{index}]"
        dimensions.append(parse_one(mapping(entry, source, where), source, where))
    return tuple(dimensions)


def _our_profile(data: Any, source: str, default_name: str) -> JudgeProfile:
    """A profile in our schema (``esc_eval.agents.judge.profile_schema``; example: ``agents/judge/data/profiles/default.yaml``)."""
    from esc_eval.agents.judge.profile_schema import validate_profile_file  # pydantic: only when a profile file is read

    spec = validate_profile_file(source, data)
    return JudgeProfile(
        name=default_name if spec.name is None else spec.name,
        dimensions=tuple(_our_dimension(entry) for entry in spec.dimensions),
        system_prompt=spec.system_prompt,
        template=spec.template,
        supporter_prefix=spec.supporter_prefix,
        seeker_prefix=spec.seeker_prefix,
        join=spec.join,
        rewrites=spec.rewrites,
        parse_rule=spec.parse,
        by_language={lang: overrides.model_dump(exclude_unset=True) for lang, overrides in spec.languages.items()},
        source=source,
    )


def _our_dimension(entry: Any) -> Dimension:
    """A validated ``DimensionEntry``: ``name_in_prompt`` may be a name per language (English, else the first, is the default)."""
    name = entry.key if entry.name_in_prompt is None else entry.name_in_prompt
    names = name if isinstance(name, dict) else {}
    if names:
        name = names.get("en", next(iter(names.values())))
    return Dimension(entry.key, name, entry.rubric, entry.paper_name, names)


_PREFIX_STATEMENT = re.compile(r"\b(supporter|seeker)\b[^'\"‘’“”\n]*?['\"‘“]([^'\"’”\n]+)['\"’”]", re.IGNORECASE)


def _esc_prefixes(description: Any) -> tuple[str, str]:
    """Read the speaker prefixes out of ``assembly.dialogue_lines``.

    The file states them in prose ("supporter lines are prefixed 'AI assistant：'
    and seeker lines 'ESC-Role：' ..."): the first quoted text after the word
    "supporter" / "seeker" is that speaker's prefix, taken verbatim (the colon is
    U+FF1A). ESC-Eval's own prefixes are the fallback for a file that does not say.
    """
    found: dict[str, str] = {}
    if isinstance(description, str):
        for m in _PREFIX_STATEMENT.finditer(description):
            found.setdefault(m.group(1).lower(), m.group(2))
    return found.get("supporter", _ESC_SUPPORTER_PREFIX), found.get("seeker", _ESC_SEEKER_PREFIX)


def _esc_dimension(raw: Mapping[str, Any], source: str, where: str) -> Dimension:
    """One entry of ``dimensions`` in ``esc_rank_prompts.json``."""
    key = text(raw.get("key"), source, f"{where}.key")
    rubric = {lang: text(raw[f"rubric_{lang}"], source, f"{where}.rubric_{lang}") for lang in ("en", "zh") if f"rubric_{lang}" in raw}
    if not rubric:
        raise ProfileError(source, "missing (need rubric_en and/or rubric_zh)", field=f"{where}.rubric_en")
    return Dimension(
        key=key,
        name_in_prompt=text(raw.get("name_in_prompt"), source, f"{where}.name_in_prompt"),
        rubric=rubric,
        paper_name=paper_name(key, raw.get("paper_name"), source, f"{where}.paper_name"),
    )


def esc_rank_profile(data: Mapping[str, Any], source: str = "esc_rank_prompts.json") -> JudgeProfile:
    """The ESC-RANK profile from the parsed object of an ``esc_rank_prompts.json``-style file.

    How ESC-Eval builds a judge prompt (``score.py`` at commit 9ad46e7)::

        dialogue = '\\n\\n'.join(item).replace("AI assistant", "**AI助手**").replace("ESC-Role：", "**用户**")
        prompt = rubric + "Dialogue between user and AI assistant: \\n" + dialogue.strip() + "\\n" \\
                 + 'Based on the rules, give your ' + name_in_prompt + ' score (The number only) to the Dialogue.'

    where ``item`` is the result file's list of already-prefixed lines ("AI
    assistant：" + opener, "ESC-Role：" + seeker turn, ...). So
    ``{dialogue_stripped}`` in the file's ``assembly.prompt`` is: the prefixed
    lines joined with ``assembly.dialogue_join``, then the ``dialogue_rewrites``
    applied in order to the whole joined string (so they also hit "AI assistant"
    inside the text itself, and the seeker's colon disappears), then Python's
    ``str.strip()`` (no arguments: Unicode whitespace) once on the whole string,
    never per line. Inner whitespace and each line's own trailing spaces are kept.
    ``format_dialogue`` + ``JudgeProfile.prompt`` do exactly these steps with
    Python's own ``join``/``replace``/``strip``, and the template is substituted
    literally, so the prompt is byte for byte ESC-Eval's. The rubric is not
    rewritten and keeps its typos and zero-width spaces; ``name_in_prompt`` keeps
    ESC-Eval's spelling ('fluecy', 'suggection effectiveness'). The dimension
    order is the file's (ESC-Eval's ``key_list``). ``assembly.system_prompt`` is
    InternLM2's default meta instruction, which ``chat()`` sends as the system turn.
    """
    data = mapping(data, source, "(top level)")
    assembly = mapping(data.get("assembly"), source, "assembly")
    dimensions = _dimensions(data.get("dimensions"), source, _esc_dimension)
    system = assembly.get("system_prompt")
    if system is not None:
        text(system, source, "assembly.system_prompt")
    supporter_prefix, seeker_prefix = _esc_prefixes(assembly.get("dialogue_lines"))
    return JudgeProfile(
        name="esc-rank",
        dimensions=dimensions,
        system_prompt=system,
        template=template(assembly.get("prompt"), source, "assembly.prompt"),
        supporter_prefix=supporter_prefix,
        seeker_prefix=seeker_prefix,
        join=text(assembly.get("dialogue_join"), source, "assembly.dialogue_join", allow_empty=True),
        rewrites=rewrites(assembly.get("dialogue_rewrites"), source, "assembly.dialogue_rewrites"),
        parse_rule="esc_rank",
        source=source,
    )


__all__ = ["DIMENSIONS", "LABELS", "MAX_LABEL", "NO_LABEL", "PAPER_NAMES", "POINTS", "ROLES", "Dimension", "JudgeProfile", "ProfileError",
           "builtin_profiles", "esc_rank_profile", "load_profile", "to_points"]
