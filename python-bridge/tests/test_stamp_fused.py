"""The fused export (optimize="ort"): a small template fused by onnxscript's optimize_for_ort, its
fused layer stamped per layer (stamp.stamp_fused), gated against the export's one PyTorch
reference; every way it can fail falls back to the unfused stamp and says why."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_configs import DECODE_STEPS, FACTS, PROMPT, TINY  # noqa: E402
from sphana_bridge import export_model as em  # noqa: E402
from sphana_bridge import optimize as opt  # noqa: E402
from sphana_bridge import parity, stamp  # noqa: E402
from sphana_bridge.synthetic import synthesize  # noqa: E402

LAYERS = 4  # more than the fusion template's two layers, so layers 2 and 3 are stamped copies


def _deeper(case: str, layers: int) -> tuple[dict, dict]:
    """The tiny config with more layers, and its facts (parameter count from the meta model)."""
    import torch

    from sphana_bridge.architecture import model_class, parse_facts
    from sphana_bridge.synthetic import build_config

    cfg = dict(TINY[case], num_hidden_layers=layers)
    facts = dict(FACTS[case])
    facts["layerTypes"] = [facts["layerTypes"][0]] * layers
    facts["parameters"] = 1
    with torch.device("meta"):
        model = model_class(cfg["architectures"][0])(build_config(cfg, parse_facts(facts)))
    facts["parameters"] = sum(p.numel() for p in model.parameters())
    return cfg, facts


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    made: dict[str, tuple[str, dict]] = {}

    def get(case: str, layers: int = LAYERS) -> tuple[str, dict]:
        key = f"{case}-{layers}"
        if key not in made:
            cfg, facts = _deeper(case, layers) if layers != TINY[case]["num_hidden_layers"] else (TINY[case], FACTS[case])
            synthesize(cfg, facts, None, 4321, str(root / key))
            made[key] = (str(root / key), facts)
        return made[key]

    return get


def _export(hf_dir: str, out: str, facts: dict, **kw) -> dict:
    return em.export_model(hf_dir, out, facts, prompt_ids=PROMPT, decode_steps=DECODE_STEPS, **kw)


def _logits(path: str, ids: list[int]) -> np.ndarray:
    decoder = parity.OnnxDecoder(parity.ort_session(path))
    return decoder.run(np.array([ids]), decoder.empty_past(1), 0)[0]


IDS = [3, 141, 59, 26, 53, 58, 97, 93, 23, 84, 62, 64, 33, 83, 27, 95]


@pytest.mark.parametrize("case", ["smollm2", "qwen2"])
def test_the_stamped_fused_layer_equals_fusing_the_whole_graph(hf, tmp_path, case):
    """SmolLM2 (tied head, one KV head) and Qwen2 (q/k/v biases), 4 layers: the fused stamped export
    passes the gate, has every layer fused, and equals optimize_for_ort over the whole unfused
    export (same op histogram, same logits on a fresh sequence)."""
    hf_dir, facts = hf(case)
    fused = _export(hf_dir, str(tmp_path / "fused" / "m.onnx"), facts, optimize="ort")
    o = fused["optimize"]
    assert o["applied"] is True and o["method"] == "stamped", o
    assert fused["stamp"]["applied"] is True and fused["stamp"]["templateLayers"] == [0, 1] and fused["stamp"]["layers"] == LAYERS
    assert o["fusionCounts"]["com.microsoft.GroupQueryAttention"] == LAYERS
    # two skip-norms per layer: its post-attention norm, and the next layer's (or the final) norm
    assert o["fusionCounts"]["com.microsoft.SkipSimplifiedLayerNormalization"] == 2 * LAYERS
    assert o["fusionCounts"]["SimplifiedLayerNormalization"] == 1  # layer 0's input norm
    assert o["nonStandardOps"] == sorted(k for k in o["fusionCounts"] if "." in k)
    p = fused["parity"]
    assert p is o["parity"] and p["top1Agreement"] == 1.0 and p["maxAbsDiff"] <= 1e-4 and p["cachedVsFullMaxAbsDiff"] <= 1e-4
    # the graph keeps the contract: concrete KV heads and head dim (check_contract ran on it)
    dec = parity.OnnxDecoder(parity.ort_session(fused["output"]))
    assert (dec.kv_heads, dec.head_dim) == (TINY[case]["num_key_value_heads"], TINY[case].get("head_dim", TINY[case]["hidden_size"] // TINY[case]["num_attention_heads"]))
    unfused = _export(hf_dir, str(tmp_path / "unfused" / "m.onnx"), facts)
    assert "optimize" not in unfused
    ref = parity.reference(em.load_model(hf_dir), PROMPT, DECODE_STEPS)
    whole = opt.fuse_file(unfused["output"], str(tmp_path / "whole" / "m.onnx"), ref)
    assert whole["applied"] is True, whole.get("reason")
    import onnx_ir as ir

    assert opt.op_histogram(ir.load(fused["output"])) == whole["opsAfter"]
    a, b = _logits(fused["output"], IDS), _logits(whole["output"], IDS)
    assert np.abs(a - b).max() <= 1e-5
    assert (a.argmax(-1) == b.argmax(-1)).all()
    # one tied table (FusedMatMul transB=1 on it), no transposed copy: the fused file is not bigger
    if TINY[case].get("tie_word_embeddings"):
        assert fused["embeddingTables"] == 1
        assert o["fusionCounts"]["com.microsoft.FusedMatMul"] == 1
    assert sum(f["bytes"] for f in fused["files"]) <= sum(f["bytes"] for f in unfused["files"])


def test_one_pytorch_reference_for_the_fused_attempt_and_its_fallback(hf, tmp_path, monkeypatch):
    """Bind every fused layer to layer 0's weights: well-formed but wrong, so the gate rejects it;
    the export falls back to the unfused stamp, and the one PyTorch reference served both gates."""
    calls = []
    real_reference = em.reference

    def counted(*a, **k):
        calls.append(1)
        return real_reference(*a, **k)

    monkeypatch.setattr(em, "reference", counted)
    real_stamp = stamp.stamp

    def wrong(model, plan, layers, recipes, state):
        if _is_fused(model):  # the fused layer stamped with the real weights (not the template build)
            swapped = dict(state)
            for name in state:
                if name.startswith(plan.path + "."):
                    rest = name[len(plan.path) + 1:].split(".", 1)[1]
                    swapped[name] = state[f"{plan.path}.0.{rest}"]
            state = swapped
        return real_stamp(model, plan, layers, recipes, state)

    monkeypatch.setattr(stamp, "stamp", wrong)
    hf_dir, facts = hf("smollm2")
    res = _export(hf_dir, str(tmp_path / "o" / "m.onnx"), facts, optimize="ort")
    assert len(calls) == 1
    o = res["optimize"]
    assert o["applied"] is False
    assert o["reason"].startswith("the fused stamped model failed the parity gate: ") and "max |diff|" in o["reason"], o["reason"]
    assert res["stamp"]["applied"] is True and res["stamp"]["templateLayers"] == [0]  # the unfused stamp
    assert res["parity"]["top1Agreement"] == 1.0 and res["parity"]["maxAbsDiff"] <= 1e-4
    assert sorted(os.listdir(tmp_path / "o")) == ["m.onnx"]


def _is_fused(model) -> bool:
    return any(n.domain == "com.microsoft" for n in model.graph)


def test_a_fusion_error_keeps_the_unfused_stamp(hf, tmp_path, monkeypatch):
    def boom(model):
        raise RuntimeError("no pattern for you")

    monkeypatch.setattr(opt, "fuse", boom)
    hf_dir, facts = hf("smollm2", TINY["smollm2"]["num_hidden_layers"])
    res = _export(hf_dir, str(tmp_path / "o" / "m.onnx"), facts, optimize="ort")
    assert res["optimize"]["applied"] is False
    assert res["optimize"]["reason"] == "the fused layer was not stamped: RuntimeError: no pattern for you"
    assert res["stamp"]["applied"] is True
    assert res["parity"]["top1Agreement"] == 1.0


def test_a_fused_kernel_onnxruntime_refuses_keeps_the_unfused_stamp(hf, tmp_path):
    """Tiny Qwen3's head_dim 24: onnxruntime's GroupQueryAttention wants a multiple of 16, so the
    fused model does not run; the export keeps the unfused stamp and records onnxruntime's words."""
    hf_dir, facts = hf("qwen3", TINY["qwen3"]["num_hidden_layers"])
    res = _export(hf_dir, str(tmp_path / "o" / "m.onnx"), facts, optimize="ort")
    o = res["optimize"]
    assert o["applied"] is False
    assert o["reason"].startswith("the fused stamped model does not run in onnxruntime: ") and "head_size" in o["reason"], o["reason"]
    assert res["stamp"]["applied"] is True and res["parity"]["top1Agreement"] == 1.0


def test_a_sliding_window_is_not_fused(hf, tmp_path):
    """onnxscript's GroupQueryAttention fusion drops a sliding window (tiny Mistral fused by the
    whole-graph pass: max |diff| 11.7 past the window): refused up front."""
    hf_dir, facts = hf("gemma2", TINY["gemma2"]["num_hidden_layers"])
    res = _export(hf_dir, str(tmp_path / "o" / "m.onnx"), facts, optimize="ort")
    assert res["optimize"]["applied"] is False
    assert res["optimize"]["reason"].startswith("sliding-window attention (window 8)")
    assert res["stamp"]["applied"] is True


def test_an_unstamped_export_fuses_the_whole_graph(hf, tmp_path):
    """An export that traced every layer (here: stamping turned off, as for a family whose layer
    hands on more than its residual) fuses the whole gated graph and gates it again."""
    hf_dir, facts = hf("smollm2", TINY["smollm2"]["num_hidden_layers"])
    res = _export(hf_dir, str(tmp_path / "o" / "m.onnx"), facts, optimize="ort", stamp_layers=False)
    o = res["optimize"]
    assert "stamp" not in res
    assert o["applied"] is True and o["method"] == "full-graph", o
    assert o["fusionCounts"]["com.microsoft.GroupQueryAttention"] == TINY["smollm2"]["num_hidden_layers"]
    assert res["parity"] is o["parity"] and res["parity"]["maxAbsDiff"] <= 1e-4
    assert sorted(os.listdir(tmp_path / "o")) == ["m.onnx"]


def test_equalization_folds_into_the_fused_norms(hf, tmp_path):
    """The INT8 step's activation equalization finds the fused graph's norm-fed projections too:
    q/k/v behind SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization output 0, gate/up
    behind the next skip-norm, down behind silu(gate) * up (without it, real SmolLM2's fused INT8
    scored top-1 0.946 / KL 0.0058 on the gate corpus instead of 0.966 / 0.0041)."""
    import onnx
    from onnx import numpy_helper

    from sphana_bridge import equalize, graphutil
    from sphana_bridge.modelio import scan_model

    hf_dir, facts = hf("smollm2")
    res = _export(hf_dir, str(tmp_path / "f" / "m.onnx"), facts, optimize="ort")
    assert res["optimize"]["applied"] is True
    scanned = scan_model(res["output"])
    gi = graphutil.GraphIndex.build(scanned.model)
    plan_w = {n.output[0]: (n.input[1], False) for n in gi.model.graph.node
              if n.op_type == "MatMul" and n.input[1] in gi.inits and len(gi.inits[n.input[1]].dims) == 2}
    groups = equalize.find_groups(gi, plan_w, skip={"logits"})
    kinds = sorted((len(g.weights), "gamma" if g.gamma else "columns", gi.producer[g.activation].op_type) for g in groups)
    want = [(3, "gamma", "SimplifiedLayerNormalization")] + [(3, "gamma", "SkipSimplifiedLayerNormalization")] * (LAYERS - 1)
    want += [(2, "gamma", "SkipSimplifiedLayerNormalization")] * LAYERS + [(1, "columns", "Mul")] * LAYERS
    assert kinds == sorted(want)
    # the fold is exact in float: gamma / s and the rows of W * s give the same logits
    amax = equalize.activation_amax(scanned.model, scanned.base_dir, [g.activation for g in groups], [PROMPT])
    model = onnx.load(res["output"])
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dtypes = {k: v.dtype for k, v in arrays.items()}
    for g in groups:
        s = equalize.smoothing_scales(amax[g.activation], np.max([np.abs(arrays[w]).max(axis=1) for w in g.weights], axis=0), 0.5)
        for w in g.weights:
            arrays[w] = arrays[w] * s[:, None]
        if g.gamma:
            arrays[g.gamma] = arrays[g.gamma] / s
        else:
            arrays[g.columns_of] = arrays[g.columns_of] / s[None, :]
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(arrays[t.name].astype(dtypes[t.name]), t.name))
    onnx.save(model, str(tmp_path / "folded.onnx"))
    a, b = _logits(res["output"], IDS), _logits(str(tmp_path / "folded.onnx"), IDS)
    assert float(np.abs(a - b).max() / np.abs(a).max()) < 1e-5
