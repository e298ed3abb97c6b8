"""Many episodes: a run from config to leaderboard, in rooms that each do one job.

Public API, by package (each ``__init__`` states its own):
    esc_eval.runs.config      -- load_config, Config: the TOML contract, checked before anything is written
    esc_eval.runs.execution   -- plan, pool, resume, runner, interrupt, progress, observers
    esc_eval.runs.store       -- Store (the only module that speaks SQL) and its typed records
    esc_eval.runs.analysis    -- leaderboard, statistics, comparisons, agreement, report
    esc_eval.runs.monitor     -- snapshots of a run, live or from its store, and their terminal views
    esc_eval.runs.viewer      -- esc-eval view and the self-contained HTML report
    esc_eval.runs.annotation  -- the labelling web app and label files
    esc_eval.runs.web         -- the guard every local web server uses (token, Host/Origin checks, CSP)
    esc_eval.runs.cards       -- esc-eval cards build
    esc_eval.runs.formats     -- ESC-Eval JSON and our JSONL in and out; judging transcript files
    esc_eval.runs.distributed -- the Ray executor
    esc_eval.runs.training    -- esc-eval seeker train (the seeker's LoRA adapter)
    esc_eval.runs.cli         -- the ``esc-eval`` command, one module per command group
"""

__all__ = ["analysis", "annotation", "cards", "cli", "config", "distributed", "execution", "formats", "monitor", "store", "training", "viewer", "web"]
