"""Executing a run: plan the episodes, admit them, drive them, record them.

Public API, by module (imported on use; the runner needs autogen-core):
    esc_eval.runs.execution.plan       -- RunPlan (everything checkable before a store exists), episode_key,
                                 load_judge_profile
    esc_eval.runs.execution.pool       -- BackendPool: one backend per distinct endpoint
    esc_eval.runs.execution.resume     -- open_run_store: a new store, or a resumed one under the fingerprint rules
    esc_eval.runs.execution.runner     -- Runner, make_scorer
    esc_eval.runs.execution.result     -- RunResult (exit_code: the README's table), the exit codes
    esc_eval.runs.execution.progress   -- RunProgress: the live counters the monitor reads
    esc_eval.runs.execution.observers  -- StoreObserver: the runtime subscriber that records turns and ends
    esc_eval.runs.execution.interrupt  -- InterruptPolicy: what Ctrl-C and SIGTERM do to a run (stop admitting, a grace period,
                                          cancel; a second: end now), GRACE_SECONDS
    esc_eval.runs.execution.preflight  -- preflight: each served endpoint asked for /models before a store exists
    esc_eval.runs.execution.caching    -- CachingBackend, ResponseCacheSession: the response cache around each endpoint
    esc_eval.runs.execution.estimate   -- estimate, Calibration, expected_episode_cost: --dry-run's requests, tokens and costs of
                                          a plan played on paper (an upper bound and an expectation)
"""

__all__ = ["caching", "estimate", "interrupt", "observers", "plan", "pool", "preflight", "progress", "result", "resume", "runner"]
