"""Packed oneDNN linear layers: the same products as torch's, and bit-identical for a row in any batch and thread count."""

from __future__ import annotations

import logging
import threading
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from esc_eval.agents.backends.packed_linear import (  # noqa: E402
    PACK_HINT,
    kernel_fault,
    pack_if_sound,
    pack_linears,
    packable,
    packed_group,
    packed_linear,
    packed_part,
)

if not torch.backends.mkldnn.is_available():  # pragma: no cover - every torch wheel for x86 has it
    pytest.skip("this torch build has no oneDNN", allow_module_level=True)


def in_thread(threads: int, layer, inputs):  # type: ignore[no-untyped-def]
    """``layer(inputs)`` in a fresh thread with ``threads`` torch threads (a per-thread setting)."""
    result = []

    def run() -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            result.append(layer(inputs))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def tiny_llama(seed: int = 0):  # type: ignore[no-untyped-def]
    """A 2-layer Llama with random weights (no download), output layer tied to the embeddings like SmolLM2's."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(config).eval()


def test_a_row_gets_the_same_bits_alone_in_any_batch_and_with_any_thread_count() -> None:
    torch.manual_seed(1)
    for out_features, in_features in ((160, 64), (64, 160), (4099, 64)):
        linear = torch.nn.Linear(in_features, out_features, bias=out_features == 160)
        packed = packed_linear()(linear)
        inputs = torch.randn(40, in_features)
        whole = in_thread(2, packed, inputs)
        for rows in (1, 2, 3, 7, 8, 9, 16, 17, 33):
            assert torch.equal(in_thread(2, packed, inputs[:rows]), whole[:rows]), (out_features, rows)
            assert torch.equal(in_thread(1, packed, inputs[:rows]), whole[:rows]), (out_features, rows)
        with torch.inference_mode():
            torch.testing.assert_close(whole, linear(inputs), rtol=1e-5, atol=1e-5)  # the same product, up to rounding
            assert packed(inputs[None, :5]).shape == (1, 5, out_features)  # a [batch, tokens, features] input


def test_pack_linears_swaps_every_linear_layer_and_keeps_the_model_s_logits() -> None:
    model = tiny_llama()
    ids = torch.randint(0, 300, (3, 12))
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    embeddings = model.get_input_embeddings().weight
    linears = sum(isinstance(module, torch.nn.Linear) for module in model.modules())

    assert packable(model)
    assert pack_linears(model) == linears == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the output layer
    assert not any(isinstance(module, torch.nn.Linear) for module in model.modules())
    for layer in model.model.layers:  # q/k/v and gate/up share one product each
        assert {type(layer.self_attn.q_proj), type(layer.mlp.up_proj)} == {packed_part()}
        assert layer.self_attn.q_proj.group is layer.self_attn.v_proj.group is not layer.mlp.gate_proj.group
        assert type(layer.self_attn.o_proj) is type(layer.mlp.down_proj) is packed_linear()
    assert model.get_input_embeddings().weight is embeddings  # the tied embeddings still serve the input
    with torch.inference_mode():
        after = model(input_ids=ids).logits
        torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
        # A row's logits are the same bits alone or among others, as in a decode step of 9 rows
        # (torch's own kernels gave different bits here, for every row, on the 2-core EPYC VM).
        step = torch.randint(0, 300, (9, 1))
        logits = model(input_ids=step).logits
        for row in range(9):
            assert torch.equal(model(input_ids=step[row:row + 1]).logits[0], logits[row])


def test_fused_siblings_give_the_same_bits_as_their_own_packed_products() -> None:
    fused, separate = tiny_llama(), tiny_llama()
    pack_linears(fused)
    pack_linears(separate, fuse=False)
    assert not any(isinstance(module, packed_part()) for module in separate.modules())
    with torch.inference_mode():
        for ids in (torch.randint(0, 300, (3, 12)), torch.randint(0, 300, (9, 1))):  # prefill rows, a decode step
            assert torch.equal(fused(input_ids=ids).logits, separate(input_ids=ids).logits)


def test_a_part_reuses_the_group_product_only_for_its_siblings_consecutive_calls_on_the_same_input() -> None:
    torch.manual_seed(2)
    linears = [torch.nn.Linear(16, size) for size in (16, 8, 8)]
    group = packed_group()(linears)
    q, k, v = (packed_part()(group, index) for index in range(3))
    inputs, other = torch.randn(4, 16), torch.randn(4, 16)

    def expected(index: int, tensor):  # type: ignore[no-untyped-def]
        return packed_linear()(linears[index])(tensor)

    with torch.inference_mode():
        assert torch.equal(q(inputs), expected(0, inputs))
        assert torch.equal(k(other), expected(1, other))  # another input: computed afresh, not q's product
        assert torch.equal(v(other), expected(2, other))
        q(inputs), k(inputs), v(inputs)
        inputs.add_(1.0)  # changed in place after a whole round of the siblings' calls
        assert torch.equal(q(inputs), expected(0, inputs))
        assert torch.equal(q(inputs), expected(0, inputs))  # a part asked twice: computed again, same result
        assert q(inputs).is_contiguous() and k(inputs).shape == (4, 8)  # laid out like a linear layer's output


def test_each_thread_keeps_its_own_group_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prefill and decode threads run the same layers: neither gets the other's product, nor evicts its own."""
    torch.manual_seed(3)
    linears = [torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)]
    group = packed_group()(linears)
    gate, up = packed_part()(group, 0), packed_part()(group, 1)
    mine, theirs = torch.randn(2, 16), torch.randn(2, 16)
    with torch.inference_mode():
        expected = {"mine": packed_linear()(linears[1])(mine), "theirs": packed_linear()(linears[1])(theirs)}
    products = []
    product = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *args: products.append(1) or product(*args))
    started, other_done = threading.Event(), threading.Event()
    seen = {}

    def interleaved() -> None:  # gate on one input, then (after the other thread's gate) up on the same
        with torch.inference_mode():
            gate(mine)
            started.set()
            other_done.wait(10)
            seen["mine"] = up(mine)

    def other() -> None:
        started.wait(10)
        with torch.inference_mode():
            gate(theirs)
            other_done.set()
            seen["theirs"] = up(theirs)

    threads = [threading.Thread(target=interleaved), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert torch.equal(seen["mine"], expected["mine"]) and torch.equal(seen["theirs"], expected["theirs"])
    assert len(products) == 2  # one product per thread's round of calls


def test_only_float32_cpu_models_are_packed() -> None:
    assert PACK_HINT > 1  # a hint of 1 computes a single row differently (module docstring)
    assert not packable(tiny_llama().to(torch.bfloat16))


@pytest.fixture
def fresh_self_test():  # type: ignore[no-untyped-def]
    """The self-test runs once per process: forget its result before and after a test that breaks the kernels."""
    kernel_fault.cache_clear()
    yield
    kernel_fault.cache_clear()


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "packed linear layers are off" in r.getMessage()]


def assert_falls_back_to_plain_linears(caplog: pytest.LogCaptureFixture, reason: str) -> None:
    model = tiny_llama()
    ids = torch.randint(0, 300, (2, 9))
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    with caplog.at_level(logging.WARNING):
        assert pack_if_sound(model) == 0
        assert pack_if_sound(tiny_llama(1)) == 0  # a second model: no second warning
    assert not any(isinstance(module, packed_linear()) for module in model.modules())
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, before)  # torch's own layers, untouched
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1 and reason in warnings[0], warnings


def test_the_self_test_passes_here_and_packs(fresh_self_test, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    model = tiny_llama()
    with caplog.at_level(logging.WARNING):
        assert kernel_fault() is None
        assert pack_if_sound(model) == 2 * 7 + 1
    assert not fallback_warnings(caplog)


def test_a_missing_private_op_falls_back_with_one_warning(fresh_self_test, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                          caplog: pytest.LogCaptureFixture) -> None:
    only_product = types.SimpleNamespace(_linear_pointwise=torch.ops.mkldnn._linear_pointwise)
    monkeypatch.setattr(torch.ops, "mkldnn", only_product)
    assert_falls_back_to_plain_linears(caplog, "no torch.ops.mkldnn._reorder_linear_weight")


def test_a_product_that_disagrees_with_f_linear_falls_back(fresh_self_test, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                           caplog: pytest.LogCaptureFixture) -> None:
    product = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *args: product(*args) * 1.01)
    assert_falls_back_to_plain_linears(caplog, "differs from F.linear")


def test_a_product_that_raises_falls_back(fresh_self_test, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                          caplog: pytest.LogCaptureFixture) -> None:
    def changed_schema(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("_linear_pointwise() expected at most 5 argument(s)")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", changed_schema)
    assert_falls_back_to_plain_linears(caplog, "RuntimeError: _linear_pointwise() expected")


def test_esc_eval_packed_0_turns_packing_off(fresh_self_test, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ESC_EVAL_PACKED", "0")
    model = tiny_llama()
    with caplog.at_level(logging.WARNING):
        assert pack_if_sound(model) == 0
    assert any(isinstance(module, torch.nn.Linear) for module in model.modules()) and not fallback_warnings(caplog)
    monkeypatch.setenv("ESC_EVAL_PACKED", "1")
    assert pack_if_sound(model) == 2 * 7 + 1
