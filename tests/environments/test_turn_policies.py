from esc_eval.environments.episode import Episode, Role
from esc_eval.environments.turn_policies import TURN_POLICIES, Alternating
from esc_eval.roles.cards import RoleCard

CARD = RoleCard("c1", "en", "Age: 30\nProblem: stress", "work_study", "test")


def test_alternating_starts_with_seeker_and_alternates() -> None:
    episode = Episode("k", CARD, "sup")
    policy = Alternating(opener=False)
    assert policy.next_speaker(episode) is Role.SEEKER
    episode.add(Role.SEEKER, "hi")
    assert policy.next_speaker(episode) is Role.SUPPORTER
    episode.add(Role.SUPPORTER, "hello")
    assert policy.next_speaker(episode) is Role.SEEKER


def test_after_the_opener_the_seeker_speaks() -> None:
    episode = Episode("k", CARD, "sup")
    episode.add(Role.SUPPORTER, "Hello, how can I help?", generated=False)
    assert Alternating().next_speaker(episode) is Role.SEEKER
    assert Alternating().opener is True


def test_policy_by_name() -> None:
    assert TURN_POLICIES.create({"name": "alternating", "opener": False}) == Alternating(opener=False)
    try:
        TURN_POLICIES.create({"name": "round-robin"})
    except ValueError as exc:
        assert "round-robin" in str(exc) and "alternating" in str(exc)
    else:
        raise AssertionError("unknown policy accepted")
