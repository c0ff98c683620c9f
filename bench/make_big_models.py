"""Builds the large ONNX files the inspect benchmark reads (not part of the test suite).

  python bench/make_big_models.py OUT_DIR

- inline-1.5g.onnx: a Llama-shaped graph (embedding, 6 layers of attention/MLP MatMuls, LM head) whose
  ~1.5 GB of float32 weights are inline raw_data in the one file.
- external-5g/model.onnx + model.onnx.data: the Llama-3.2-1B layout (16 layers, hidden 2048,
  vocab 128256, ~1.24 B parameters, ~5 GB) with every weight in one external data file, written
  in chunks so the builder never holds the weights.
Data are random bytes (the reader's speed must not depend on them).
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper


def layer_nodes(i, hidden, inter, kv_dim):
    shapes = {
        f"layers.{i}.q_proj": (hidden, hidden),
        f"layers.{i}.k_proj": (hidden, kv_dim),
        f"layers.{i}.v_proj": (hidden, kv_dim),
        f"layers.{i}.o_proj": (hidden, hidden),
        f"layers.{i}.gate_proj": (hidden, inter),
        f"layers.{i}.up_proj": (hidden, inter),
        f"layers.{i}.down_proj": (inter, hidden),
    }
    x = f"h{i}"
    nodes = [
        helper.make_node("MatMul", [x, f"layers.{i}.q_proj"], [f"q{i}"]),
        helper.make_node("MatMul", [x, f"layers.{i}.k_proj"], [f"k{i}"]),
        helper.make_node("MatMul", [x, f"layers.{i}.v_proj"], [f"v{i}"]),
        helper.make_node("MatMul", [f"q{i}", f"layers.{i}.o_proj"], [f"o{i}"]),
        helper.make_node("Add", [x, f"o{i}"], [f"r{i}"]),
        helper.make_node("MatMul", [f"r{i}", f"layers.{i}.gate_proj"], [f"g{i}"]),
        helper.make_node("MatMul", [f"r{i}", f"layers.{i}.up_proj"], [f"u{i}"]),
        helper.make_node("Mul", [f"g{i}", f"u{i}"], [f"m{i}"]),
        helper.make_node("MatMul", [f"m{i}", f"layers.{i}.down_proj"], [f"d{i}"]),
        helper.make_node("Add", [f"r{i}", f"d{i}"], [f"h{i + 1}"]),
    ]
    return nodes, shapes


def build(layers, hidden, inter, kv_dim, vocab):
    nodes = [helper.make_node("Gather", ["embed_tokens", "input_ids"], ["h0"])]
    shapes = {"embed_tokens": (vocab, hidden)}
    for i in range(layers):
        n, s = layer_nodes(i, hidden, inter, kv_dim)
        nodes += n
        shapes.update(s)
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "lm_head"], ["logits"]))
    shapes["lm_head"] = (hidden, vocab)
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", vocab])]
    return nodes, shapes, inputs, outputs


def inline_model(path):
    nodes, shapes, inputs, outputs = build(layers=6, hidden=2048, inter=5632, kv_dim=512, vocab=32000)
    rng = np.random.default_rng(0)
    inits = []
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
        t.raw_data = rng.bytes(n * 4)
        inits.append(t)
    graph = helper.make_graph(nodes, "bench_inline", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sphana-bench")
    with open(path + ".tmp", "wb") as f:
        f.write(model.SerializeToString())
    os.replace(path + ".tmp", path)


def external_model(folder):
    os.makedirs(folder, exist_ok=True)
    nodes, shapes, inputs, outputs = build(layers=16, hidden=2048, inter=8192, kv_dim=512, vocab=128256)
    del shapes["lm_head"]  # tied, as in Llama-3.2-1B: the head reads the embedding through a Transpose
    nodes[-1] = helper.make_node("MatMul", ["h16", "embed_T"], ["logits"])
    nodes.insert(-1, helper.make_node("Transpose", ["embed_tokens"], ["embed_T"], perm=[1, 0]))
    rng = np.random.default_rng(1)
    inits = []
    offset = 0
    data_path = os.path.join(folder, "model.onnx.data")
    with open(data_path + ".tmp", "wb") as data:
        for name, shape in shapes.items():
            n = int(np.prod(shape)) * 4
            left = n
            while left:
                chunk = min(left, 64 << 20)
                data.write(rng.bytes(chunk))
                left -= chunk
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", "model.onnx.data"), ("offset", str(offset)), ("length", str(n))):
                e = t.external_data.add()
                e.key, e.value = k, v
            inits.append(t)
            offset += n
            pad = (-offset) % 4096
            data.write(b"\0" * pad)
            offset += pad
    graph = helper.make_graph(nodes, "bench_external", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sphana-bench")
    onnx.save(model, os.path.join(folder, "model.onnx"))
    os.replace(data_path + ".tmp", data_path)


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if not os.path.exists(os.path.join(out, "inline-1.5g.onnx")):
        inline_model(os.path.join(out, "inline-1.5g.onnx"))
    if not os.path.exists(os.path.join(out, "external-5g", "model.onnx")):
        external_model(os.path.join(out, "external-5g"))
