"""Training on run data: the seeker adapter (``esc-eval seeker train``); the judge's lives in ``esc_eval.agents.judge.training``.

Public API, by module (imported on use: training needs peft):
    esc_eval.runs.training.dialogues -- read_dialogues: ESC-Eval result files, JSONL exports, ESConv-style dialogues with their cards
    esc_eval.runs.training.seeker    -- train_seeker, train_command: one LoRA adapter that speaks as the seeker
"""

__all__ = ["dialogues", "seeker"]
