#!/usr/bin/env python3
"""PyTorch fp32 reference logits on the peers benchmark's text (bench/peers/text.txt).

    python bench/peers_reference.py HF_DIR TEXT OUT_DIR [--max-tokens 512]

Tokenizes TEXT with HF_DIR's tokenizer.json (no special tokens added), runs the model once over the
whole sequence in fp32 and writes OUT_DIR/ids.json and OUT_DIR/reference.npy (float32 [T, vocab]).
Prints one JSON line: token count, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("text")
    ap.add_argument("out_dir")
    ap.add_argument("--max-tokens", type=int, default=640)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = Tokenizer.from_file(os.path.join(a.hf_dir, "tokenizer.json"))
    with open(a.text, encoding="utf-8") as f:
        ids = tok.encode(f.read(), add_special_tokens=False).ids[: a.max_tokens]
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().numpy()
    os.makedirs(a.out_dir, exist_ok=True)
    np.save(os.path.join(a.out_dir, "reference.npy"), logits)
    with open(os.path.join(a.out_dir, "ids.json"), "w") as f:
        json.dump(ids, f)
    print(json.dumps({"tokens": len(ids), "seconds": time.perf_counter() - t, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
