"""LoRA adapters on the transformers backend's one model, per batch row: peft's answers, one loaded copy for every role."""

from __future__ import annotations

import asyncio
import importlib.util
from importlib import resources
from pathlib import Path

import pytest

from esc_eval.agents.backends import BACKENDS, Shared, role_adapter
from esc_eval.agents.backends.transformers_local import TransformersLocalBackend, TransformersRole
from esc_eval.runs.config_sections import EndpointConfig

SEEKER_ADAPTER = Path(str(resources.files("esc_eval.runs") / "data" / "seeker_adapter"))
needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None or importlib.util.find_spec("torch") is None,
                                reason="needs the 'local' extra (torch, transformers, peft)")


def adapter(tmp_path: Path, name: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return str(folder)


def test_the_adapter_named_like_the_role_is_its_default(tmp_path: Path) -> None:
    endpoint = EndpointConfig(backend="transformers", lora={"seeker": adapter(tmp_path, "s"), "other": adapter(tmp_path, "o")})
    assert role_adapter(endpoint, "seeker") == "seeker"
    assert role_adapter(endpoint, "seeker:esc-role") == "seeker", "one of several [[seekers]] uses its own seeker adapter"
    assert role_adapter(endpoint, "judge") is None, "a judge names its adapters per dimension; no default"
    shared = Shared()
    backend = BACKENDS.get("transformers")(endpoint, name="seeker", shared=shared)
    assert isinstance(backend, TransformersRole) and backend.default_model == "seeker"
    judge = BACKENDS.get("transformers")(endpoint, name="judge", shared=shared)
    assert isinstance(judge, TransformersRole) and judge.default_model is None


def test_every_role_on_one_model_shares_one_backend_and_each_folder_is_one_adapter(tmp_path: Path) -> None:
    seeker_folder = adapter(tmp_path, "s")
    shared = Shared()
    make = BACKENDS.get("transformers")
    seeker = make(EndpointConfig(backend="transformers", lora={"seeker": seeker_folder}), name="seeker", shared=shared)
    supporter = make(EndpointConfig(backend="transformers"), name="supporter", shared=shared)
    judge = make(EndpointConfig(backend="transformers", model="embedded", lora={"mine": seeker_folder, "j": adapter(tmp_path, "j")}),
                 name="judge", shared=shared)
    assert isinstance(seeker, TransformersRole) and isinstance(supporter, TransformersRole) and isinstance(judge, TransformersRole)
    assert seeker.backend is supporter.backend is judge.backend, "one loaded model for every role on the embedded model"
    assert supporter.adapters == {} and supporter.default_model is None
    assert judge.adapters["mine"] == seeker.adapters["seeker"] != judge.adapters["j"]  # the same folder is loaded once


def test_a_default_adapter_must_be_one_of_the_adapters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="default adapter 'seeker' is not one of other"):
        TransformersLocalBackend(None, adapters={"other": adapter(tmp_path, "o")}, default_model="seeker")
    with pytest.raises(ValueError, match="adapter 'x': .* has no adapter_config.json"):
        TransformersLocalBackend(None).role("seeker", adapters={"x": tmp_path})


def tiny_llama(seed: int = 0):  # type: ignore[no-untyped-def]
    import transformers

    from esc_eval.agents.backends.torch_import import import_torch

    import_torch().manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(config).eval()


def random_adapter(folder: Path, seed: int, targets: list[str], layers: list[int] | None = None) -> Path:
    """A LoRA adapter for ``tiny_llama`` with random (non-zero) A and B, saved by peft."""
    import peft
    import torch

    model = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, layers_to_transform=layers))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(folder)
    return folder


def packed_peft(reference):  # type: ignore[no-untyped-def]
    """A peft model on the kernels the backend uses: every linear layer packed (``lora_A``/``lora_B`` too).

    peft's LoRA layer reads ``lora_A.weight.dtype`` to cast its input; a packed layer keeps no
    ``weight``, so each gets an empty tensor of the model's dtype for that (a no-op cast).
    """
    import peft
    import torch

    from esc_eval.agents.backends.packed_linear import pack_linears

    pack_linears(reference)
    for module in reference.modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            for packed in module.lora_A.values():
                packed.weight = torch.empty(0, dtype=torch.float32)
    return reference


@needs_peft
def test_each_row_gets_its_own_adapter_s_logits_as_peft_computes_them(tmp_path: Path) -> None:
    import peft
    import torch

    from esc_eval.agents.backends.lora_local import adapted_linear, attach_adapters, row_adapters
    from esc_eval.agents.backends.packed_linear import pack_linears

    first = random_adapter(tmp_path / "first", 1, ["q_proj", "v_proj", "o_proj"])
    second = random_adapter(tmp_path / "second", 2, ["k_proj", "down_proj"], layers=[1])
    ours = attach_adapters(tiny_llama(), [first, second])
    assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in ours.modules())
    assert sum(isinstance(m, adapted_linear()) for m in ours.modules()) == 2 * 3 + 2
    pack_linears(ours)  # the adapted q/k/v bases are fused like any others
    assert ours.model.layers[0].self_attn.q_proj.base.group is ours.model.layers[0].self_attn.k_proj.group

    references = []
    for folder in (first, second):
        references.append(packed_peft(peft.PeftModel.from_pretrained(tiny_llama(), str(folder)).eval()))
    ids = torch.randint(0, 300, (5, 7))
    rows = [0, None, 1, 0, None]
    with torch.inference_mode():
        with row_adapters(rows):
            mixed = ours(input_ids=ids).logits
        base = ours(input_ids=ids).logits  # no rows named: the base model
        with references[0].disable_adapter():
            expected_base = references[0](input_ids=ids).logits
        assert torch.equal(base, expected_base)
        for row, index in enumerate(rows):
            expected = expected_base[row] if index is None else references[index](input_ids=ids[row:row + 1]).logits[0]
            assert torch.equal(mixed[row], expected), (row, index)
        assert not torch.equal(mixed[0], base[0]) and not torch.equal(mixed[2], base[2])
        with row_adapters([0]), pytest.raises(RuntimeError, match="names 1 rows, the batch has 5"):
            ours(input_ids=ids)


@needs_peft
def test_an_adapter_of_an_embedding_is_refused_by_name(tmp_path: Path) -> None:
    import peft

    from esc_eval.agents.backends.lora_local import attach_adapters

    folder = tmp_path / "embed"
    peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=2, target_modules=["embed_tokens"])).save_pretrained(folder)
    with pytest.raises(ValueError, match="embed_tokens is a Embedding; the transformers backend adapts linear layers only"):
        attach_adapters(tiny_llama(), [folder])


CHATS = [
    [{"role": "system", "content": "You are Mia, 34, a nurse who cannot sleep since her night shifts began."},
     {"role": "user", "content": "Hello, I'm here to listen. What would you like to talk about today?"}],
    [{"role": "system", "content": "You are Tom, 19, a student who failed two exams and fears telling his parents."},
     {"role": "user", "content": "Hi there. How are you feeling right now?"}],
    [{"role": "user", "content": "My boss yells at me every day and I dread Mondays."}],
]


def generate(model, tokenizer, chat, max_tokens: int) -> str:  # type: ignore[no-untyped-def]
    """The answer ``model.generate`` gives greedily, cut and decoded as the backend does."""
    import torch

    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    eos = model.generation_config.eos_token_id
    stops = set([eos] if isinstance(eos, int) else eos) | {tokenizer.eos_token_id}
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    new = output[0, inputs["input_ids"].shape[1]:].tolist()
    end = next((i for i, token in enumerate(new) if token in stops), len(new))
    return tokenizer.decode(new[:end], skip_special_tokens=True).strip()


@needs_peft
@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_the_seeker_adapter_and_the_base_model_batched_together_answer_as_peft_generate() -> None:
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from esc_eval.agents.backends.lora_local import resolve_base
    from esc_eval.agents.messages import SamplingParams

    folder = resolve_base(None)
    shared = Shared()
    make = BACKENDS.get("transformers")
    seeker = make(EndpointConfig(backend="transformers", lora={"seeker": str(SEEKER_ADAPTER)}), name="seeker", shared=shared)
    supporter = make(EndpointConfig(backend="transformers"), name="supporter", shared=shared)
    assert isinstance(seeker, TransformersRole) and isinstance(supporter, TransformersRole) and seeker.backend is supporter.backend
    vanilla = TransformersLocalBackend(folder, max_batch=1, prefix_cache_mb=0, packed_weights=False, adapters={"seeker": SEEKER_ADAPTER},
                                       default_model="seeker", name="vanilla")
    params = SamplingParams(max_tokens=24)
    try:
        answers = await asyncio.gather(*(seeker.complete(chat, params) for chat in CHATS), *(supporter.complete(chat, params) for chat in CHATS))
        local = seeker.backend
        assert local.largest_batch > len(CHATS), "rows with and without the adapter decoded in one batch"
        assert local.packed_linears > 0 and seeker.stats.requests == supporter.stats.requests == len(CHATS)
        vanilla_answer = (await vanilla.complete(CHATS[0], params)).text
    finally:
        await shared.aclose()
        await vanilla.aclose()

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    reference = packed_peft(peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder, local_files_only=True),
                                                           str(SEEKER_ADAPTER)).eval())
    adapted = [generate(reference, tokenizer, chat, params.max_tokens) for chat in CHATS]
    with reference.disable_adapter():
        base = [generate(reference, tokenizer, chat, params.max_tokens) for chat in CHATS]
    assert [answer.text for answer in answers] == adapted + base
    assert adapted != base, "the adapter changes the answers"
    plain = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder, local_files_only=True), str(SEEKER_ADAPTER)).eval()
    assert vanilla_answer == generate(plain, tokenizer, CHATS[0], params.max_tokens), "unpacked: peft's own layers and kernels"


@needs_peft
def test_a_bfloat16_model_gets_bfloat16_adapters(tmp_path: Path) -> None:
    import torch

    from esc_eval.agents.backends.lora_local import attach_adapters, row_adapters

    model = attach_adapters(tiny_llama().to(torch.bfloat16), [random_adapter(tmp_path / "a", 1, ["q_proj"])])
    with torch.inference_mode(), row_adapters([0, None]):
        logits = model(input_ids=torch.randint(0, 300, (2, 5))).logits
    assert logits.dtype == torch.bfloat16 and model.model.layers[0].self_attn.q_proj.lora_A["0"].weight.dtype == torch.bfloat16
