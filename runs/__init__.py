"""Many episodes: a run from config to leaderboard, in rooms that each do one job.

Public API, by package (each ``__init__`` states its own):
    runs.config      -- load_config, Config: the TOML contract, checked before anything is written
    runs.execution   -- plan, pool, resume, runner, interrupt, progress, observers
    runs.store       -- Store (the only module that speaks SQL) and its typed records
    runs.analysis    -- leaderboard, statistics, comparisons, agreement, report
    runs.monitor     -- snapshots of a run, live or from its store, and their terminal views
    runs.viewer      -- esc-eval view and the self-contained HTML report
    runs.annotation  -- the labelling web app and label files
    runs.web         -- the guard every local web server uses (token, Host/Origin checks, CSP)
    runs.cards       -- esc-eval cards build
    runs.formats     -- ESC-Eval JSON and our JSONL in and out; judging transcript files
    runs.distributed -- the Ray executor
    runs.training    -- esc-eval seeker train (the seeker's LoRA adapter)
    runs.cli         -- the ``esc-eval`` command, one module per command group
"""

__all__ = ["analysis", "annotation", "cards", "cli", "config", "distributed", "execution", "formats", "monitor", "store", "training", "viewer", "web"]
