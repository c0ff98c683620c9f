"""Stamping (sphana_bridge.stamp): one traced layer per layer type, copied per layer, must give the
same model as tracing every layer; a model it cannot stamp (or a wrong stamp) falls back."""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_configs import DECODE_STEPS, FACTS, PROMPT, TINY  # noqa: E402
from sphana_bridge import export_model as em  # noqa: E402
from sphana_bridge import parity, stamp  # noqa: E402
from sphana_bridge.synthetic import synthesize  # noqa: E402

# The tiny configs as they are (their architecture facts are checked against the model): Gemma 3's
# layers are sliding, sliding, global, so its second template is real layer 2 and layer 1 is a stamp.
# Phi-3 is left out: its template hands on its fused qkv output besides the residual (the boundary
# check refuses it and the export falls back to the full trace; not yet stamped).
CASES = {name: TINY[name] for name in ("llama", "qwen2", "gemma", "gemma2", "gemma3", "qwen3")}


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    made: dict[str, str] = {}

    def get(case: str) -> str:
        if case not in made:
            made[case] = str(root / case)
            synthesize(CASES[case], FACTS[case], None, 4321, made[case])
        return made[case]

    return get


def _export(hf_dir: str, out: str, facts: dict, **kw) -> dict:
    return em.export_model(hf_dir, out, facts, prompt_ids=PROMPT, decode_steps=DECODE_STEPS, **kw)


def _weights(path: str) -> list[tuple[tuple[int, ...], str]]:
    """(shape, sha256) of every initializer with 2+ dims or 64+ elements, sorted (names differ)."""
    import onnx
    from onnx import numpy_helper

    out = []
    for t in onnx.load(path).graph.initializer:
        a = numpy_helper.to_array(t)
        if a.ndim >= 2 or a.size >= 64:
            out.append((tuple(a.shape), hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()))
    return sorted(out)


def _logits(path: str, ids: list[int]) -> np.ndarray:
    decoder = parity.OnnxDecoder(parity.ort_session(path))
    return decoder.run(np.array([ids]), decoder.empty_past(1), 0)[0]


def test_plan_one_template_per_layer_type(hf):
    model = em.load_model(hf("gemma3"))
    types = list(model.config.layer_types)
    assert types == ["sliding_attention", "sliding_attention", "full_attention"]
    plan = stamp.plan_layers(model)
    assert plan.path == "model.layers" and plan.num_layers == 3
    assert plan.templates == [0, 2] and plan.type_of == [0, 0, 1]
    assert plan.type_names == ["sliding_attention", "full_attention"]
    real0 = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    with stamp.template_model(model, plan) as tm:
        layers = tm.model.layers
        assert len(layers) == 2 and tm.config.num_hidden_layers == 2
        assert tm.config.layer_types == ["sliding_attention", "full_attention"]
        assert [l.self_attn.layer_idx for l in layers] == [0, 1]
        # random copies, not the real weights
        assert not np.allclose(layers[0].mlp.up_proj.weight.detach().numpy(), real0.numpy())
    assert len(model.model.layers) == 3 and model.config.num_hidden_layers == 3 and model.config.layer_types == types
    assert [l.self_attn.layer_idx for l in model.model.layers] == [0, 1, 2]
    assert np.array_equal(model.model.layers[0].mlp.up_proj.weight.detach().numpy(), real0.numpy())


@pytest.mark.parametrize("case", list(CASES))
def test_stamped_export_equals_the_full_trace(hf, tmp_path, case):
    stamped = _export(hf(case), str(tmp_path / "s" / "m.onnx"), FACTS[case])
    info = stamped["stamp"]
    assert info["applied"] is True, info
    k = 2 if case in ("gemma2", "gemma3") else 1
    assert len(info["templateLayers"]) == k and info["layers"] == CASES[case]["num_hidden_layers"]
    p = stamped["parity"]
    assert p["top1Agreement"] == 1.0 and p["maxAbsDiff"] <= 1e-4 and p["cachedVsFullMaxAbsDiff"] <= 1e-4
    full = _export(hf(case), str(tmp_path / "f" / "m.onnx"), FACTS[case], stamp_layers=False)
    assert "stamp" not in full
    assert stamped["io"] == full["io"]  # the same contract, names, dtypes and dims
    assert stamped["embeddingTables"] == full["embeddingTables"]
    # The same weights (every per-layer tensor bound to its own layer's values) ...
    assert _weights(stamped["output"]) == _weights(full["output"])
    # ... and the same logits on a fresh sequence.
    ids = [3, 141, 59, 26, 53, 58, 97, 93, 23, 84, 62, 64, 33, 83, 27, 95]
    a, b = _logits(stamped["output"], ids), _logits(full["output"], ids)
    assert np.abs(a - b).max() <= 1e-5
    assert (a.argmax(-1) == b.argmax(-1)).all()


def test_a_wrong_stamp_fails_the_gate_and_falls_back(hf, tmp_path, monkeypatch):
    """Bind every layer to layer 0's weights: the stamped graph is well-formed but wrong, so the
    unchanged parity gate must reject it and the export must fall back to the full trace."""
    real_stamp = stamp.stamp

    def wrong(model, plan, layers, recipes, state):
        swapped = dict(state)
        for name in state:
            if name.startswith(plan.path + "."):
                rest = name[len(plan.path) + 1:].split(".", 1)[1]
                swapped[name] = state[f"{plan.path}.0.{rest}"]
        return real_stamp(model, plan, layers, recipes, swapped)

    monkeypatch.setattr(stamp, "stamp", wrong)
    res = _export(hf("llama"), str(tmp_path / "o" / "m.onnx"), FACTS["llama"])
    assert res["stamp"]["applied"] is False
    assert "parity gate" in res["stamp"]["reason"] and "max |diff|" in res["stamp"]["reason"]
    assert res["parity"]["top1Agreement"] == 1.0 and res["parity"]["maxAbsDiff"] <= 1e-4
    assert sorted(os.listdir(tmp_path / "o")) == ["m.onnx"]


def test_not_separable_falls_back(hf, tmp_path, monkeypatch):
    """A template whose head reads a layer's internals (not its residual output) is refused by the
    boundary check, and the export falls back to the full trace."""
    real = stamp.analyse

    def reach_into_the_layer(model, plan, recipes, hidden, check):
        scoped = [n for n in model.graph if stamp._scope(n, plan.prefix) == 0]
        members = {id(n) for n in scoped}
        internal = next(
            o for n in scoped for o in n.outputs
            if o.uses() and all(id(u.node) in members for u in o.uses()) and not o.is_graph_output()
        )
        reader = next(
            (u.node, u.idx) for n in scoped for o in n.outputs for u in o.uses()
            if id(u.node) not in members and not o.is_graph_output()
        )
        reader[0].replace_input_with(reader[1], internal)
        return real(model, plan, recipes, hidden, check)

    monkeypatch.setattr(stamp, "analyse", reach_into_the_layer)
    res = _export(hf("qwen2"), str(tmp_path / "o" / "m.onnx"), FACTS["qwen2"])
    assert res["stamp"]["applied"] is False
    assert res["stamp"]["reason"].startswith("not stamped: NotSeparable: "), res["stamp"]
    assert res["parity"]["top1Agreement"] == 1.0 and res["parity"]["maxAbsDiff"] <= 1e-4
