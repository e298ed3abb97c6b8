"""The checks a reviewer of the layout runs: rooms import downwards only, no cycles, small modules, stated APIs."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("roles", "agents", "environments", "runs")
"""The rooms, lowest first; they live at the repository's root and are imported as ``esc_eval.<room>``."""
LAYER = {name: index for index, name in enumerate(PACKAGES)} | {"": len(PACKAGES)}
"""``esc_eval`` itself (the public API) sits above every room."""
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("esc_eval", *(parts[:-1] if parts[-1] == "__init__" else parts)))
            found[name] = path
    for path in sorted((ROOT / "esc_eval").glob("*.py")):
        found["esc_eval" if path.stem == "__init__" else f"esc_eval.{path.stem}"] = path
    return found


def _room(name: str) -> str:
    """``esc_eval.runs.cli`` -> ``runs``; ``esc_eval`` and its own modules -> ``""`` (the API on top)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYER else ""


MODULES = _modules()


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """Our modules ``path`` imports (``from a.b import c`` counts ``a.b.c`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and module_level_only:  # `if TYPE_CHECKING:` imports are not run
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES)
    return found


def test_rooms_import_downwards_only() -> None:
    """roles <- agents <- environments <- runs: a room imports only itself and the rooms below it."""
    wrong = []
    for name, path in MODULES.items():
        for target in _imports(path, module_level_only=False):
            if LAYER[_room(target)] > LAYER[_room(name)]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    graph = {name: _imports(path, module_level_only=False) - {name} for name, path in MODULES.items()}
    for name in graph:  # a package's __init__ importing its own submodules is how packages work
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") and MODULES[name].name == "__init__.py")}
    state: dict[str, int] = defaultdict(int)
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state[target] == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif state[target] == 0:
                visit(target, [*stack, target])
        state[node] = 2

    for name in sorted(graph):
        if state[name] == 0:
            visit(name, [name])
    assert not cycles, [" -> ".join(cycle) for cycle in cycles]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines; split it by ideas"


@pytest.mark.parametrize("name", sorted(n for n, p in MODULES.items() if p.name == "__init__.py"))
def test_every_package_states_its_public_api(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{name}: no docstring saying what the package is for"
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
    assert "__all__" in assigned, f"{name}: no __all__"
