"""Make installed-looking plugins for tests: a ``.dist-info`` folder that importlib.metadata finds on ``sys.path``.

``pip install`` takes seconds per package; a ``.dist-info`` with ``METADATA`` and ``entry_points.txt``
is what it leaves behind for entry points, so tests put one on ``sys.path`` (or ``PYTHONPATH``) beside
the plugin's source. ``tests/runs/cli/test_example_plugins.py`` also really pip-installs the examples.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = {kind: HERE / kind for kind in ("backend", "termination", "turn_policy")} | {"persona": HERE.parent / "plugin_persona"}
"""The example plugin of each kind (docs/plugins.md), a package folder with its pyproject.toml."""


def dist_info(site: Path, name: str, entry_points: Mapping[str, Mapping[str, str]], version: str = "0.1.0") -> Path:
    """Write ``site/NAME-VERSION.dist-info`` declaring ``entry_points`` (group -> name -> ``module:attr``); returns ``site``."""
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (folder / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items()) for group, points in entry_points.items()),
        encoding="utf-8")
    return site


def example_site(site: Path) -> tuple[Path, list[Path]]:
    """A ``.dist-info`` per example plugin, from its pyproject.toml, in ``site``; returns ``site`` and the
    source folders that must be on ``sys.path`` with it."""
    for folder in EXAMPLES.values():
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        dist_info(site, project["name"], project["entry-points"], project["version"])
    return site, list(EXAMPLES.values())
