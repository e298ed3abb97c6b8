"""An endpoint's ``options`` table: checked against the backend factory's signature when the config is loaded,
passed to the factory as keyword arguments by the pool, part of the fingerprint only when given."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esc_eval.runs.config import ConfigError, parse_config
from esc_eval.runs.execution.pool import BackendPool
from tests.plugins.site import example_site

URL = "http://127.0.0.1:9/v1"


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example plugins, installed as far as importlib.metadata can tell."""
    site, sources = example_site(tmp_path / "site")
    for folder in [*sources, site]:
        monkeypatch.syspath_prepend(str(folder))
    yield
    for module in ("esc_eval_example_backend", "esc_eval_example_termination", "esc_eval_example_turn_policy", "esc_eval_plugin_persona"):
        sys.modules.pop(module, None)


def config(**supporter: Any) -> Any:
    return parse_config({"seeker": {"base_url": URL, "model": "m"},
                         "supporters": [{"name": "a", "base_url": URL, "model": "m", **supporter}]}, "run.toml")


@pytest.mark.parametrize(("supporter", "message"), [
    ({"options": {"user_agent": "x"}}, "field 'options': backend 'openai': got an unexpected keyword argument 'user_agent'"),
    ({"backend": "plain_http", "options": {"user_agnet": "x"}},
     "field 'options': backend 'plain_http': got an unexpected keyword argument 'user_agnet'"),
    ({"backend": "plain_http", "options": {"user_agent": 7}}, "field 'options': backend 'plain_http': argument 'user_agent' must be str, got int 7"),
    ({"backend": "plain_http", "options": "user_agent=x"}, "field 'options': must be a table, got 'user_agent=x'"),
])
def test_options_a_backend_does_not_take_are_config_errors(plugins: None, supporter: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**supporter)
    assert str(caught.value) == f"run.toml: [supporters[0]] {message}"


def test_options_are_kept_and_count_in_the_fingerprint_only_when_given(plugins: None) -> None:
    given = config(backend="plain_http", options={"user_agent": "lab-7"})
    assert given.supporters[0].options == {"user_agent": "lab-7"}
    assert config().fingerprint() == config(options={}).fingerprint(), "configs without options keep their fingerprints"
    assert given.fingerprint() != config(backend="plain_http", options={"user_agent": "lab-8"}).fingerprint()


async def test_the_pool_passes_options_to_the_factory_and_keeps_endpoints_apart_by_them(plugins: None) -> None:
    first, second = (config(backend="plain_http", options={"user_agent": agent}).supporters[0] for agent in ("lab-7", "lab-8"))
    pool = BackendPool()
    try:
        made = pool.get("a", first)
        assert made.headers == {"User-Agent": "lab-7"}  # type: ignore[attr-defined]
        assert pool.get("b", first) is made and pool.get("c", second) is not made
        assert pool.get("c", second).headers == {"User-Agent": "lab-8"}  # type: ignore[attr-defined]
        assert pool.kinds == {"a": "plain_http", "b": "plain_http", "c": "plain_http"}
    finally:
        await pool.aclose()
