"""A Hugging Face folder whose weights are transformers' own random initialisation (not sphana's synthetic
weights): `python make_llama_init.py CONFIG_JSON GENERATION_JSON OUT_DIR`. The model class comes from the config's
`architectures[0]` through transformers' auto classes; weights are drawn by the class's own `_init_weights`
(normal(0, initializer_range) for linear and embedding, ones for norms) under seed 0, then saved in the config's
dtype like the real checkpoint. Writes into OUT_DIR.partial and renames it when complete."""
import json
import os
import shutil
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig


def main() -> None:
    config_path, generation_path, out = sys.argv[1:4]
    raw = json.load(open(config_path))
    t = time.monotonic()
    config = AutoConfig.for_model(raw["model_type"], **{k: v for k, v in raw.items() if k != "model_type"})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    dtype = getattr(torch, str(raw.get("torch_dtype") or raw.get("dtype") or "float32"))
    model = model.to(dtype)
    partial = out + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    GenerationConfig(**json.load(open(generation_path))).save_pretrained(partial)
    params = sum(p.numel() for p in model.parameters())
    os.replace(partial, out) if not os.path.exists(out) else None
    print(json.dumps({"parameters": params, "dtype": str(dtype), "seconds": round(time.monotonic() - t, 1),
                      "transformers": transformers.__version__, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
