"""The card build's TOML: ``[build]``, ``[extractor]`` (an endpoint, as ``[seeker]``) and optional ``[translator]``.

Read with the run config's section reader, so wrong keys and types fail the same way (one line
naming the file, the section and the field, exit code 2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from esc_eval.roles.cards import LANGUAGES
from esc_eval.roles.extraction import QUALITIES
from esc_eval.roles.filters import PII_POLICIES
from esc_eval.runs.config import ConfigError, EndpointConfig, parse_section, read_toml, refuse_shadowing_plugins


@dataclass(frozen=True)
class BuildSection:
    language: str = field(default="en", metadata={"choices": LANGUAGES})
    """The cards' language (``en``/``zh``): the extractor writes the card in it."""
    concurrency: int = field(default=16, metadata={"ge": 1})
    """Source items extracted at once."""
    min_quality: str = field(default="high", metadata={"choices": QUALITIES})
    """Keep cards the extractor graded this or better (``low`` < ``middle`` < ``high``); ``--min-quality`` overrides."""
    pii: str = field(default="reject", metadata={"choices": PII_POLICIES})
    """A card with a personal identifier: ``reject`` it, or ``scrub`` the identifier and keep it."""
    near_duplicate_threshold: float = field(default=0.8, metadata={"gt": 0, "le": 1})
    """Jaccard similarity of character 3-shingles (MinHash) from which a card repeats an earlier one."""
    prompts: str | None = None
    """A prompts YAML replacing the built-in ``roles/data/builder/extract.yaml``."""


@dataclass(frozen=True)
class BuildConfig:
    path: str
    build: BuildSection
    extractor: EndpointConfig
    translator: EndpointConfig | None

    def fingerprint(self, prompts_text: str) -> str:
        """What decides an extraction: a store made under another fingerprint is not resumed."""
        endpoints = {"extractor": asdict(self.extractor), "translator": asdict(self.translator) if self.translator else None}
        for endpoint in endpoints.values():  # limits do not change replies
            for key in ("max_connections", "timeout", "max_attempts", "max_retry_time"):
                if endpoint:
                    endpoint.pop(key)
        data = {"language": self.build.language, **endpoints, "prompts": prompts_text}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_build_config(path: str | Path) -> BuildConfig:
    """Read and check a build config; relative paths (``prompts``) are relative to its folder."""
    path = Path(path)
    return parse_build_config(read_toml(path), str(path), path.parent)


def parse_build_config(raw: dict[str, Any], name: str, base: Path) -> BuildConfig:
    known = {"build", "extractor", "translator"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}: unknown section [{key}] (known: {', '.join(sorted(known))})")
    refuse_shadowing_plugins(name)
    if "extractor" not in raw:
        raise ConfigError(f"{name}: missing section [extractor]")
    build = parse_section(name, "build", raw.get("build", {}), BuildSection)
    if build.prompts and not Path(build.prompts).expanduser().is_absolute():
        build = replace(build, prompts=str(base / build.prompts))
    extractor = parse_section(name, "extractor", raw["extractor"], EndpointConfig)
    translator = parse_section(name, "translator", raw["translator"], EndpointConfig) if "translator" in raw else None
    return BuildConfig(name, build, extractor, translator)
