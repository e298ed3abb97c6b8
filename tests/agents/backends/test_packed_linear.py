"""Packed oneDNN linear layers: the same products as torch's, and bit-identical for a row in any batch and thread count."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agents.backends.packed_linear import PACK_HINT, pack_linears, packable, packed_linear  # noqa: E402

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


def test_only_float32_cpu_models_are_packed() -> None:
    assert PACK_HINT > 1  # a hint of 1 computes a single row differently (module docstring)
    assert not packable(tiny_llama().to(torch.bfloat16))
