"""Where they speak: one conversation at a time, on an autogen-core runtime.

Public API, by module (imported on use: the environment and runtime need autogen-core):
    environments.environment   -- Environment (reset / step / run), SupporterSpec
    environments.episode       -- Episode, Turn, Role, Outcome, OutcomeKind, StepResult
    environments.turn_policies -- TurnPolicy, Alternating
    environments.termination   -- Detector, MaxRounds, MaxTokens, EndToken, Timeout (compose with | and &)
    environments.behaviours    -- SeekerBehaviour, PersonaBehaviour, load_behaviour, list_personas, preview
    environments.views         -- seeker_view, supporter_view: who sees what
    environments.replay        -- seeker_examples: a finished dialogue as the seeker's requests (seeker training)
    environments.runtime       -- make_runtime, LeanRuntime (autogen-core through its public API)
    environments.autogen_private -- the only module touching autogen-core's private members
"""

__all__ = ["autogen_private", "behaviours", "environment", "episode", "replay", "runtime", "termination", "turn_policies", "views"]
