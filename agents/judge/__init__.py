"""The judge: scores ended episodes on ESC-RANK-style dimensions.

Public API, by module (imported on use: the agent needs autogen-core, training needs peft):
    esc_eval.agents.judge.agent     -- JudgeAgent (observes ended episodes), Scorer (one scoring job per
                              transcript x dimension x sample, under its own limit), Score
    esc_eval.agents.judge.profiles  -- JudgeProfile, load_profile, builtin_profiles,
                              DIMENSIONS, PAPER_NAMES: prompt profiles as data
    esc_eval.agents.judge.labels    -- parse_label, parse_esc_rank, PARSE_RULES, NO_LABEL: reply text -> label
    esc_eval.agents.judge.training  -- train_command, TrainingOptions: one LoRA adapter per dimension
"""

__all__ = ["agent", "labels", "profiles", "training"]
