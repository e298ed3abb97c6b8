"""Make small random LoRA adapters for a model folder (run inside the vLLM venv, which has peft).

Usage: python make_adapters.py BASE_DIR OUT_DIR NAME [NAME ...]
Writes OUT_DIR/NAME (adapter_config.json + adapter_model.safetensors) for each name:
r=4 on q_proj and v_proj, both A and B random from a fixed seed per adapter (B is not
zero, so the adapter really changes the model's outputs).
"""

from __future__ import annotations

import sys
from pathlib import Path


def make(base: str, out: Path, names: list[str]) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for seed, name in enumerate(names, 1):
        torch.manual_seed(1000 + seed)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                            init_lora_weights=False, task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for param_name, param in peft_model.named_parameters():
                if "lora_A" in param_name or "lora_B" in param_name:
                    param.normal_(0.0, 0.2)
        peft_model.save_pretrained(out / name)
        print(out / name)


if __name__ == "__main__":
    make(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
