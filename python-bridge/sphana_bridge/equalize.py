"""Activation-outlier equalization (SmoothQuant-style), folded exactly into the float graph
before weight-only quantization.

MatMulNBits at accuracy_level 4 quantizes its input activations to int8 in blocks along K; one
outlier channel in a block costs every other channel of the block its precision. For a MatMul
``Y = X W`` whose input ``X`` is made by an op that can absorb a per-channel scale, dividing
channel ``j`` of ``X`` by ``s_j`` and multiplying row ``j`` of ``W`` by ``s_j`` leaves ``Y``
unchanged (up to float rounding) and moves the outlier into the weights, which are quantized per
output column and block:

- ``X = Mul(gamma, y)`` with ``gamma`` a 1-D constant read only there (an RMSNorm/LayerNorm's
  weight): ``gamma /= s``; the same for onnxruntime's fused RMSNorms (``--optimize ort``):
  ``X = SimplifiedLayerNormalization(y, gamma)`` and output 0 of
  ``com.microsoft.SkipSimplifiedLayerNormalization(y, skip, gamma)`` (its residual-sum output does
  not read gamma);
- ``X = Mul(a, b)`` of two activations, ``b`` made by a MatMul with a constant weight that only
  this Mul reads (a gated MLP's ``silu(gate) * up``): column ``j`` of that weight ``/= s_j``.

Every MatMul reading ``X`` must be one of the quantized constant-weight MatMuls (their rows all
get the same ``s``) and nothing else may read ``X``; anything else is left alone. Found by
structure, never by name. ``s_j = amax(X_j)^alpha / amax(W_j)^(1 - alpha)`` (SmoothQuant's
rule) with ``amax(X_j)`` measured by running the float model on calibration token ids that the
caller supplies (the CLI sends text disjoint from the quality gate's corpus).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from sphana_bridge import graphutil

SCALE_RANGE = (1e-3, 1e3)  # numerical guard only: the measured SmolLM2 scales span 0.02..24
# (domain, op_type) -> input index of gamma, for fused RMSNorms whose output 0 is gamma * normalized(y)
FUSED_RMS_NORMS = {("", "SimplifiedLayerNormalization"): 1, ("ai.onnx", "SimplifiedLayerNormalization"): 1,
                   ("com.microsoft", "SkipSimplifiedLayerNormalization"): 2}


@dataclass
class Group:
    """One equalization group: the activation, the weights [K, N] that read it, where 1/s goes."""

    activation: str
    weights: list[str]
    gamma: str | None = None  # a 1-D constant divided by s
    columns_of: str | None = None  # a [K', K] weight whose columns are divided by s


def find_groups(gi: graphutil.GraphIndex, plan_w: dict[str, tuple[str, bool]], skip: set[str]) -> list[Group]:
    """Equalization groups among the planned weight-only MatMuls (``plan_w``: MatMul output ->
    (weight initializer, transposed)); MatMuls whose output is in ``skip`` (the LM head) are
    never equalized, and neither is a transposed or shared weight."""
    by_x: dict[str, list[tuple[onnx.NodeProto, str]]] = {}
    for n in gi.model.graph.node:
        if n.op_type != "MatMul" or n.domain not in ("", "ai.onnx") or not n.output or n.output[0] not in plan_w:
            continue
        w, transposed = plan_w[n.output[0]]
        if n.output[0] in skip or transposed:
            continue
        by_x.setdefault(n.input[0], []).append((n, w))

    def sole_reader(name: str) -> bool:
        return len(gi.consumers.get(name, [])) == 1 and name not in gi.graph_outputs

    def is_float(name: str, rank: int) -> bool:
        t = gi.inits.get(name)
        return t is not None and t.data_type == TensorProto.FLOAT and len(t.dims) == rank

    groups: list[Group] = []
    for x, mms in by_x.items():
        weights = [w for _, w in mms]
        if len(gi.consumers.get(x, [])) != len(mms) or x in gi.graph_outputs:
            continue
        if not all(sole_reader(w) and is_float(w, 2) for w in weights):
            continue
        K = int(gi.inits[weights[0]].dims[0])
        if any(int(gi.inits[w].dims[0]) != K for w in weights):
            continue
        p = gi.producer.get(x)
        norm_gamma = FUSED_RMS_NORMS.get((p.domain, p.op_type)) if p is not None else None
        if norm_gamma is not None and p.output and p.output[0] == x and len(p.input) > norm_gamma:
            g = p.input[norm_gamma]
            if g in gi.inits and is_float(g, 1) and int(gi.inits[g].dims[0]) == K and sole_reader(g):
                groups.append(Group(x, weights, gamma=g))
            continue
        if p is None or p.op_type != "Mul" or p.domain not in ("", "ai.onnx") or len(p.input) != 2:
            continue
        consts = [i for i in p.input if i in gi.inits or gi.trace_const(i) is not None]
        if len(consts) == 1:
            g = consts[0]
            if g in gi.inits and is_float(g, 1) and int(gi.inits[g].dims[0]) == K and sole_reader(g):
                groups.append(Group(x, weights, gamma=g))
            continue
        if consts:
            continue
        for factor in p.input:
            q = gi.producer.get(factor)
            if (
                q is not None and q.op_type == "MatMul" and q.domain in ("", "ai.onnx") and sole_reader(factor)
                and q.output[0] in plan_w and not plan_w[q.output[0]][1] and q.output[0] not in skip
            ):
                w_up = plan_w[q.output[0]][0]
                if sole_reader(w_up) and is_float(w_up, 2) and int(gi.inits[w_up].dims[1]) == K:
                    groups.append(Group(x, weights, columns_of=w_up))
                    break
    return groups


def _feeds(inputs, ids: list[int]) -> dict[str, np.ndarray]:
    """Feeds for one prefill of ``ids`` with an empty past: token ids, an all-ones mask,
    positions 0..n-1, and every float input (past key/values) with its symbolic dims after the
    batch at 0."""
    n = len(ids)
    f: dict[str, np.ndarray] = {}
    for i in inputs:
        if i.type == "tensor(float)":
            shape = [1 if j == 0 else (d if isinstance(d, int) else 0) for j, d in enumerate(i.shape)]
            f[i.name] = np.zeros(shape, np.float32)
        elif i.name == "input_ids":
            f[i.name] = np.array([ids], np.int64)
        elif i.name == "attention_mask":
            f[i.name] = np.ones((1, n), np.int64)
        elif i.name == "position_ids":
            f[i.name] = np.arange(n, dtype=np.int64)[None]
        else:
            raise ValueError(f"calibration cannot feed model input {i.name!r} ({i.type})")
    return f


def activation_amax(model: onnx.ModelProto, base_dir: str, activations: list[str], sequences: list[list[int]],
                    threads: int = 0) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each named activation over every calibration position, from the
    float model (``model``'s tensors may reference files in ``base_dir``)."""
    import onnxruntime as ort

    m = needed_for(model, activations)
    del m.graph.output[:]
    for x in activations:
        m.graph.output.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    so.add_session_config_entry("session.model_external_initializers_file_folder_path", base_dir)
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    del m
    amax: dict[str, np.ndarray] = {}
    for ids in sequences:
        for x, out in zip(activations, sess.run(activations, _feeds(sess.get_inputs(), ids))):
            a = np.abs(out.reshape(-1, out.shape[-1])).max(axis=0).astype(np.float32)
            amax[x] = a if x not in amax else np.maximum(amax[x], a)
    return amax


def needed_for(model: onnx.ModelProto, values: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` with only the nodes (and initializers) that ``values`` depend on: the
    calibration run skips what comes after the last measured activation (the LM head, a third of
    a small model's FLOPs per token). The kept nodes compute exactly what they did. Unchanged
    when a node carries a subgraph (its outer-scope reads are not listed as inputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = list(m.graph.node)
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in nodes for a in n.attribute):
        return m
    need = set(values)
    keep = []
    for n in reversed(nodes):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(i for i in n.input if i)
    if len(keep) == len(nodes):
        return m
    del m.graph.node[:]
    m.graph.node.extend(reversed(keep))
    inits = [t for t in m.graph.initializer if t.name in need]
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    return m


def smoothing_scales(act_amax: np.ndarray, weight_row_amax: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's s_j = amax(X_j)^alpha / amax(W_j)^(1-alpha), guarded against zeros."""
    a = np.maximum(act_amax.astype(np.float64), 1e-5)
    w = np.maximum(weight_row_amax.astype(np.float64), 1e-5)
    return np.clip(a**alpha / w ** (1.0 - alpha), *SCALE_RANGE).astype(np.float32)
