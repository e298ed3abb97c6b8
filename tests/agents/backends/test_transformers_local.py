"""TransformersLocalBackend and embedded_model_dir against the real embedded SmolLM2-135M (no mocks).

The embedded model is converted once per session into a temporary cache (~25 s on 2
idle cores); every backend test then loads that folder. Answers are short (<= 24
tokens): about a minute in all on idle cores, a few when other jobs share them.
Greedy answers are compared exactly between a prompt sent alone to a backend without
prefix cache and the same prompt left-padded in a batch, with its prefix reused from the
cache: the folder is float32, where that holds; in bfloat16 it does not, which is why
the folder is float32.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import random
import time
from pathlib import Path

import pytest
import pytest_asyncio

# Only look for torch here: importing it is the backend's job, which first sets
# OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads crawl when other jobs share the cores).
if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    pytest.skip("needs the 'local' extra (torch, transformers)", allow_module_level=True)

from esc_eval.agents.backends.base import BackendError, ChatBackend, RequestRejected  # noqa: E402
from esc_eval.agents.backends.embedded import EMBEDDED_NAME, embedded_gguf, embedded_model_dir  # noqa: E402
from esc_eval.agents.backends.kv_cache import PrefixCache, common_prefix, preallocated_layer  # noqa: E402
from esc_eval.agents.backends.packed_linear import kernel_fault  # noqa: E402
from esc_eval.agents.backends.torch_import import import_torch  # noqa: E402
from esc_eval.agents.backends.transformers_local import TransformersLocalBackend  # noqa: E402
from esc_eval.agents.backends.usage import counts  # noqa: E402
from esc_eval.agents.messages import SamplingParams  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(1200)]
shared_loop = pytest.mark.asyncio(loop_scope="module")  # the module-scoped backend lives on this loop

GREEDY = SamplingParams(max_tokens=16)

# Different lengths, so a batch of them really is left-padded.
PROMPTS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "I failed my driving test again."}],
    [
        {"role": "system", "content": "You are a patient, supportive listener. Answer in one or two sentences."},
        {"role": "user", "content": "My boss yells at me every day, I can't sleep anymore and I dread Mondays."},
    ],
    [
        {"role": "user", "content": "I moved to a new city."},
        {"role": "assistant", "content": "How are you finding it so far?"},
        {"role": "user", "content": "Lonely. I don't know anyone here."},
    ],
]


@pytest.fixture(scope="module")
def conversion(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """Convert the embedded GGUF once into a fresh cache: (cache root, folder, seconds)."""
    try:
        embedded_gguf()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("esc-eval-cache")
    started = time.perf_counter()
    folder = embedded_model_dir(root)
    return root, folder, time.perf_counter() - started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(conversion: tuple[Path, Path, float]):
    local = TransformersLocalBackend(conversion[1], max_batch=8, name="smol")
    yield local
    await local.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plain(conversion: tuple[Path, Path, float]):
    """The reference answers: one request at a time, no prefix cache, every prompt prefilled whole."""
    local = TransformersLocalBackend(conversion[1], max_batch=1, name="plain", prefix_cache_mb=0)
    yield local
    await local.aclose()


async def alone(backend: TransformersLocalBackend, chat, params: SamplingParams):
    """Send one request with nothing else in flight, so that it decodes as a batch of one."""
    assert backend.stats.in_flight == 0
    return await backend.complete(chat, params)


def generate_alone(loaded: TransformersLocalBackend, chat, max_tokens: int) -> str:
    """The greedy answer of transformers' own ``generate`` to one prompt alone, with its default cache."""
    from transformers import GenerationConfig

    tokenizer, model = loaded._tokenizer, loaded._model
    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=loaded._eos_ids, pad_token_id=loaded._pad_id)
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    tokens = model.generate(**inputs, generation_config=config)[0, inputs["input_ids"].shape[1]:].tolist()
    end = next((i for i, token in enumerate(tokens) if token in loaded._eos_ids), len(tokens))
    return tokenizer.decode(tokens[:end], skip_special_tokens=True).strip()


async def decoding(backend: TransformersLocalBackend, steps_before: int) -> None:
    """Wait until the backend has run a decode step since ``steps_before``: a row is in the running batch."""
    while backend.batches_run <= steps_before:
        await asyncio.sleep(0.005)


def test_embedded_model_dir_converts_once_then_reuses_the_cache(conversion: tuple[Path, Path, float]) -> None:
    root, folder, first_seconds = conversion
    assert folder == root / "models" / EMBEDDED_NAME
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["dtype"] == "float32"
    assert "quantization_config" not in config  # a plain folder, loadable without the GGUF quantizer
    stamp = (folder / "model.safetensors").stat().st_mtime_ns

    started = time.perf_counter()
    again = embedded_model_dir(root)
    reuse_seconds = time.perf_counter() - started

    assert again == folder
    assert reuse_seconds < 1.0 < first_seconds
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not rewritten
    assert [p.name for p in (root / "models").iterdir() if p.name.startswith(f".{EMBEDDED_NAME}.tmp")] == []


def test_the_backend_satisfies_the_protocol(backend: TransformersLocalBackend) -> None:
    assert isinstance(backend, ChatBackend)


@shared_loop
async def test_one_chat_gets_a_non_empty_answer_with_usage(backend: TransformersLocalBackend, conversion: tuple[Path, Path, float]) -> None:
    requests = backend.stats.requests
    completion = await backend.complete(PROMPTS[3], SamplingParams(max_tokens=24))
    assert completion.text.strip() == completion.text != ""
    assert completion.prompt_tokens > 10 and completion.usage == "counted"
    # a server without usage serving this folder is counted the same (esc_eval.agents.backends.usage)
    assert counts(str(conversion[1]), PROMPTS[3], completion.text)[0] == completion.prompt_tokens
    assert 0 < completion.completion_tokens <= 24
    assert completion.latency > 0
    assert completion.model == "smol"
    assert backend.stats.requests == requests + 1
    assert backend.stats.in_flight == 0
    assert backend.load_seconds is not None


@shared_loop
async def test_concurrent_requests_share_a_batch_and_match_their_answers_alone(
    backend: TransformersLocalBackend, plain: TransformersLocalBackend
) -> None:
    singles = [await alone(plain, chat, GREEDY) for chat in PROMPTS]

    before = backend.batches_run
    batched = await asyncio.gather(*(backend.complete(chat, GREEDY) for chat in PROMPTS))

    assert backend.largest_batch >= 2
    assert backend.batches_run - before < sum(c.completion_tokens for c in batched)  # rows shared decode steps
    # Left padding is masked: the same prompt gives the same greedy tokens alone or padded in a batch.
    assert [c.text for c in batched] == [c.text for c in singles]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in singles]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in singles]

    # The reference itself answers as transformers' own generate does, with its default cache.
    for chat, single in zip(PROMPTS, singles):
        assert generate_alone(plain, chat, GREEDY.max_tokens) == single.text


@shared_loop
async def test_a_conversation_reuses_its_previous_prompts_and_answers_as_without_cache(
    backend: TransformersLocalBackend, plain: TransformersLocalBackend
) -> None:
    system = {
        "role": "system",
        "content": "You listen kindly to people who write to you late at night. Reflect their feelings, ask one gentle "
        "question at a time, and keep every answer short.",
    }
    chats = [
        [system, {"role": "user", "content": text}]
        for text in ("I lost my job today.", "My cat is sick and I can't afford the vet.", "I feel invisible at school.")
    ]
    previous: list[int] = []
    for follow_up in ("What should I do first?", "Thanks. Maybe I'll try that tomorrow."):
        reused, prefilled = backend.reused_tokens, backend.prefilled_tokens
        batched = await asyncio.gather(*(backend.complete(chat, GREEDY) for chat in chats))
        references = [await alone(plain, chat, GREEDY) for chat in chats]

        assert [c.text for c in batched] == [c.text for c in references]
        assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in references]
        prompt_tokens = [c.prompt_tokens for c in batched]
        if not previous:  # a new system prompt, shared: computed with the first prompt, reused by the others
            assert backend.reused_tokens - reused >= (len(chats) - 1) * 32
        else:  # each row's previous prompt is a prefix of its new one
            assert backend.reused_tokens - reused >= sum(previous)
        assert backend.prefilled_tokens - prefilled < sum(prompt_tokens)
        previous = prompt_tokens
        for chat, completion in zip(chats, batched):
            chat += [{"role": "assistant", "content": completion.text}, {"role": "user", "content": follow_up}]
    assert plain.reused_tokens == 0


@shared_loop
async def test_without_prefix_cache_every_prompt_token_is_prefilled(plain: TransformersLocalBackend) -> None:
    prefilled = plain.prefilled_tokens
    first, again = [await plain.complete(PROMPTS[2], SamplingParams(max_tokens=2)) for _ in range(2)]
    assert plain.prefilled_tokens - prefilled == first.prompt_tokens + again.prompt_tokens
    assert plain.reused_tokens == 0
    with pytest.raises(ValueError):
        TransformersLocalBackend(prefix_cache_mb=-1)


def test_the_prefix_cache_is_bounded_and_drops_the_least_recently_used_first() -> None:
    torch = import_torch()

    def kv(tokens: int) -> list[tuple[object, object]]:  # 32 bytes a token: keys and values, 4 float32 each
        return [(torch.zeros(1, 1, tokens, 4), torch.zeros(1, 1, tokens, 4))]

    cache = PrefixCache(max_bytes=32 * 10)
    cache.add((1, 2, 3), kv(3))
    cache.add((1, 2, 3, 4, 5), kv(5))  # extends (1, 2, 3), which goes
    assert (len(cache), cache.nbytes) == (1, 32 * 5)
    assert cache.longest((1, 2, 3, 9), 10)[1] == 3
    assert cache.longest((1, 2, 3, 4, 5), 4)[1] == 4  # never more than the limit
    assert cache.longest((9,), 1) == (None, 0)

    cache.add((7, 8, 9), kv(3))
    cache.longest((1, 2), 2)  # used: (7, 8, 9) is now the least recently used
    cache.add((6, 6), kv(2))  # exactly full
    assert (len(cache), cache.nbytes) == (3, 32 * 10)
    cache.add((5,), kv(1))
    assert cache.longest((7, 8, 9), 3) == (None, 0)
    assert cache.longest((1, 2, 3, 4, 5), 5)[1] == 5
    assert cache.nbytes == 32 * 8

    cache.add(tuple(range(20, 31)), kv(11))  # larger than the whole cache: not kept, nothing dropped for it
    assert (len(cache), cache.nbytes) == (3, 32 * 8)
    cache.clear()
    assert (len(cache), cache.nbytes) == (0, 0)


def test_the_preallocated_layer_holds_what_concatenation_would_and_grows_past_its_room() -> None:
    torch = import_torch()
    layer = preallocated_layer()(3)
    parts = [torch.randn(2, 1, n, 4) for n in (2, 1, 4)]
    for index, part in enumerate(parts):
        keys, values = layer.update(part, -part)
        assert torch.equal(keys, torch.cat(parts[: index + 1], dim=-2))
        assert torch.equal(values, -keys)
    assert layer.get_seq_length() == 7


def test_common_prefix_matches_a_plain_scan() -> None:
    rng = random.Random(0)
    for _ in range(500):
        a = tuple(rng.choice((1, 2)) for _ in range(rng.randrange(0, 12)))
        b = a[: rng.randrange(0, len(a) + 1)] + tuple(rng.choice((1, 2)) for _ in range(rng.randrange(0, 12)))
        limit = rng.randrange(0, 14)
        expected = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        assert common_prefix(a, b, limit) == min(expected, limit)


@shared_loop
async def test_max_tokens_is_respected_per_request_within_a_batch(backend: TransformersLocalBackend) -> None:
    budgets = [2, 5, 9, 16]
    chat = PROMPTS[2]
    batched = await asyncio.gather(*(backend.complete(chat, SamplingParams(max_tokens=n)) for n in budgets))
    for budget, completion in zip(budgets, batched):
        assert 0 < completion.completion_tokens <= budget
    # A short budget ends that row early; it still reads exactly as the same request alone.
    short_alone = await alone(backend, chat, SamplingParams(max_tokens=5))
    assert batched[1].text == short_alone.text
    assert batched[3].text.startswith(batched[1].text)


@shared_loop
async def test_seeded_sampling_is_reproducible_alone_or_batched(backend: TransformersLocalBackend) -> None:
    sampled = SamplingParams(max_tokens=12, temperature=0.9, top_p=0.95, seed=7)
    first = await alone(backend, PROMPTS[1], sampled)
    batch = await asyncio.gather(
        backend.complete(PROMPTS[1], sampled),
        backend.complete(PROMPTS[0], GREEDY),
        backend.complete(PROMPTS[2], SamplingParams(max_tokens=12, temperature=0.9, seed=8)),
    )
    assert batch[0].text == first.text  # the seed belongs to the request, not the batch

    greedy, *draws = await asyncio.gather(
        backend.complete(PROMPTS[1], SamplingParams(max_tokens=12)),
        *(backend.complete(PROMPTS[1], SamplingParams(max_tokens=12, temperature=1.0, seed=s)) for s in (1, 2, 3)),
    )
    assert any(d.text != greedy.text for d in draws)  # a temperature really samples


@shared_loop
async def test_other_model_names_are_rejected(backend: TransformersLocalBackend) -> None:
    accepted = await backend.complete(PROMPTS[0], SamplingParams(max_tokens=4), model="smol")
    assert accepted.model == "smol"
    with pytest.raises(RequestRejected):
        await backend.complete(PROMPTS[0], SamplingParams(max_tokens=4), model="gpt-4o")
    with pytest.raises(RequestRejected):
        await backend.complete(PROMPTS[0], SamplingParams(max_tokens=0))


@shared_loop
async def test_aclose_frees_the_model_and_refuses_new_requests(conversion: tuple[Path, Path, float]) -> None:
    local = TransformersLocalBackend(conversion[1], name="closing")
    await local.complete(PROMPTS[0], SamplingParams(max_tokens=3))
    await local.aclose()
    assert local._model is None
    with pytest.raises(BackendError):
        await local.complete(PROMPTS[0], SamplingParams(max_tokens=3))


# --------------------------------------------------------------------------- continuous batching

LONG = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]
"""A prompt whose greedy answer runs to any budget given here (checked where it matters)."""


@shared_loop
async def test_requests_joining_a_running_decode_answer_as_plain_generate_alone(
    backend: TransformersLocalBackend, plain: TransformersLocalBackend
) -> None:
    budgets = [24, 5, 16, 9, 24, 12]
    chats = PROMPTS + PROMPTS[:2]
    tasks, joined_running = [], []
    for chat, budget in zip(chats, budgets):
        steps = backend.batches_run
        tasks.append(asyncio.ensure_future(backend.complete(chat, SamplingParams(max_tokens=budget))))
        await decoding(backend, steps)  # each request arrives after the decode has moved on
        joined_running.append(sum(not task.done() for task in tasks[:-1]))
    answers = await asyncio.gather(*tasks)

    assert max(joined_running) >= 2  # later requests really joined rows mid-answer
    await alone(plain, PROMPTS[0], GREEDY)  # loads the reference model
    for chat, budget, answer in zip(chats, budgets, answers):
        assert answer.text == generate_alone(plain, chat, budget)
        assert answer.completion_tokens <= budget


@shared_loop
async def test_a_seeded_sampled_request_draws_the_same_text_alone_or_joining_others(backend: TransformersLocalBackend) -> None:
    sampled = SamplingParams(max_tokens=16, temperature=0.8, top_p=0.9, seed=11)
    first = await alone(backend, PROMPTS[3], sampled)
    steps = backend.batches_run
    others = [asyncio.ensure_future(backend.complete(chat, SamplingParams(max_tokens=24, temperature=1.0, seed=n)))
              for n, chat in enumerate(PROMPTS)]
    await decoding(backend, steps)
    joined = await backend.complete(PROMPTS[3], sampled)
    await asyncio.gather(*others)
    assert joined.text == first.text


@shared_loop
async def test_a_finished_row_frees_its_slot_for_a_queued_request_at_once(conversion: tuple[Path, Path, float]) -> None:
    two = TransformersLocalBackend(conversion[1], max_batch=2, name="two")
    try:
        finished: list[str] = []

        async def send(label: str, chat, max_tokens: int):
            completion = await two.complete(chat, SamplingParams(max_tokens=max_tokens))
            finished.append(label)
            return completion

        steps = two.batches_run
        long = asyncio.ensure_future(send("long", LONG, 64))
        short = asyncio.ensure_future(send("short", PROMPTS[1], 4))
        await decoding(two, steps)
        queued = asyncio.ensure_future(send("queued", PROMPTS[2], 4))  # both rows busy: it waits for one to free
        long_answer, *_ = await asyncio.gather(long, short, queued)

        assert long_answer.completion_tokens == 64  # it really ran to its budget
        assert finished == ["short", "queued", "long"]
        assert two.largest_batch == 2
    finally:
        await two.aclose()


@shared_loop
async def test_a_cancelled_request_leaves_the_running_batch(conversion: tuple[Path, Path, float]) -> None:
    one = TransformersLocalBackend(conversion[1], max_batch=1, name="one")
    try:
        steps = one.batches_run
        long = asyncio.ensure_future(one.complete(LONG, SamplingParams(max_tokens=400)))
        await decoding(one, steps)
        long.cancel()
        # With one row, the next request runs only once the cancelled one has left the batch.
        after = await one.complete(PROMPTS[1], SamplingParams(max_tokens=4))
        assert after.text
        assert one.batches_run - steps < 100
        assert one.stats.in_flight == 0
    finally:
        await one.aclose()


@shared_loop
async def test_aclose_fails_queued_requests_and_lets_running_rows_finish(conversion: tuple[Path, Path, float]) -> None:
    one = TransformersLocalBackend(conversion[1], max_batch=1, name="closing-busy")
    steps = one.batches_run
    running = asyncio.ensure_future(one.complete(LONG, SamplingParams(max_tokens=20)))
    await decoding(one, steps)
    queued = asyncio.ensure_future(one.complete(PROMPTS[1], SamplingParams(max_tokens=4)))
    await asyncio.sleep(0)  # queued behind the running row
    await one.aclose()
    assert (await running).completion_tokens == 20
    with pytest.raises(BackendError, match="closed"):
        await queued
    assert one._model is None


class _UnsplicedBackend(TransformersLocalBackend):
    """The backend as it runs a model whose cache it cannot splice (sliding windows, recurrent layers)."""

    def _load(self) -> None:
        super()._load()
        self._plain_cache, self._prefixes = False, None


@shared_loop
async def test_a_model_whose_cache_cannot_be_spliced_decodes_one_row_at_a_time(
    conversion: tuple[Path, Path, float], plain: TransformersLocalBackend
) -> None:
    solo = _UnsplicedBackend(conversion[1], max_batch=4, name="solo")
    try:
        budgets = [12, 5, 9]
        answers = await asyncio.gather(*(solo.complete(chat, SamplingParams(max_tokens=n)) for chat, n in zip(PROMPTS, budgets)))
        assert solo.largest_batch == 1
        assert solo.reused_tokens == 0
        await alone(plain, PROMPTS[0], GREEDY)  # loads the reference model
        for chat, budget, answer in zip(PROMPTS, budgets, answers):
            assert answer.text == generate_alone(plain, chat, budget)
    finally:
        await solo.aclose()


@shared_loop
async def test_a_queued_request_is_prefilled_while_the_running_row_decodes(conversion: tuple[Path, Path, float]) -> None:
    one = TransformersLocalBackend(conversion[1], max_batch=1, name="ahead", prefix_cache_mb=0)
    try:
        steps = one.batches_run
        running = asyncio.ensure_future(one.complete(LONG, SamplingParams(max_tokens=64)))
        await decoding(one, steps)
        prefilled = one.prefilled_tokens
        queued = asyncio.ensure_future(one.complete(PROMPTS[2], SamplingParams(max_tokens=4)))

        async def prefilled_ahead() -> None:
            while one.prefilled_tokens == prefilled:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(prefilled_ahead(), timeout=60)
        assert not running.done()  # the only slot is still decoding: the newcomer waits prefilled, ready to join
        long_answer, short_answer = await asyncio.gather(running, queued)
        assert long_answer.completion_tokens == 64
        assert short_answer.text
        assert one.largest_batch == 1
    finally:
        await one.aclose()


@shared_loop
async def test_linear_layers_run_packed_unless_turned_off(conversion: tuple[Path, Path, float], backend: TransformersLocalBackend) -> None:
    torch = import_torch()
    await backend.complete(PROMPTS[0], SamplingParams(max_tokens=2))  # loaded
    assert backend.packed_linears > 0
    assert not any(isinstance(module, torch.nn.Linear) for module in backend._model.modules())

    vanilla = TransformersLocalBackend(conversion[1], max_batch=2, name="vanilla", packed_weights=False)
    try:
        assert (await vanilla.complete(PROMPTS[1], GREEDY)).text
        assert vanilla.packed_linears == 0
        assert sum(isinstance(module, torch.nn.Linear) for module in vanilla._model.modules()) == backend.packed_linears
    finally:
        await vanilla.aclose()


@shared_loop
async def test_a_failed_kernel_self_test_serves_the_same_answers_on_torch_s_own_layers(
        conversion: tuple[Path, Path, float], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A torch whose private oneDNN product is wrong: the backend warns once and answers as with packing off."""
    torch = import_torch()
    product = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *args: product(*args) + 1e-2)
    kernel_fault.cache_clear()
    fallback = TransformersLocalBackend(conversion[1], max_batch=4, name="fallback")
    vanilla = TransformersLocalBackend(conversion[1], max_batch=4, name="vanilla", packed_weights=False)
    try:
        with caplog.at_level(logging.WARNING):
            answers = [await fallback.complete(chat, GREEDY) for chat in PROMPTS[:2]]  # alone: MKL is not batch-invariant
        assert fallback.packed_linears == 0 and any(isinstance(m, torch.nn.Linear) for m in fallback._model.modules())
        warned = [r for r in caplog.records if "packed linear layers are off" in r.getMessage()]
        assert len(warned) == 1 and "differs from F.linear" in warned[0].getMessage()
        for chat, answer in zip(PROMPTS[:2], answers):
            assert answer.text and answer.text == (await vanilla.complete(chat, GREEDY)).text
    finally:
        kernel_fault.cache_clear()
        await fallback.aclose()
        await vanilla.aclose()


class _FailingPrefill(TransformersLocalBackend):
    """A backend whose prefill breaks on one prompt (as a too-long prompt or an out-of-memory error would)."""

    def _prefill(self, request):  # type: ignore[no-untyped-def]
        if request.messages == PROMPTS[1]:
            raise RuntimeError("prefill broke")
        return super()._prefill(request)


@shared_loop
async def test_a_failed_prefill_fails_its_request_only_and_the_backend_keeps_serving(conversion: tuple[Path, Path, float]) -> None:
    failing = _FailingPrefill(conversion[1], max_batch=4, name="failing")
    try:
        results = await asyncio.gather(*(failing.complete(chat, SamplingParams(max_tokens=6)) for chat in PROMPTS), return_exceptions=True)
        assert isinstance(results[1], BackendError) and "RuntimeError: prefill broke" in str(results[1])
        assert all(not isinstance(result, BaseException) and result.text for n, result in enumerate(results) if n != 1)
        assert (await failing.complete(PROMPTS[0], SamplingParams(max_tokens=4))).text  # both threads still serve
        assert failing.stats.in_flight == 0
    finally:
        await failing.aclose()
