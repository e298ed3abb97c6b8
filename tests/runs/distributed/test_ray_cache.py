"""Ray workers on one host share the run's response cache file: what two workers stored answers a whole rerun."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esc_eval.runs.config import load_config
from esc_eval.runs.distributed import DistributedRunner
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store
from esc_eval.runs.store.cache import ResponseCache
from tests.runs.distributed.helpers import ThreadedServer, dump, write_config

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.mark.timeout(240)
async def test_two_workers_fill_one_cache_that_answers_a_local_rerun(cluster: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    with ThreadedServer() as server:
        plan = RunPlan.prepare(load_config(write_config(tmp_path, server.base_url, cards=30, rounds=2, cache=str(cache))))
        first = tmp_path / "ray.sqlite"
        store = Store.create(first, config=plan.config.to_dict(), fingerprint=plan.fingerprint())
        runner = DistributedRunner(plan, store, address=cluster, workers=2)
        result = await runner.run()
        assert result.exit_code == 0 and result.progress.done == 60
        sent = server.answered
        assert {w.state for w in result.progress.workers.values()} == {"finished"} and len(result.progress.workers) == 2
        stored = ResponseCache.open(cache, writable=False)
        assert len(stored) == sent  # every request of both workers is in the one file (distinct requests here)
        stored.close()

        second = tmp_path / "local.sqlite"
        rerun = await Runner(plan, Store.create(second, config=plan.config.to_dict(), fingerprint=plan.fingerprint())).run()
        assert rerun.exit_code == 0 and server.answered == sent
    before, after = dump(first), dump(second)
    assert after["turns"] == before["turns"] and after["scores"] == before["scores"]
