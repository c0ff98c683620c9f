#!/usr/bin/env python3
"""Quality and speed of quantized candidates against their fp32 model, for bench/int8.ts.

    python bench/quant_quality.py --ref FP32.onnx --tokenizer tokenizer.json --corpus corpus.json
        [--threads 2] [--reps 3] [--steps 32] [--no-speed] CANDIDATE.onnx ...

Quality: every corpus segment (a JSON list of strings) is tokenized with the artifact's own
tokenizer and run teacher-forced, in one prefill, through fp32 and the candidate; per position,
top-1 agreement, KL(fp32 || candidate) in nats, and whether the candidate's top-1 is within
fp32's top-3. Speed: greedy decode tokens/s (16-token prefill, then --steps single-token steps
feeding the KV cache back), fp32 and candidate alternated --reps times, 2 threads, as
`sphana verify` configures onnxruntime. One JSON line per candidate on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def session(path: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def feeds(s: ort.InferenceSession, ids: list[int], past: list[np.ndarray] | None = None) -> dict:
    ins = {i.name: i for i in s.get_inputs()}
    n = len(ids)
    pl = 0 if past is None else past[0].shape[2]
    f = {"input_ids": np.array([ids], np.int64)}
    if "attention_mask" in ins:
        f["attention_mask"] = np.ones((1, pl + n), np.int64)
    if "position_ids" in ins:
        f["position_ids"] = np.arange(pl, pl + n, dtype=np.int64)[None]
    kv = [k for k in ins if k.startswith("past_key_values")]
    for j, k in enumerate(kv):
        if past is None:
            shp = ins[k].shape
            f[k] = np.zeros((1, shp[1], 0, shp[3]), np.float32)
        else:
            f[k] = past[j]
    return f


def corpus_logits(path: str, segments: list[list[int]], threads: int) -> np.ndarray:
    s = session(path, threads)
    return np.concatenate([s.run(["logits"], feeds(s, seg))[0][0] for seg in segments])


def decode_tps(path: str, prompt: list[int], steps: int, threads: int) -> float:
    s = session(path, threads)
    out = s.run(None, feeds(s, prompt))
    past, nxt = out[1:], int(out[0][0, -1].argmax())
    for _ in range(2):  # warm-up
        out = s.run(None, feeds(s, [nxt], past))
        past, nxt = out[1:], int(out[0][0, -1].argmax())
    t0 = time.perf_counter()
    for _ in range(steps):
        out = s.run(None, feeds(s, [nxt], past))
        past, nxt = out[1:], int(out[0][0, -1].argmax())
    return steps / (time.perf_counter() - t0)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def file_bytes(path: str) -> int:
    return os.path.getsize(path) + (os.path.getsize(path + ".data") if os.path.exists(path + ".data") else 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-quality", action="store_true", help="speed only (skip the corpus)")
    ap.add_argument("candidates", nargs="+")
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer)
    with open(a.corpus, encoding="utf-8") as f:
        segments = [tok.encode(t).ids for t in json.load(f)]
    prompt = segments[0][:16]
    if not a.no_quality:
        ref = corpus_logits(a.ref, segments, a.threads).astype(np.float64)
        lr = log_softmax(ref)
        pr = np.exp(lr)
        top3 = np.argsort(-ref, -1)[:, :3]
        print(json.dumps({"model": a.ref, "positions": int(ref.shape[0]), "bytes": file_bytes(a.ref)}), flush=True)
    for c in a.candidates:
        row = {"model": c, "bytes": file_bytes(c), "fp32Bytes": file_bytes(a.ref)}
        if not a.no_quality:
            cand = corpus_logits(c, segments, a.threads).astype(np.float64)
            lc = log_softmax(cand)
            row.update(
                positions=int(ref.shape[0]),
                top1=float((ref.argmax(-1) == cand.argmax(-1)).mean()),
                kl=float((pr * (lr - lc)).sum(-1).mean()),
                top1InFp32Top3=float(np.mean([cand[i].argmax() in top3[i] for i in range(len(cand))])),
            )
        if not a.no_speed:
            fp, cd = [], []
            for _ in range(a.reps):  # alternated, so both see the same machine load
                fp.append(decode_tps(a.ref, prompt, a.steps, a.threads))
                cd.append(decode_tps(c, prompt, a.steps, a.threads))
            row.update(fp32TokS=fp, tokS=cd, ratio=float(np.median(cd) / np.median(fp)))
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
