"""Executing a run: plan the episodes, admit them, drive them, record them.

Public API, by module (imported on use; the runner needs autogen-core):
    runs.execution.runner     -- RunPlan (everything checkable before a store exists), Runner,
                                 RunResult, BackendPool, episode_key
    runs.execution.progress   -- RunProgress: the live counters the monitor reads
    runs.execution.observers  -- StoreObserver: the runtime subscriber that records turns and ends
    runs.execution.interrupt  -- InterruptPolicy: what Ctrl-C does to a run (stop admitting, then quit), INTERRUPTED
"""

__all__ = ["interrupt", "observers", "progress", "runner"]
