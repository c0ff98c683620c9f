#!/usr/bin/env python3
"""Prefill + greedy decode with Python onnxruntime: the loop `sphana verify` times, for comparison.

    python bench/ort_decode.py MODEL.onnx --threads N --steps N --ids '[128000, 791, ...]'
        [--past-key past_key_values.%d.key --past-value past_key_values.%d.value
         --present-key present.%d.key --present-value present.%d.value]

Session options match sphana's (CPU, intra-op N threads, inter-op 1, all graph optimisations).
The prefill runs from an empty cache (median of 3), then STEPS decode steps feed the presents
back. KV layers, heads and head dim are read from the model's inputs. Prints one JSON line:
prefill/decode seconds and tokens/s, and the peak RSS (VmHWM) of this process.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time

import numpy as np
import onnxruntime as ort


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--ids", required=True, help="prompt token ids, a JSON list")
    ap.add_argument("--past-key", default="past_key_values.%d.key")
    ap.add_argument("--past-value", default="past_key_values.%d.value")
    ap.add_argument("--present-key", default="present.%d.key")
    ap.add_argument("--present-value", default="present.%d.value")
    ap.add_argument("--kv-heads", type=int, help="when the model's KV inputs leave it symbolic")
    ap.add_argument("--head-dim", type=int, help="when the model's KV inputs leave it symbolic (onnxruntime-genai's builder)")
    a = ap.parse_args()
    ids = [int(i) for i in json.loads(a.ids)]

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    t0 = time.perf_counter()
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    load_seconds = time.perf_counter() - t0

    inputs = {i.name: i for i in sess.get_inputs()}
    key_re = re.compile("^" + re.escape(a.past_key).replace("%d", r"(\d+)") + "$")
    layers = sorted(int(m.group(1)) for n in inputs if (m := key_re.match(n)))
    first = inputs[a.past_key % layers[0]]
    kv_heads = first.shape[1] if isinstance(first.shape[1], int) else a.kv_heads
    head_dim = first.shape[3] if isinstance(first.shape[3], int) else a.head_dim
    if not isinstance(kv_heads, int) or not isinstance(head_dim, int):
        raise SystemExit(f"{first.name} has symbolic dims {first.shape}: pass --kv-heads and --head-dim")
    kv_type = np.float16 if "float16" in first.type else np.float32
    pairs = [(a.past_key % i, a.present_key % i) for i in layers] + [(a.past_value % i, a.present_value % i) for i in layers]

    def feeds(tokens: list[int], past: dict[str, np.ndarray] | None, past_len: int) -> dict[str, np.ndarray]:
        f: dict[str, np.ndarray] = {"input_ids": np.array([tokens], dtype=np.int64)}
        if "attention_mask" in inputs:
            f["attention_mask"] = np.ones((1, past_len + len(tokens)), dtype=np.int64)
        if "position_ids" in inputs:
            f["position_ids"] = np.arange(past_len, past_len + len(tokens), dtype=np.int64)[None, :]
        for past_name, present_name in pairs:
            f[past_name] = past[present_name] if past else np.zeros((1, kv_heads, 0, head_dim), dtype=kv_type)
        return f

    out_names = [o.name for o in sess.get_outputs()]

    def run(tokens: list[int], past, past_len: int):
        outs = sess.run(out_names, feeds(tokens, past, past_len))
        return dict(zip(out_names, outs))

    prefills = []
    for _ in range(3):
        t = time.perf_counter()
        out = run(ids, None, 0)
        prefills.append(time.perf_counter() - t)
    prefill = sorted(prefills)[1]
    past_len = len(ids)
    t = time.perf_counter()
    for _ in range(a.steps):
        nxt = int(np.argmax(out["logits"][0, -1]))
        out = run([nxt], out, past_len)
        past_len += 1
    decode = time.perf_counter() - t
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "threads": a.threads,
        "loadSeconds": round(load_seconds, 3),
        "prefillTokens": len(ids),
        "prefillSeconds": prefill,
        "prefillTokensPerSecond": len(ids) / prefill,
        "decodeTokens": a.steps,
        "decodeSeconds": decode,
        "decodeTokensPerSecond": a.steps / decode if decode > 0 else None,
        "peakRssBytes": peak_rss_bytes(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
