"""Where they speak: one conversation at a time, on an autogen-core runtime.

Public API, by module (imported on use: the environment and runtime need autogen-core):
    esc_eval.environments.environment   -- Environment (reset / step / run), SupporterSpec
    esc_eval.environments.episode       -- Episode, Turn, Role, Outcome, OutcomeKind, StepResult
    esc_eval.environments.turn_policies -- TurnPolicy, Alternating
    esc_eval.environments.termination   -- Detector, MaxRounds, MaxTokens, EndToken, Timeout (compose with | and &)
    esc_eval.environments.behaviours    -- SeekerBehaviour, PersonaBehaviour, load_behaviour, list_personas, preview
    esc_eval.environments.views         -- seeker_view, supporter_view: who sees what
    esc_eval.environments.replay        -- seeker_examples: a finished dialogue as the seeker's requests (seeker training)
    esc_eval.environments.runtime       -- make_runtime, LeanRuntime (autogen-core through its public API)
    esc_eval.environments.stage         -- assemble: a started runtime with the seeker, supporter and observer agents
                                  and one Environment per seeker (the runner, the tests and the docs use it)
    esc_eval.environments.autogen_private -- the only module touching autogen-core's private members
"""

__all__ = ["autogen_private", "behaviours", "environment", "episode", "replay", "runtime", "stage", "termination", "turn_policies", "views"]
