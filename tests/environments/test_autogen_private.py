"""autogen-core's private members are used in one module only, and still exist as used there."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from autogen_core import SingleThreadedAgentRuntime

from esc_eval.environments import autogen_private
from esc_eval.environments.autogen_private import PRIVATE_USES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("roles", "agents", "environments", "runs", "testing", "benchmarks")
PRIVATE_IMPORT = re.compile(r"\bautogen_core\._")


@pytest.mark.parametrize("name", PRIVATE_USES)
def test_each_private_member_still_exists_on_the_runtime(name: str) -> None:
    runtime = SingleThreadedAgentRuntime()
    assert hasattr(runtime, name), (
        f"autogen-core no longer has SingleThreadedAgentRuntime.{name}: update environments/autogen_private.py")


def test_the_overridden_private_methods_keep_their_signatures() -> None:
    """An upgrade that renames a parameter would make the override swallow or break calls."""
    assert list(inspect.signature(SingleThreadedAgentRuntime._try_serialize).parameters) == ["self", "message"]
    assert inspect.iscoroutinefunction(SingleThreadedAgentRuntime._create_otel_attributes)
    assert hasattr(SingleThreadedAgentRuntime()._tracer_helper, "trace_block")


def test_the_docstring_lists_every_private_use() -> None:
    for name in PRIVATE_USES:
        assert f"SingleThreadedAgentRuntime.{name}" in (autogen_private.__doc__ or ""), name


def test_no_other_module_touches_autogen_cores_private_members() -> None:
    names = re.compile(r"\.(" + "|".join(map(re.escape, PRIVATE_USES)) + r"|_get_agent|_subscription_manager|_intervention_handlers"
                       r"|_instantiated_agents|_agent_factories|_message_queue|_run_context)\b")
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == Path(autogen_private.__file__).resolve():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if PRIVATE_IMPORT.search(line) or names.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
