"""Every ```python block of README.md and docs/*.md runs as written, unless it says why it cannot.

A block that cannot run here (it needs a GPU, a real model server, ...) is preceded by the line
``<!-- not run: REASON -->``; every other block is executed on its own, in a fresh interpreter, in an
empty folder, with top-level ``await`` allowed (as in a notebook). The rule is stated in
docs/architecture.md#checks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>.*?) -->$")
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>.*)$")

RUNNER = """\
import ast, asyncio, inspect, sys
source = sys.stdin.read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if inspect.iscoroutine(result):
    asyncio.run(result)
"""
"""Runs a block from stdin; a block with top-level ``await`` compiles to a coroutine, run on a new event loop."""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    """The line of the opening fence (1-based)."""
    source: str
    not_run: str | None
    """The reason given on the line before, or None when the block runs."""

    @property
    def label(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    """The ```python blocks of one page, each with the ``not run`` reason of the line before its fence."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        if fence["info"].strip().split(" ")[0] == "python":
            before = lines[index - 1].strip() if index else ""
            reason = NOT_RUN.match(before)
            body = "\n".join(line[len(fence["indent"]):] for line in lines[index + 1:end])
            blocks.append(Block(page, index + 1, body + "\n", reason["reason"].strip() if reason else None))
        index = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page)]


def test_blocks_are_found() -> None:
    """The docs do hold python blocks; an empty list would make the test below pass vacuously."""
    assert len(BLOCKS) >= 3
    assert {block.page.name for block in BLOCKS} >= {"personas.md", "monitor.md"}


def test_every_block_not_run_says_why() -> None:
    """A ``not run`` marker names its reason, and every such comment sits right before a python block."""
    marked = {block.label for block in BLOCKS if block.not_run is not None}
    assert all(block.not_run for block in BLOCKS if block.not_run is not None), "a <!-- not run: --> marker without a reason"
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if line.strip().startswith("<!-- not run"):
                assert NOT_RUN.match(line.strip()), f"{page.relative_to(ROOT)}:{number}: write it as <!-- not run: REASON -->"
                assert f"{page.relative_to(ROOT)}:{number + 1}" in marked, f"{page.relative_to(ROOT)}:{number}: not before a ```python block"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block", BLOCKS, ids=[block.label for block in BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    """The block runs without error in a fresh interpreter (an empty working folder: it writes nowhere else)."""
    if block.not_run is not None:
        pytest.skip(f"marked not run: {block.not_run}")
    result = subprocess.run([sys.executable, "-c", RUNNER, block.label], input=block.source, cwd=tmp_path,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, f"{block.label} failed:\n{result.stdout}\n{result.stderr}"
