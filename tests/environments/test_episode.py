"""A turn's shapes: the environment's ``Turn`` becomes the one message observers receive (``TurnTaken``)."""

from __future__ import annotations

from esc_eval.agents.messages import TurnTaken
from esc_eval.environments.episode import Role, Turn


def test_a_turn_is_published_with_every_field_and_its_episode_key() -> None:
    turn = Turn(3, Role.SEEKER, "I can't sleep", prompt_tokens=11, completion_tokens=5, latency=0.25, at=9.5,
                state_json='{"emotion": 4}')
    assert turn.taken("sup/default/00000-c/s0/r0") == TurnTaken(
        "sup/default/00000-c/s0/r0", 3, "seeker", "I can't sleep", 11, 5, 0.25, 9.5, '{"emotion": 4}')
    assert Turn(0, Role.SUPPORTER, "Hello", generated=False).taken("k").state == ""
