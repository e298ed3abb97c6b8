"""Seeker realism against real people: the measure tells people from simulators, and people from people not.

The validity checks of issue 33 read ESConv's dev split in place (``tests.reference.require_esconv``) and set
their data apart themselves: the dialogues are split in two halves by a seeded shuffle; one half is the human
reference, the other is held out and either compared directly (people against people) or replayed into real
runs (the runner with scripted backends) by a seeker answering with its lines. The rest of the file checks
the parts on dialogues of known truth and needs no data.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.roles.personas import base_role_break
from esc_eval.runs.analysis.realism import (
    Reference,
    compare,
    discriminate,
    distances,
    file_episodes,
    realism_index,
    rounds_of,
)
from esc_eval.runs.analysis.realism_features import FEATURES, dialogue_features, merge_turns, seeker_turns
from esc_eval.runs.analysis.seeker import stored_episodes
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.store import Store
from tests.reference import needs_esconv, require_esconv

RULE = base_role_break()
ROUNDS = 5
URL = "http://127.0.0.1:9/v1"
ONE_LINE = "I just feel really down about everything lately."
DRAWS = 200


# --------------------------------------------------------------------------- data set apart by the tests


def _halves() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """(reference half, held-out half, the held-out dialogues' 1-based record numbers in the dev file)."""
    records = json.loads(require_esconv().read_text(encoding="utf-8"))
    order = list(range(len(records)))
    random.Random(33).shuffle(order)
    half = len(order) // 2
    return [records[i] for i in order[:half]], [records[i] for i in order[half:]], [i + 1 for i in order[half:]]


def _turns(record: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A person's seeker turns and, for each, the supporter turn that answered it ("" when none did)."""
    merged = merge_turns([(u["speaker"], u["content"]) for u in record["dialog"]])
    seeker, answers = [], []
    for i, (role, text) in enumerate(merged):
        if role == "seeker":
            seeker.append(text)
            answers.append(merged[i + 1][1] if i + 1 < len(merged) else "")
    return seeker, answers


def _card_of(messages: Sequence[ChatMessage], count: int) -> int:
    return next(i for i in range(count) if f"Replay card {i:03d}:" in messages[0]["content"])


def _replayer(people: list[tuple[list[str], list[str]]]) -> Callable[..., str]:
    """A seeker saying, on card i, held-out person i's seeker turns in order."""
    def script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        lines = people[_card_of(messages, len(people))][0]
        turn = sum(m["role"] == "assistant" for m in messages)
        return lines[min(turn, len(lines) - 1)]
    return script


class _Supporter:
    """The supporter of every run: on the i-th episode, what person i's supporter answered to each seeker turn.

    The runs go one episode at a time (``concurrency = 1``) in plan order, card 0 first, so a new episode is
    the first request with a single seeker line; ``check`` (the replay run) asserts the person matches.
    """

    def __init__(self, people: list[tuple[list[str], list[str]]], check: bool = False) -> None:
        self.people, self.check, self.card = people, check, -1

    def __call__(self, messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        seeker = [m["content"] for m in messages if m["role"] == "user"]
        self.card += len(seeker) == 1
        lines, answers = self.people[self.card]
        if self.check:
            assert seeker == lines[: len(seeker)], "episodes out of card order"
        return answers[min(len(seeker), len(answers)) - 1] or "I hear you. Tell me more."


def parrot(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return messages[-1]["content"]


def one_line(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return ONE_LINE


async def _run(path: Path, cards: Path, seeker: Callable[..., str], supporter: Callable[..., str]) -> Path:
    config = parse_config({
        "run": {"rounds": ROUNDS, "concurrency": 1},
        "cards": {"path": str(cards), "language": "en"},
        "seeker": {"base_url": URL, "model": path.stem},
        "supporters": [{"name": "replayed", "base_url": URL, "model": "replayed"}],
    })
    plan = RunPlan.prepare(config)
    store = Store.create(path, config=config.to_dict(), fingerprint=plan.fingerprint(), personas=plan.personas())
    result = await Runner(plan, store, backends={"seeker": ScriptedBackend(seeker), "replayed": ScriptedBackend(supporter)}).run()
    assert result.exit_code == 0
    return path


@pytest.fixture(scope="module")
def esconv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The halves as files, the cards (one per held-out person), its build report, and three runs on them."""
    root = tmp_path_factory.mktemp("realism")
    reference, held, numbers = _halves()
    (root / "reference.json").write_text(json.dumps(reference), encoding="utf-8")
    (root / "held.json").write_text(json.dumps(held), encoding="utf-8")
    cards = root / "cards.jsonl"
    cards.write_text("".join(json.dumps({"id": str(i), "language": "en", "category": "society_other", "source": "esconv",
                                         "profile": f"Replay card {i:03d}: someone who wants to talk."}) + "\n"
                             for i in range(len(held))), encoding="utf-8")
    (root / "build-report.json").write_text(json.dumps({"counts": {}, "cards": [
        {"id": i, "item": f"{require_esconv().stem}:{n}"} for i, n in enumerate(numbers)]}), encoding="utf-8")
    people = [_turns(r) for r in held]
    stores = {name: asyncio.run(_run(root / f"{name}.sqlite", cards, seeker, _Supporter(people, check=name == "replay")))
              for name, seeker in (("replay", _replayer(people)), ("parrot", parrot), ("one_line", one_line))}
    return {"root": root, "stores": stores, "reference": Reference.read(root / "reference.json"),
            "full": Reference.read(require_esconv()), "report": root / "build-report.json"}


def _realism(store: Path, reference: Reference, seed: int = 0, report: dict[str, str] | None = None) -> dict[str, Any]:
    with Store.open(store, readonly=True) as opened:
        episodes = stored_episodes(opened)
    return compare(episodes, reference, RULE, seed, report)


# --------------------------------------------------------------------------- validity (ESConv)


@needs_esconv
def test_people_against_people_are_indistinguishable(esconv: dict[str, Any]) -> None:
    found = compare(file_episodes(esconv["root"] / "held.json"), esconv["reference"], RULE, seed=0)
    low, high = found["auc_ci"]
    assert low <= 0.5 <= high and found["auc"] <= 0.65, found["auc_ci"]
    assert found["n_reference"] == len(esconv["reference"].dialogues) and found["index"] > 80


@needs_esconv
@pytest.mark.slow  # 20-25 s on the shared 2-core machine: each comparison refits its interval 500 times
def test_replayed_people_read_as_human_and_simulators_as_simulated(esconv: dict[str, Any]) -> None:
    found = {name: _realism(path, esconv["reference"]) for name, path in esconv["stores"].items()}
    assert found["replay"]["rounds"] == ROUNDS
    assert found["replay"]["auc"] <= 0.70, found["replay"]["auc_ci"]
    assert found["parrot"]["auc"] >= 0.85 and found["one_line"]["auc"] >= 0.85
    assert found["replay"]["index"] > found["parrot"]["index"] and found["replay"]["index"] > found["one_line"]["index"]
    features = {name: f["features"] for name, f in found.items()}
    assert features["parrot"]["parroting"]["simulated"] > 0.9 > 0.1 > features["replay"]["parroting"]["simulated"]
    assert features["one_line"]["self_repetition"]["simulated"] == 1.0
    assert features["one_line"]["emotion_words"]["distance"] > features["replay"]["emotion_words"]["distance"]


@needs_esconv
@pytest.mark.slow  # 20-25 s on the shared 2-core machine: each comparison refits its interval 500 times
def test_same_seed_same_figures(esconv: dict[str, Any]) -> None:
    store = esconv["stores"]["replay"]
    assert _realism(store, esconv["reference"], seed=7) == _realism(store, esconv["reference"], seed=7)


@needs_esconv
@pytest.mark.slow  # 20-25 s on the shared 2-core machine: each comparison refits its interval 500 times
def test_pairs_put_each_episode_beside_the_person_its_card_came_from(esconv: dict[str, Any]) -> None:
    from esc_eval.runs.analysis.realism import cards_report

    report = cards_report(esconv["report"])
    replay = _realism(esconv["stores"]["replay"], esconv["full"], report=report)["pairs"]
    parroted = _realism(esconv["stores"]["parrot"], esconv["full"], report=report)["pairs"]
    assert len(replay) == len(parroted) == len(report)
    first = replay[0]
    assert first["item"] == report[first["card"]] and set(first["distances"]) == set(FEATURES)
    # the replayed seeker said the person's own lines: on most cards nothing differs but the run's opener
    same = [p for p in replay if p["simulated"] == p["human"]]
    assert len(same) >= 0.9 * len(replay)
    assert float(np.median([p["distance"] for p in replay])) < 0.1 < float(np.median([p["distance"] for p in parroted]))


# --------------------------------------------------------------------------- the parts, on known truth


def test_turns_merge_and_the_opener_is_not_a_seeker_turn() -> None:
    transcript = [("supporter", "Hi, how are you?"), ("seeker", "Not great."), ("seeker", "My job is killing me."),
                  ("supporter", "That sounds hard."), ("supporter", "What happened?"), ("seeker", "I got fired."),
                  ("supporter", "I'm sorry."), ("seeker", "Thanks.")]
    assert merge_turns(transcript)[1] == ("seeker", "Not great. My job is killing me.")
    turns = seeker_turns(transcript, rounds=2)
    assert [t for t, _, _ in turns] == ["Not great. My job is killing me.", "I got fired."]
    assert turns[0][1] == "Hi, how are you?" and turns[1][1] == "That sounds hard. What happened?"
    seeker_first = [("seeker", "hello"), ("supporter", "hi"), ("seeker", "i feel sad")]
    assert seeker_turns(seeker_first)[0][1] == "" and rounds_of([transcript, seeker_first]) == 3


def test_features_on_a_dialogue_of_known_truth() -> None:
    transcript = [("supporter", "Hello, what brings you here?"),
                  ("seeker", "hi. i guess i'm just sad"),
                  ("supporter", "Have you tried talking to a friend? You could call one."),
                  ("seeker", "Yes, good idea, I will try. My boss fired me?"),
                  ("supporter", "Maybe you should rest."),
                  ("seeker", "But I can't sleep."),
                  ("supporter", "I'm here."),
                  ("seeker", "Thank you, I feel better now.")]
    found = dialogue_features(transcript, "en", 4, RULE)
    assert found is not None and list(found) == list(FEATURES)
    assert found["questions"] == 0.25 and found["hedges"] == 0.25 and found["thanks"] == 0.25
    assert found["agreement"] == 0.5, "two turns follow advice; the first agrees"
    assert found["pushback"] == 0.25 and found["relief_turn"] == 4.0 and found["disclosure_turn"] == 2.0
    assert found["unpunctuated"] == 0.25 and found["role_slips"] == 0.0
    assert dialogue_features(transcript, "en", 1, RULE)["relief_turn"] == 2.0, "never within R turns: R + 1"  # type: ignore[index]
    assert dialogue_features([("supporter", "hi")], "en", 5, RULE) is None
    zh = dialogue_features([("supporter", "你好"), ("seeker", "我最近工作压力很大，可能要辞职了。"), ("supporter", "你可以休息一下"),
                            ("seeker", "好的，谢谢，我感觉好多了")], "zh", 5, RULE)
    assert zh is not None and zh["disclosure_turn"] == 1.0 and zh["relief_turn"] == 2.0 and zh["agreement"] == 1.0
    assert zh["hedges"] == 0.5 and (zh["first_person"] or 0) > 0


def test_the_discriminator_on_synthetic_data_of_known_truth() -> None:
    rng = np.random.default_rng(0)
    # told apart: one feature shifted by 3 standard deviations (best possible AUC 0.98)
    shifted, same = rng.normal(size=(80, 6)), rng.normal(size=(80, 6))
    shifted[:, 2] += 3
    auc, ci = discriminate(shifted, same, seed=0, resamples=100)
    assert auc is not None and ci is not None and auc >= 0.93 and ci[0] > 0.85
    assert discriminate(rng.normal(size=(1, 6)), rng.normal(size=(9, 6)), 0) == (None, None)
    # a side of two dialogues: the bootstrap draws some with one distinct dialogue, which no fold can score
    auc, ci = discriminate(rng.normal(size=(2, 3)), rng.normal(size=(9, 3)), 0, resamples=50)
    assert auc is not None and ci is not None and 0 <= ci[0] <= ci[1] <= 1


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 200 x 505 fits: 10-15 min on the shared 2-core machine
def test_the_interval_covers_no_difference_at_least_as_often_as_it_says() -> None:
    """Two samples of one distribution (DRAWS draws of 15 dialogues a side, 4 features): the 95% interval covers 0.5.

    A bootstrap of the out-of-fold scores alone covered it 35 times in 40 (0.875): the scores share their
    training rows. 200 draws tell 0.95 from 0.88: at least 183 happens with 99% probability at 0.95 and under
    7% at 0.88. The refitting bootstrap errs wide (measured: 198 of 200, mean width 1.3 times that range), so the
    test also bounds how wide: the mean interval at most 1.4 times the 95% range of the AUC itself over the draws.
    """
    covered, aucs, widths = 0, [], []
    for seed in range(DRAWS):
        draw = np.random.default_rng(seed)
        auc, ci = discriminate(draw.normal(size=(15, 4)), draw.normal(size=(15, 4)), seed, repeats=1)
        assert auc is not None and ci is not None
        covered += ci[0] <= 0.5 <= ci[1]
        aucs.append(auc)
        widths.append(ci[1] - ci[0])
    spread = float(np.subtract(*np.quantile(aucs, [0.975, 0.025])))
    assert covered >= 183, f"covered 0.5 in {covered} of {DRAWS} draws"
    assert float(np.mean(widths)) <= 1.4 * spread, (np.mean(widths), spread)


def test_missing_values_are_imputed_not_fatal() -> None:
    rng = np.random.default_rng(1)
    simulated, human = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    simulated[:, 1] = math.nan  # e.g. never any advice to agree with
    human[::3, 1] = math.nan
    auc, ci = discriminate(simulated, human, seed=0)
    assert auc is not None and auc > 0.85, "missing where people have a value is itself a tell"


def test_index_is_monotone_in_auc_and_distances() -> None:
    simulated = np.array([[1.0] * len(FEATURES), [2.0] * len(FEATURES)])
    human = np.array([[1.0] * len(FEATURES), [3.0] * len(FEATURES)])
    near, far = distances(simulated, human), distances(simulated + 5, human)
    assert near["words_per_turn"]["distance"] == 0.5 and near["words_per_turn"]["normalised"] == 0.5
    assert realism_index(0.5, {n: {**f, "normalised": 0.0} for n, f in near.items()}) == 100.0
    values = [realism_index(auc, near) or -1.0 for auc in (0.3, 0.5, 0.6, 0.8, 1.0)]
    assert values[0] == values[1] > values[2] > values[3] > values[4] >= 0, "below 0.5 counts as 0.5"
    assert realism_index(0.6, near) > realism_index(0.6, far)  # type: ignore[operator]
    assert realism_index(None, near) is None


def test_dialogue_files_are_read_or_refused_naming_where(tmp_path: Path) -> None:
    from esc_eval.runs.analysis.realism import RealismError, read_dialogue_file

    good = tmp_path / "people.jsonl"
    good.write_text(json.dumps({"id": "a7", "dialog": [{"role": "seeker", "content": "hi"}, {"role": "seeker", "content": "it's work"}]})
                    + "\n\n" + json.dumps({"dialog": [{"speaker": "supporter", "content": "hello"}]}) + "\n", encoding="utf-8")
    first, second = read_dialogue_file(good)
    assert (first.key, first.transcript) == ("people:a7", [("seeker", "hi it's work")]) and second.key == "people:2"
    cases = {"broken.jsonl": ('{"dialog": []}\n{oops\n', "broken.jsonl: not JSON", "(line 2)"),
             "object.json": ('{"dialog": []}', "object.json: expected a non-empty list", ""),
             "speaker.json": ('[{"dialog": [{"speaker": "bot", "content": "x"}]}]', "record 1: dialog turn 1", "seeker or supporter")}
    for name, (text, where, what) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(RealismError, match="^--reference: ") as caught:
            read_dialogue_file(tmp_path / name)
        assert where in str(caught.value) and what in str(caught.value) and "\n" not in str(caught.value)
