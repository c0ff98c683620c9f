#!/usr/bin/env python3
"""Agreement of an ONNX decoder with the PyTorch fp32 reference on real text (peers benchmark).

    python bench/peers_score.py MODEL.onnx --ids ids.json --reference reference.npy [--threads 2]

One forward pass over the whole text from an empty KV cache (inputs found by name: input_ids,
attention_mask, position_ids, past_key_values.N.key|value), then per position: top-1 agreement with
the reference's argmax, KL(reference || model) in nats (mean and max), and how often the model's
argmax is the text's actual next token. Prints one JSON line; an error is a JSON line with "error".
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np
import onnxruntime as ort


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-heads", type=int, help="when the KV inputs leave it symbolic")
    ap.add_argument("--head-dim", type=int, help="when the KV inputs leave it symbolic (onnxruntime-genai's builder)")
    a = ap.parse_args()
    with open(a.ids) as f:
        ids = [int(i) for i in json.load(f)]
    ref = np.load(a.reference)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        feeds: dict[str, np.ndarray] = {}
        n = len(ids)
        for i in sess.get_inputs():
            if i.name == "input_ids":
                feeds[i.name] = np.array([ids], dtype=np.int64)
            elif i.name == "attention_mask":
                feeds[i.name] = np.ones((1, n), dtype=np.int64)
            elif i.name == "position_ids":
                feeds[i.name] = np.arange(n, dtype=np.int64)[None, :]
            elif re.match(r"past_key_values\.\d+\.(key|value)$", i.name):
                heads = i.shape[1] if isinstance(i.shape[1], int) else a.kv_heads
                dim = i.shape[3] if isinstance(i.shape[3], int) else a.head_dim
                dtype = np.float16 if "float16" in i.type else np.float32
                feeds[i.name] = np.zeros((1, heads, 0, dim), dtype=dtype)
            else:
                raise ValueError(f"unknown input {i.name}")
        logits = sess.run(["logits"], feeds)[0][0].astype(np.float32)
        if logits.shape != ref.shape:
            raise ValueError(f"logits shape {logits.shape} != reference {ref.shape}")
        lp, lq = log_softmax(ref), log_softmax(logits)
        kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
        top = logits.argmax(-1)
        print(json.dumps({
            "tokens": n,
            "top1": float((top == ref.argmax(-1)).mean()),
            "klMean": float(kl.mean()),
            "klMax": float(kl.max()),
            "nextTokenAccuracy": float((top[:-1] == np.array(ids[1:])).mean()),
            "referenceNextTokenAccuracy": float((ref.argmax(-1)[:-1] == np.array(ids[1:])).mean()),
            "onnxruntime": ort.__version__,
        }))
    except Exception as e:  # noqa: BLE001 - the harness records the failure and goes on
        print(json.dumps({"error": f"{type(e).__name__}: {str(e)[:300]}"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
