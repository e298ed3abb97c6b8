import time

from esc_eval.environments.episode import Episode, Outcome, OutcomeKind, Role
from esc_eval.environments.termination import EndToken, MaxRounds, MaxTokens, Timeout
from esc_eval.roles.cards import RoleCard

CARD = RoleCard("c1", "en", "Age: 30\nProblem: stress", "work_study", "test")


def episode_with(rounds: int, opener: bool = True, tokens: int = 1) -> Episode:
    episode = Episode("k", CARD, "sup")
    if opener:
        episode.add(Role.SUPPORTER, "hello", generated=False)
    for _ in range(rounds):
        episode.add(Role.SEEKER, "I feel bad", completion_tokens=tokens)
        episode.add(Role.SUPPORTER, "I hear you", completion_tokens=tokens)
    return episode


def test_max_rounds_counts_generated_supporter_replies_only() -> None:
    assert MaxRounds(5).check(episode_with(4)) is None
    outcome = MaxRounds(5).check(episode_with(5))
    assert outcome == Outcome(OutcomeKind.TRUNCATED, "max_rounds=5")
    # the opener is not a round
    assert episode_with(5).rounds == 5 and len(episode_with(5).turns) == 11


def test_max_rounds_waits_for_the_supporter_to_close_the_round() -> None:
    episode = episode_with(4)
    episode.add(Role.SEEKER, "still here")
    assert MaxRounds(5).check(episode) is None


def test_max_tokens_truncates_at_the_budget() -> None:
    assert MaxTokens(100).check(episode_with(2, tokens=20)) is None  # 80 tokens
    outcome = MaxTokens(100).check(episode_with(3, tokens=20))  # 120 tokens
    assert outcome is not None and outcome.kind is OutcomeKind.TRUNCATED


def test_end_token_terminates_only_on_the_named_role() -> None:
    episode = episode_with(1)
    episode.add(Role.SEEKER, "thanks, bye [END]")
    outcome = EndToken("[END]").check(episode)
    assert outcome is not None and outcome.kind is OutcomeKind.TERMINATED
    episode.add(Role.SUPPORTER, "[END] take care")
    assert EndToken("[END]").check(episode) is None  # supporter said it; detector watches the seeker
    assert EndToken("[END]", role=None).check(episode) is not None


def test_end_token_ignores_the_fixed_opener() -> None:
    episode = Episode("k", CARD, "sup")
    episode.add(Role.SUPPORTER, "say [END] to stop", generated=False)
    assert EndToken("[END]", role=None).check(episode) is None


def test_timeout_truncates_after_the_deadline() -> None:
    episode = episode_with(1)
    assert Timeout(60).check(episode) is None
    episode.started = time.monotonic() - 61
    outcome = Timeout(60).check(episode)
    assert outcome is not None and outcome.kind is OutcomeKind.TRUNCATED and "timeout" in outcome.reason


def test_or_fires_on_either_and_keeps_the_first_outcome() -> None:
    detector = EndToken("[END]") | MaxRounds(2)
    assert detector.check(episode_with(1)) is None
    assert detector.check(episode_with(2)).kind is OutcomeKind.TRUNCATED  # type: ignore[union-attr]
    ending = episode_with(1)
    ending.add(Role.SEEKER, "goodbye [END]")
    assert detector.check(ending).kind is OutcomeKind.TERMINATED  # type: ignore[union-attr]
    both = episode_with(2)
    both.add(Role.SEEKER, "[END]")
    assert detector.check(both).kind is OutcomeKind.TERMINATED  # type: ignore[union-attr]
    assert (MaxRounds(2) | EndToken("[END]")).check(both).kind is OutcomeKind.TRUNCATED  # type: ignore[union-attr]


def test_and_needs_all_and_prefers_terminated() -> None:
    detector = EndToken("[END]") & MaxRounds(2)
    early = episode_with(1)
    early.add(Role.SEEKER, "bye [END]")
    assert detector.check(early) is None  # goodbye alone is not enough
    assert detector.check(episode_with(3)) is None  # limit alone is not enough
    late = episode_with(2)
    late.add(Role.SEEKER, "bye [END]")
    outcome = detector.check(late)
    assert outcome is not None and outcome.kind is OutcomeKind.TERMINATED and "&" in outcome.reason
    truncated_both = (MaxRounds(1) & MaxTokens(1)).check(episode_with(2))
    assert truncated_both is not None and truncated_both.kind is OutcomeKind.TRUNCATED


def test_composition_nests() -> None:
    detector = (EndToken("[END]") & MaxRounds(1)) | MaxRounds(3)
    assert detector.check(episode_with(2)) is None
    assert detector.check(episode_with(3)).kind is OutcomeKind.TRUNCATED  # type: ignore[union-attr]
