"""Two seeker personas for esc-eval, as a plugin would ship them.

``Echoing`` is written in Python: it follows the ``SeekerBehaviour`` contract by duck
typing (``directives``, ``on_turn``, ``wants_to_end``) and imports nothing of esc-eval.
``personas/stoic.yaml`` is a data persona found through its entry point
``esc_eval_plugin_persona.personas:stoic.yaml`` (``package:file``; a folder is named as a package).
"""

from __future__ import annotations

from typing import Any


class Echoing:
    """Repeats the listener's last words before answering; counts how often it did."""

    description = "Repeats the listener's last words before answering (plugin, Python)."

    def directives(self, episode: Any) -> str:
        last = episode.turns[-1].text if episode.turns else ""
        words = " ".join(last.split()[-4:])
        return f"\n\nEcho first: begin your reply with the listener's last words, \"{words}\", then answer."

    def on_turn(self, episode: Any, turn: Any) -> None:
        if turn.role.value == "seeker":
            episode.state["echoes"] = episode.state.get("echoes", 0) + 1

    def wants_to_end(self, episode: Any) -> None:
        return None
