"""Activation equalization (SmoothQuant-style) folded into the float graph before weight-only
quantization: where it folds, that the fold is exact in float, that the engine quantizes exactly
the folded weights, and that bad requests are refused."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from conftest import quantize, session
from sphana_bridge import equalize, graphutil
from sphana_bridge.modelio import scan_model
from test_weight_only import _attrs, _inits, dequantize_mnb

L = 2
CALIB = [[3, 17, 99, 250, 7, 7, 400, 12, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]


def _plan_w(gi: graphutil.GraphIndex) -> dict[str, tuple[str, bool]]:
    return {
        n.output[0]: (n.input[1], False)
        for n in gi.model.graph.node
        if n.op_type == "MatMul" and n.input[1] in gi.inits and len(gi.inits[n.input[1]].dims) == 2
    }


def _groups_and_scales(path, alpha: float):
    scanned = scan_model(str(path))
    gi = graphutil.GraphIndex.build(scanned.model)
    groups = equalize.find_groups(gi, _plan_w(gi), skip={"logits"})
    amax = equalize.activation_amax(scanned.model, scanned.base_dir, [g.activation for g in groups], CALIB)
    arrays = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    scales = []
    for g in groups:
        wmax = np.max([np.abs(arrays[w]).max(axis=1) for w in g.weights], axis=0)
        scales.append(equalize.smoothing_scales(amax[g.activation], wmax, alpha))
    return groups, scales, arrays


def test_groups_are_the_norm_fed_and_gated_inputs_and_the_float_fold_is_exact(models, tmp_path):
    m = models["tied"]
    groups, scales, arrays = _groups_and_scales(m["path"], 0.5)
    kinds = sorted((len(g.weights), "gamma" if g.gamma else "columns") for g in groups)
    # per layer: q/k/v behind the attention norm, gate/up behind the MLP norm, down behind silu(gate)*up;
    # the LM head (behind the final norm) is never equalized: its table is the embedding's
    assert kinds == sorted([(3, "gamma"), (2, "gamma"), (1, "columns")] * L)
    assert all(float(s.max() / s.min()) > 1.5 for s in scales)  # real scales, not ones
    model = onnx.load(str(m["path"]))
    folded = dict(arrays)
    for g, s in zip(groups, scales):
        for w in g.weights:
            folded[w] = folded[w] * s[:, None]
        if g.gamma:
            folded[g.gamma] = folded[g.gamma] / s
        else:
            folded[g.columns_of] = folded[g.columns_of] / s[None, :]
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(folded[t.name].astype(arrays[t.name].dtype), t.name))
    path = tmp_path / "folded.onnx"
    onnx.save(model, str(path))
    out = session(path).run(["logits"], m["feeds"])[0]
    assert not np.allclose(folded[groups[0].weights[0]], arrays[groups[0].weights[0]])
    rel = float(np.abs(out - m["ref"]).max() / np.abs(m["ref"]).max())
    assert rel < 1e-5, rel  # the same function, up to float rounding


def test_engine_quantizes_the_folded_weights(models, tmp_path):
    m = models["tied"]
    groups, scales, arrays = _groups_and_scales(m["path"], 0.5)
    run = quantize(tmp_path, m["path"], "direct", "int8", accuracyLevel=4, equalize=0.5, calibrationIds=CALIB)
    assert run.ok, run.final
    d = run.data
    assert d["equalized"]["groups"] == 3 * L and d["equalized"]["matmuls"] == 6 * L
    assert d["equalized"]["calibrationTokens"] == sum(map(len, CALIB))
    assert d["settings"]["equalize"] == 0.5
    out = d["files"][0]["path"]
    inits = _inits(out)
    row = {w: s for g, s in zip(groups, scales) for w in g.weights}
    col = {g.columns_of: s for g, s in zip(groups, scales) if g.columns_of}
    for g, s in zip(groups, scales):
        if g.gamma:
            np.testing.assert_allclose(inits[g.gamma], arrays[g.gamma] / s, rtol=1e-6)
    model = onnx.load(out)
    src = {n.name: n for n in onnx.load(str(m["path"])).graph.node}
    checked = 0
    for n in model.graph.node:
        if n.op_type != "MatMulNBits" or "logits" in n.output:
            continue
        w = src[n.name.rsplit("_Q", 1)[0]].input[1]
        ref = arrays[w] * row.get(w, 1.0)[:, None] if w in row else arrays[w].copy()
        if w in col:
            ref = ref / col[w][None, :]
        deq, bound = dequantize_mnb(n, inits)
        assert (np.abs(deq - ref) <= bound * (1 + 1e-5) + 1e-7).all(), n.name
        assert _attrs(n)["accuracy_level"] == 4
        checked += 1
    assert checked == 7 * L
    # the function is kept: as close to fp32 as the unequalized INT8 on these (random) weights, within 2x
    plain = quantize(tmp_path, m["path"], "direct", "int8", name="plain", accuracyLevel=4)
    eq_err = np.abs(session(out).run(["logits"], m["feeds"])[0] - m["ref"]).mean()
    plain_err = np.abs(session(plain.data["files"][0]["path"]).run(["logits"], m["feeds"])[0] - m["ref"]).mean()
    assert eq_err < 2 * plain_err, (eq_err, plain_err)


def test_equalize_requests_are_checked(models, tmp_path):
    m = models["tied"]
    for extra, field in (
        ({"equalize": 0.5}, "calibrationIds"),
        ({"equalize": 1.5, "calibrationIds": CALIB}, "equalize"),
        ({"equalize": 0.5, "calibrationIds": [[1, -2]]}, "calibrationIds"),
        ({"equalize": 0.5, "calibrationIds": CALIB, "int8Scheme": "dynamic"}, "equalize"),
    ):
        run = quantize(tmp_path, m["path"], "direct", "int8", name=f"bad-{field}", **extra)
        assert not run.ok and run.final["class"] == "BadRequest", run.final
        assert run.final["details"]["field"] == field, run.final


def test_calibration_runs_only_what_the_measured_activations_need(models):
    """needed_for drops the nodes after the last measured activation (the tied LM head here) and
    the activation ranges measured on the cut graph are bit-identical to the whole graph's."""
    scanned = scan_model(str(models["tied"]["path"]))
    gi = graphutil.GraphIndex.build(scanned.model)
    acts = [g.activation for g in equalize.find_groups(gi, _plan_w(gi), skip={"logits"})]
    cut = equalize.needed_for(scanned.model, acts)
    dropped = {n.output[0] for n in scanned.model.graph.node} - {n.output[0] for n in cut.graph.node}
    head = [n for n in scanned.model.graph.node if "logits" in n.output]
    assert head and head[0].output[0] in dropped and len(cut.graph.node) < len(scanned.model.graph.node)
    assert all(n.output[0] not in dropped for n in cut.graph.node)
    whole = scanned.model
    full = {}
    import onnxruntime as ort  # the whole graph with the activations as extra outputs, as before needed_for

    m = onnx.ModelProto()
    m.CopyFrom(whole)
    for x in acts:
        m.graph.output.append(onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.add_session_config_entry("session.model_external_initializers_file_folder_path", scanned.base_dir)
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for ids in CALIB:
        for x, out in zip(acts, sess.run(acts, equalize._feeds(sess.get_inputs(), ids))):
            a = np.abs(out.reshape(-1, out.shape[-1])).max(axis=0)
            full[x] = a if x not in full else np.maximum(full[x], a)
    amax = equalize.activation_amax(whole, scanned.base_dir, acts, CALIB)
    assert all(np.array_equal(amax[x], full[x]) for x in acts)
