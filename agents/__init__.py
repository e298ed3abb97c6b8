"""Who speaks: the seeker and supporter agents, the judge, and the chat backends behind them.

Public API, by module (imported on use: agents need autogen-core, local backends need torch):
    esc_eval.agents.messages     -- TurnRequest, Completion, SamplingParams, ChatMessage; the observed
                           TurnTaken, EpisodeEnded, Score and their topics
    esc_eval.agents.chat_agent   -- ChatAgent: one stateless agent per (role, model key)
    esc_eval.agents.seeker, esc_eval.agents.supporter -- SeekerAgent, SupporterAgent
    esc_eval.agents.backends     -- ChatBackend and its backends (see its docstring)
    esc_eval.agents.judge        -- Scorer, JudgeAgent, judge profiles, label parsers, training
    esc_eval.agents.lora_training -- the LoRA loop judge and seeker training share (needs peft)
"""

__all__ = ["backends", "chat_agent", "judge", "lora_training", "messages", "seeker", "supporter"]
