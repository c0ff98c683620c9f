#!/usr/bin/env python3
"""Where the INT8 weight-only error comes from: per-MatMul-class sensitivity to accuracy_level.

    python bench/int8_sensitivity.py --ref FP32.onnx --base INT8.onnx --tokenizer tokenizer.json \
        --corpus corpus.json [--threads 2]

BASE is a weight-only INT8 artifact (every MatMulNBits 8-bit, any accuracy_level). Its weights do
not depend on the level (the level is a node attribute: which kernel multiplies), so each row below
is BASE with the accuracy_level attributes of one class of MatMulNBits changed, evaluated in memory:

- "<class> at 4, rest 0": the activation-quantization error that one class contributes alone;
- "<class> at 0, rest 4": how much of the all-level-4 error keeping that class at float activations
  removes.

Classes are found by structure, not by name: the LM head produces the logits (N = vocab, or it reads
the embedding's table); the down projection reads a Mul of two activations (silu(gate) * up); q/k/v
are the three MatMulNBits that share one input, gate/up the two that share one; o is the rest.
Quality is quant_quality.py's: every corpus position teacher-forced vs fp32 (top-1, mean KL in
nats). One JSON line per row on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, __import__("os").path.dirname(__file__))
from quant_quality import feeds, log_softmax, session  # noqa: E402

CLASSES = ("qkv", "o", "gate_up", "down", "head")


def classify(model: onnx.ModelProto) -> dict[str, str]:
    """node name -> class, for every MatMulNBits."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    mnb = [n for n in g.node if n.op_type == "MatMulNBits"]
    by_input: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in mnb:
        by_input[n.input[0]].append(n)
    outputs = {o.name for o in g.output if "logits" in o.name}  # not the present.* KV outputs
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)

    def feeds_output(name: str) -> bool:
        for _ in range(4):
            if name in outputs:
                return True
            users = consumers.get(name, [])
            if len(users) != 1:
                return False
            name = users[0].output[0]
        return name in outputs

    out: dict[str, str] = {}
    for n in mnb:
        p = producer.get(n.input[0])
        if feeds_output(n.output[0]):
            out[n.name] = "head"
        elif p is not None and p.op_type == "Mul" and all(i in producer for i in p.input):
            out[n.name] = "down"
        elif len(by_input[n.input[0]]) == 3:
            out[n.name] = "qkv"
        elif len(by_input[n.input[0]]) == 2:
            out[n.name] = "gate_up"
        else:
            out[n.name] = "o"
    return out


def set_levels(model: onnx.ModelProto, cls: dict[str, str], levels: dict[str, int]) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        if n.op_type != "MatMulNBits":
            continue
        lvl = levels[cls[n.name]]
        keep = [a for a in n.attribute if a.name != "accuracy_level"]
        del n.attribute[:]
        n.attribute.extend(keep)
        if lvl:
            n.attribute.append(onnx.helper.make_attribute("accuracy_level", lvl))
    return m.SerializeToString()


def corpus_logits(s: ort.InferenceSession, segments: list[list[int]]) -> np.ndarray:
    return np.concatenate([s.run(["logits"], feeds(s, seg))[0][0] for seg in segments])


def score(ref: np.ndarray, cand: np.ndarray, seg_lens: list[int]) -> dict:
    lr = log_softmax(ref)
    lc = log_softmax(cand.astype(np.float64))
    kl = (np.exp(lr) * (lr - lc)).sum(-1)
    agree = ref.argmax(-1) == cand.argmax(-1)
    per_seg, o = [], 0
    for n in seg_lens:
        per_seg.append({"top1": round(float(agree[o : o + n].mean()), 4), "kl": round(float(kl[o : o + n].mean()), 5)})
        o += n
    return {"top1": float(agree.mean()), "kl": float(kl.mean()), "segments": per_seg}


def main() -> int:
    from tokenizers import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="all", help="comma list: alone4, keep0, uniform (default all)")
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer)
    with open(a.corpus, encoding="utf-8") as f:
        segments = [tok.encode(t).ids for t in json.load(f)]
    lens = [len(s) for s in segments]
    ref = corpus_logits(session(a.ref, a.threads), segments).astype(np.float64)
    model = onnx.load(a.base)
    cls = classify(model)
    counts = defaultdict(int)
    for c in cls.values():
        counts[c] += 1
    print(json.dumps({"classes": dict(counts), "positions": int(ref.shape[0])}), flush=True)
    rows: list[tuple[str, dict[str, int]]] = []
    want = set(a.rows.split(",")) if a.rows != "all" else {"alone4", "keep0", "uniform"}
    if "uniform" in want:
        rows += [("all at 0", {c: 0 for c in CLASSES}), ("all at 4", {c: 4 for c in CLASSES})]
    if "alone4" in want:
        rows += [(f"{c} at 4, rest 0", {k: 4 if k == c else 0 for k in CLASSES}) for c in CLASSES]
    if "keep0" in want:
        rows += [(f"{c} at 0, rest 4", {k: 0 if k == c else 4 for k in CLASSES}) for c in CLASSES]
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    for name, levels in rows:
        s = ort.InferenceSession(set_levels(model, cls, levels), so, providers=["CPUExecutionProvider"])
        r = score(ref, corpus_logits(s, segments), lens)
        print(json.dumps({"row": name, **r}), flush=True)
        del s
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
