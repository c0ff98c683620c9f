"""optimize: onnxruntime fusions on an exported tiny SmolLM2-shaped model, parity-gated, with fallbacks."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx_ir as ir
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_configs import DECODE_STEPS, FACTS, PROMPT, TINY  # noqa: E402
from sphana_bridge import export_model as em  # noqa: E402
from sphana_bridge import optimize as opt  # noqa: E402
from sphana_bridge.parity import OnnxDecoder, ort_session  # noqa: E402
from sphana_bridge.synthetic import synthesize  # noqa: E402

CFG = TINY["smollm2"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("opt")
    hf = str(root / "hf")
    synthesize(CFG, FACTS["smollm2"], None, 4321, hf)
    path = str(root / "export" / "llm_generator.onnx")
    em.export_model(hf, path, FACTS["smollm2"], prompt_ids=PROMPT, decode_steps=DECODE_STEPS)
    return hf, path


def run(exported, out, **kw):
    hf, path = exported
    return opt.optimize_model(path, str(out), hf, prompt_ids=PROMPT, decode_steps=DECODE_STEPS, **kw)


def test_by_default_the_tied_head_stays_one_table(exported, tmp_path):
    """No transposed copy: the tied head reads the embedding table through FusedMatMul(transB=1)
    (the quantizer quantizes it with the table it shares with the Gather)."""
    hf, path = exported
    r = run(exported, tmp_path / "fused.onnx")
    assert r["applied"] is True and r["untiedLmHead"] == []
    assert r["opsAfter"]["com.microsoft.FusedMatMul"] == 1
    assert r["fusedOps"]["com.microsoft.GroupQueryAttention"] == CFG["num_hidden_layers"]
    before, after = ir.load(path), ir.load(str(tmp_path / "fused.onnx"))
    assert sum(v.const_value.nbytes for v in after.graph.initializers.values()) <= sum(v.const_value.nbytes for v in before.graph.initializers.values())
    assert em.embedding_tables(after, {"vocab_size": CFG["vocab_size"], "hidden_size": CFG["hidden_size"]}) == 1


def test_fused_model_passes_parity_keeps_io_and_untied_head(exported, tmp_path):
    hf, path = exported
    r = run(exported, tmp_path / "fused.onnx", untie_head=True)
    assert r["applied"] is True
    layers = CFG["num_hidden_layers"]
    assert r["fusionCounts"]["gqa"] == layers
    assert r["fusionCounts"]["skip_rms_normalization"] == 2 * layers
    assert r["opsAfter"]["com.microsoft.GroupQueryAttention"] == layers
    assert r["nonStandardOps"] == ["com.microsoft.GroupQueryAttention", "com.microsoft.SkipSimplifiedLayerNormalization"]
    assert "com.microsoft.FusedMatMul" not in r["opsAfter"]
    # tied head: one FusedMatMul(transB=1) on the [vocab, hidden] table rewritten as MatMul on its transpose
    assert [u["shape"] for u in r["untiedLmHead"]] == [[CFG["vocab_size"], CFG["hidden_size"]]]
    assert r["untiedLmHead"][0]["addedBytes"] == CFG["vocab_size"] * CFG["hidden_size"] * 4
    assert r["parity"]["maxAbsDiff"] <= 1e-3 and r["parity"]["top1Agreement"] == 1.0
    before, after = ir.load(path), ir.load(str(tmp_path / "fused.onnx"))
    assert opt.io_signature(after) == opt.io_signature(before)
    dec = OnnxDecoder(ort_session(str(tmp_path / "fused.onnx")))
    head_dim = CFG.get("head_dim", CFG["hidden_size"] // CFG["num_attention_heads"])
    assert (dec.kv_heads, dec.head_dim) == (CFG["num_key_value_heads"], head_dim)
    # the transposed copy is the table, transposed
    table = after.graph.initializers[r["untiedLmHead"][0]["table"]].const_value.numpy()
    copy = after.graph.initializers[r["untiedLmHead"][0]["table"] + ".transposed"].const_value.numpy()
    np.testing.assert_array_equal(copy, table.T)


def test_broken_parity_falls_back_and_writes_nothing(exported, tmp_path):
    r = run(exported, tmp_path / "fused.onnx", atol=0.0)
    assert r["applied"] is False
    assert r["reason"].startswith("parity failed:")
    assert r["parity"]["maxAbsDiff"] > 0
    assert os.listdir(tmp_path) == []


def test_fusion_error_falls_back_with_the_reason(exported, tmp_path, monkeypatch):
    def boom(model):
        raise RuntimeError("no pattern for you")

    monkeypatch.setattr(opt, "fuse", boom)
    r = run(exported, tmp_path / "fused.onnx")
    assert r["applied"] is False
    assert r["reason"] == "fusion failed: RuntimeError: no pattern for you"
    assert os.listdir(tmp_path) == []


def test_untie_leaves_a_fused_matmul_with_other_attributes_alone():
    x = ir.Value(name="x", shape=ir.Shape([1, 4]), type=ir.TensorType(ir.DataType.FLOAT))
    w = ir.Value(name="w", shape=ir.Shape([3, 4]), type=ir.TensorType(ir.DataType.FLOAT), const_value=ir.tensor(np.ones((3, 4), np.float32), name="w"))
    node = ir.node("FusedMatMul", [x, w], attributes={"transB": 1, "alpha": 0.5}, domain="com.microsoft")
    graph = ir.Graph([x], node.outputs, nodes=[node], initializers=[w], opset_imports={"": 18, "com.microsoft": 1})
    assert opt.untie_lm_head(ir.Model(graph, ir_version=10)) == []
