"""Executing a run: plan the episodes, admit them, drive them, record them.

Public API, by module (imported on use; the runner needs autogen-core):
    runs.execution.plan       -- RunPlan (everything checkable before a store exists), episode_key,
                                 load_judge_profile
    runs.execution.pool       -- BackendPool: one backend per distinct endpoint
    runs.execution.resume     -- open_run_store: a new store, or a resumed one under the fingerprint rules
    runs.execution.runner     -- Runner, RunResult, make_scorer
    runs.execution.progress   -- RunProgress: the live counters the monitor reads
    runs.execution.observers  -- StoreObserver: the runtime subscriber that records turns and ends
    runs.execution.interrupt  -- InterruptPolicy: what Ctrl-C does to a run (stop admitting, then quit), INTERRUPTED
"""

__all__ = ["interrupt", "observers", "plan", "pool", "progress", "resume", "runner"]
