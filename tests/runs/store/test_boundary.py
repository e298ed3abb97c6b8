"""No SQL outside runs/store/: every other module reads and writes the store through its typed API.

The scan parses each module and looks at what code does, not at prose: an ``import sqlite3``,
a string literal (docstrings aside) that is an SQL statement, or a call of the raw ``rows(sql)``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCANNED = ("roles", "agents", "environments", "runs", "testing", "benchmarks", "esc_eval")
"""Every package, the test kit and the benchmarks (``esc_eval/`` links the rooms: only its own modules are read there)."""
ALLOWED = ("runs/store/", "testing/scenarios.py")
"""The store, and the fault scenarios' auditor: it reads the file with its own SQL so that a bug in the store's
reader cannot hide a lost or duplicated turn."""

SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|DROP\s+TABLE|"
    r"ALTER\s+TABLE|PRAGMA\s+\w+)\b",
    re.DOTALL,
)
"""Statements as this code base writes them: keywords in capitals (so English prose in lower case never matches)."""


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (module, class, function, or an attribute's docstring)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                    found.add(id(stmt.value))
    return found


def violations(path: Path) -> list[str]:
    """What in ``path`` talks to SQLite directly: ``line: what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "sqlite3" for alias in node.names):
            found.append(f"{node.lineno}: import sqlite3")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
            found.append(f"{node.lineno}: from sqlite3 import")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs and SQL.search(node.value):
            found.append(f"{node.lineno}: SQL {node.value[:60]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "rows" and node.args:
            found.append(f"{node.lineno}: raw store.rows(...)")
    return found


def _modules() -> list[Path]:
    found = [p for top in SCANNED for p in ((ROOT / top).glob("*.py") if top == "esc_eval" else (ROOT / top).rglob("*.py"))]
    return sorted(p for p in found if not p.relative_to(ROOT).as_posix().startswith(ALLOWED))


def test_no_sql_outside_the_store() -> None:
    found = {p.relative_to(ROOT).as_posix(): v for p in _modules() if (v := violations(p))}
    assert not found, f"SQL outside runs/store/ (add a typed method to esc_eval.runs.store instead): {found}"


@pytest.mark.parametrize("source, expected", [
    ("import sqlite3\n", "import sqlite3"),
    ("from sqlite3 import Row\n", "from sqlite3 import"),
    ("x = store.rows('anything')\n", "raw store.rows"),
    ("q = f'SELECT key FROM episodes WHERE {w}'\n", "SQL"),
    ("q = 'INSERT OR REPLACE INTO meta VALUES (?, ?)'\n", "SQL"),
    ("q = 'UPDATE runs SET heartbeat=?'\n", "SQL"),
])
def test_the_scan_catches_each_kind(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    assert [v for v in violations(path) if expected in v], violations(path)


def test_the_scan_ignores_prose(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('"""Writes are keyed INSERT OR REPLACE, and SELECT this from that."""\n'
                    'def f():\n    """DELETE FROM nothing: a docstring."""\n    return "select a supporter from the list"\n',
                    encoding="utf-8")
    assert violations(path) == []
