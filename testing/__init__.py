"""Test and benchmark fixtures that talk to real sockets on loopback (not installed with the package).

Public API, by module:
    esc_eval.testing.fake_server   -- FakeOpenAIServer: an OpenAI-compatible server that records requests
                             and injects faults from a seeded script
    esc_eval.testing.model_server  -- start_transformers_serve: the embedded model behind ``transformers serve``
    esc_eval.testing.scenarios     -- fault and crash scenarios, audit_store (nothing lost or duplicated)
    esc_eval.testing.cli           -- esc_eval (the command in a subprocess), write_config
"""

__all__ = ["cli", "fake_server", "model_server", "scenarios"]
