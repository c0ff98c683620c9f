#!/usr/bin/env python3
"""Builds the ONNX models of the verify tests (one process, about a second).

    python test/verify/make_models.py OUT_DIR

OUT_DIR/fp32/llm_generator.onnx        tiny_llm, Llama 3 vocabulary, tied, weights inline
OUT_DIR/int8/llm_generator.int8.onnx   its INT8 twin: the bridge's quantize (embedding-split, --int8-scheme dynamic, so the zeroed twin below has MatMulInteger weights to zero) when
                                       python-bridge works, else onnxruntime quantize_dynamic (MatMul only)
OUT_DIR/ext/llm_generator.onnx(.data)  the same fp32 model with external data
OUT_DIR/swapped/llm_generator.onnx     the fp32 model with layer 0's present key and value outputs
                                       swapped: a full run is still right, the cached path is not
OUT_DIR/zeroed/llm_generator.int8.onnx the INT8 twin with every quantized decoder-body weight set to
                                       its zero point (the tied embedding / LM head left intact)
Prints one JSON line: how the INT8 model was made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "fixtures"))
from tiny_llm import TinyLlmConfig, save_tiny_llm  # noqa: E402

CFG = dict(vocab=128256, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, tied=True, seed=0)


def quantize_with_bridge(src: str, dst: str) -> str | None:
    bridge = os.path.join(ROOT, "python-bridge")
    if not os.path.isdir(os.path.join(bridge, "sphana_bridge")):
        return None
    request = {"input": src, "output": dst, "strategy": "embedding-split", "precision": "int8", "int8Scheme": "dynamic", "perChannel": False, "protoLimitBytes": 2**31}
    env = {**os.environ, "PYTHONPATH": bridge}
    r = subprocess.run([sys.executable, "-m", "sphana_bridge", "quantize", "--request", json.dumps(request)], env=env, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(dst):
        sys.stderr.write(f"bridge quantize failed ({r.returncode}), using quantize_dynamic: {r.stderr[-500:]}\n")
        return None
    return "sphana_bridge quantize (embedding-split, int8)"


def quantize_with_ort(src: str, dst: str) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], per_channel=False, weight_type=QuantType.QInt8)
    return "onnxruntime quantize_dynamic (MatMul, QInt8)"


def zero_body_weights(src: str, dst: str) -> int:
    model = onnx.load(src)
    inits = {t.name: t for t in model.graph.initializer}
    zeroed = 0
    for node in model.graph.node:
        if node.op_type != "MatMulInteger" or "embed" in node.input[1]:
            continue
        weight = inits.get(node.input[1])
        if weight is None:
            continue
        zp = numpy_helper.to_array(inits[node.input[3]]) if len(node.input) > 3 and node.input[3] in inits else 0
        arr = numpy_helper.to_array(weight)
        weight.CopyFrom(numpy_helper.from_array(np.broadcast_to(np.asarray(zp, dtype=arr.dtype), arr.shape).copy(), weight.name))
        zeroed += 1
    onnx.save_model(model, dst)
    return zeroed


def swap_layer0_presents(src: str, dst: str) -> None:
    """The graph computes as before, but present.0.key carries the values and vice versa."""
    model = onnx.load(src)
    g = model.graph
    rename = {"present.0.key": "present.0.key_internal", "present.0.value": "present.0.value_internal"}
    for node in g.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    g.node.append(onnx.helper.make_node("Identity", ["present.0.value_internal"], ["present.0.key"], name="swap_k"))
    g.node.append(onnx.helper.make_node("Identity", ["present.0.key_internal"], ["present.0.value"], name="swap_v"))
    onnx.save_model(model, dst)


def main() -> int:
    out = sys.argv[1]
    for sub in ("fp32", "int8", "ext", "zeroed", "swapped"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    fp32 = os.path.join(out, "fp32", "llm_generator.onnx")
    int8 = os.path.join(out, "int8", "llm_generator.int8.onnx")
    save_tiny_llm(TinyLlmConfig(**CFG), fp32)
    save_tiny_llm(TinyLlmConfig(**CFG), os.path.join(out, "ext", "llm_generator.onnx"), external_data=True)
    how = quantize_with_bridge(fp32, int8) or quantize_with_ort(fp32, int8)
    zeroed = zero_body_weights(int8, os.path.join(out, "zeroed", "llm_generator.int8.onnx"))
    swap_layer0_presents(fp32, os.path.join(out, "swapped", "llm_generator.onnx"))
    print(json.dumps({"int8": how, "zeroedWeights": zeroed, "config": CFG}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
