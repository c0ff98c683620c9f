"""Graph analysis helpers: const-weight MatMuls, the token embedding, tied LM heads."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto

# Ops that only move / re-view a constant: a MatMul whose B is an initializer reached
# through these still has a "constant weight".
PASS_THROUGH_OPS = {"Transpose", "Reshape", "Identity", "Cast", "Squeeze", "Unsqueeze", "Flatten"}
INDEX_PASS_THROUGH_OPS = {"Cast", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"}

QUANT_OP_TYPES = {
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "QuantizeLinear",
    "DequantizeLinear",
    "ConvInteger",
    "QLinearMatMul",
    "QLinearConv",
    "MatMulNBits",
    "GatherBlockQuantized",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QGemm",
    "MatMulBnb4",
    "QAttention",
    "DynamicQuantizeLSTM",
    "QEmbedLayerNormalization",
}
QUANT_TENSOR_TYPES = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4}


def op_key(node: onnx.NodeProto) -> str:
    dom = node.domain
    if dom in ("", "ai.onnx"):
        return node.op_type
    return f"{dom}.{node.op_type}"


@dataclass
class GraphIndex:
    model: onnx.ModelProto
    inits: dict[str, TensorProto] = field(default_factory=dict)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = field(default_factory=lambda: defaultdict(list))
    graph_inputs: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)
    graph_outputs: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, model: onnx.ModelProto) -> "GraphIndex":
        gi = cls(model=model)
        g = model.graph
        gi.inits = {t.name: t for t in g.initializer}
        for n in g.node:
            for o in n.output:
                if o:
                    gi.producer[o] = n
            for i, name in enumerate(n.input):
                if name:
                    gi.consumers[name].append((n, i))
            # tensors captured by subgraphs count as consumed by the parent node
            for a in n.attribute:
                for sg in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    for used in _subgraph_free_inputs(sg):
                        gi.consumers[used].append((n, -1))
        gi.graph_inputs = {v.name: v for v in g.input if v.name not in gi.inits}
        gi.graph_outputs = {v.name for v in g.output}
        return gi

    def trace_const(self, name: str) -> tuple[str, list[onnx.NodeProto]] | None:
        """Follow ``name`` back through pass-through ops to an initializer or Constant."""
        path: list[onnx.NodeProto] = []
        seen = set()
        while name not in self.inits:
            if name in seen:
                return None
            seen.add(name)
            node = self.producer.get(name)
            if node is None:
                return None
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                path.append(node)
                return name, path
            if node.op_type not in PASS_THROUGH_OPS or node.domain not in ("", "ai.onnx") or not node.input:
                return None
            path.append(node)
            name = node.input[0]
        return name, path

    def trace_to_graph_input(self, name: str) -> str | None:
        seen = set()
        while name not in self.graph_inputs:
            if name in seen or name in self.inits:
                return None
            seen.add(name)
            node = self.producer.get(name)
            if node is None or node.op_type not in INDEX_PASS_THROUGH_OPS or not node.input:
                return None
            name = node.input[0]
        return name


def _subgraph_free_inputs(g: onnx.GraphProto) -> set[str]:
    produced = {i.name for i in g.input} | {t.name for t in g.initializer}
    used: set[str] = set()
    for n in g.node:
        for i in n.input:
            if i and i not in produced:
                used.add(i)
        produced.update(o for o in n.output if o)
        for a in n.attribute:
            for sg in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                used |= {u for u in _subgraph_free_inputs(sg) if u not in produced}
    return used


def is_float_init(t: TensorProto | None) -> bool:
    return t is not None and t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)


@dataclass
class ConstMatMul:
    node: onnx.NodeProto
    weight: str  # initializer name (or Constant output)
    via: list[str]  # op types between the initializer and the MatMul (empty = direct)


def is_block_offset_matmul(gi: GraphIndex, n: onnx.NodeProto) -> bool:
    """The float MatMul of an rtn-float-zp weight's block offsets (engine._offset_nodes): its A
    input is per-block sums of an activation (Reshape <- ReduceSum) and its output is added to
    a MatMulNBits output. Part of a 4-bit weight, not a float weight left unquantized."""
    if n.op_type != "MatMul" or len(n.input) < 2:
        return False
    a = gi.producer.get(n.input[0])
    red = gi.producer.get(a.input[0]) if a is not None and a.op_type == "Reshape" else None
    if red is None or red.op_type != "ReduceSum":
        return False
    return any(c.op_type == "Add" and any(getattr(gi.producer.get(i), "op_type", "") == "MatMulNBits" for i in c.input)
               for c, _i in gi.consumers.get(n.output[0], []))


def const_weight_matmuls(gi: GraphIndex) -> list[ConstMatMul]:
    """MatMul / Gemm nodes whose B input is a float constant (directly or via pass-through ops)."""
    found = []
    for n in gi.model.graph.node:
        if n.domain == "com.microsoft" and n.op_type == "FusedMatMul" and len(n.input) == 2:
            tr = gi.trace_const(n.input[1])
            t = gi.inits.get(tr[0]) if tr else None
            if tr is not None and (t is None or is_float_init(t)) and not (t is not None and len(t.dims) >= 2 and min(t.dims) < MIN_PROJECTION_DIM):
                found.append(ConstMatMul(node=n, weight=tr[0], via=[p.op_type for p in tr[1]]))
            continue
        if n.domain not in ("", "ai.onnx") or n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2:
            continue
        if is_block_offset_matmul(gi, n):
            continue
        tr = gi.trace_const(n.input[1])
        if tr is None:
            continue
        name, path = tr
        t = gi.inits.get(name)
        if t is not None and not is_float_init(t):
            continue
        if t is not None and len(t.dims) >= 2 and min(t.dims) < MIN_PROJECTION_DIM:
            continue
        found.append(ConstMatMul(node=n, weight=name, via=[p.op_type for p in path]))
    return found


def quantized_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Counts of quantization-related ops; a Gather reading an int8/uint8/int4 initializer
    is reported as ``Gather(int8)`` etc."""
    inits = {t.name: t for t in model.graph.initializer}
    out: Counter = Counter()
    for n in model.graph.node:
        if n.op_type in QUANT_OP_TYPES:
            out[op_key(n)] += 1
        elif n.op_type == "Gather" and n.domain in ("", "ai.onnx") and n.input and n.input[0] in inits:
            t = inits[n.input[0]]
            if t.data_type in QUANT_TENSOR_TYPES:
                out[f"Gather({TensorProto.DataType.Name(t.data_type).lower()})"] += 1
    return dict(sorted(out.items()))


@dataclass
class EmbeddingInfo:
    table: str  # initializer name [V, H]
    gathers: list[onnx.NodeProto]  # Gather(table, ids) nodes (usually one)
    ids_input: str | None  # graph input the indices come from
    tied_heads: list[tuple[onnx.NodeProto, onnx.NodeProto]]  # (MatMul, the Transpose feeding it)
    vocab: int
    hidden: int


def find_embedding(gi: GraphIndex) -> EmbeddingInfo | None:
    """The token-embedding Gather: data is a 2-D float initializer, indices come from a
    graph input (preferably ``input_ids``)."""
    candidates = []
    for n in gi.model.graph.node:
        if n.op_type != "Gather" or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            continue
        t = gi.inits.get(n.input[0])
        if t is None or t.data_type != TensorProto.FLOAT or len(t.dims) != 2:
            continue
        axis = 0
        for a in n.attribute:
            if a.name == "axis":
                axis = a.i
        if axis != 0:
            continue
        src = gi.trace_to_graph_input(n.input[1])
        if src is None:
            continue
        score = (1 if src == "input_ids" else 0, int(t.dims[0]) * int(t.dims[1]))
        candidates.append((score, n, src))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0], reverse=True)
    _, node, src = candidates[0]
    table = node.input[0]
    t = gi.inits[table]
    gathers, tied = [], []
    for consumer, idx in gi.consumers.get(table, []):
        if consumer.op_type == "Gather" and idx == 0 and consumer.domain in ("", "ai.onnx"):
            axis = next((a.i for a in consumer.attribute if a.name == "axis"), 0)
            if axis == 0:
                gathers.append(consumer)
                continue
        if idx == 1 and fused_matmul_const_b(consumer, gi) is True:
            tied.append((consumer, None))  # com.microsoft.FusedMatMul(transB=1): a fused tied head
            continue
        if idx == 0 and transpose_feeds_matmuls(consumer, gi):
            for u, _ in gi.consumers[consumer.output[0]]:
                tied.append((u, consumer))
            continue
        raise UnsupportedEmbedding(
            f"embedding table {table!r} has an unsupported consumer {consumer.op_type} "
            f"({consumer.name or consumer.output[0]!r}, input {idx})"
        )
    return EmbeddingInfo(
        table=table,
        gathers=gathers,
        ids_input=src,
        tied_heads=tied,
        vocab=int(t.dims[0]),
        hidden=int(t.dims[1]),
    )


def fused_matmul_const_b(n: onnx.NodeProto, gi: GraphIndex) -> bool | None:
    """For a com.microsoft.FusedMatMul whose B is an initializer and that is a plain
    A @ B or A @ B^T (alpha 1, no transA / batch transposes): transB. Otherwise None."""
    if n.domain != "com.microsoft" or n.op_type != "FusedMatMul" or len(n.input) != 2 or n.input[1] not in gi.inits:
        return None
    at = {a.name: a for a in n.attribute}
    if any(k in at and at[k].i for k in ("transA", "transBatchA", "transBatchB")):
        return None
    if "alpha" in at and at["alpha"].f != 1.0:
        return None
    return bool("transB" in at and at["transB"].i)


def is_standard(n: onnx.NodeProto) -> bool:
    return n.domain in ("", "ai.onnx")


def transpose_feeds_matmuls(tr: onnx.NodeProto, gi: GraphIndex) -> bool:
    """A 2-D Transpose (perm [1, 0]) whose output is read only as B of plain MatMuls (and is no
    graph output): a quantizer can drop it and quantize the transposed initializer instead."""
    if tr.op_type != "Transpose" or not is_standard(tr) or not tr.output:
        return False
    perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), [1, 0])
    users = gi.consumers.get(tr.output[0], [])
    return (
        perm == [1, 0]
        and bool(users)
        and all(u.op_type == "MatMul" and i == 1 and is_standard(u) for u, i in users)
        and tr.output[0] not in gi.graph_outputs
    )


@dataclass
class MatMulWeight:
    """The initializer behind a MatMul's B: [K, N], or [N, K] when ``transposed``."""

    node: onnx.NodeProto
    weight: str
    transposed: bool
    transpose: onnx.NodeProto | None = None  # the Transpose between them (a rewrite drops it)


def matmul_weight(n: onnx.NodeProto, gi: GraphIndex, direct_only: bool = False) -> MatMulWeight | None:
    """The initializer B of a plain two-input MatMul reads directly; unless ``direct_only``, also
    one read through a Transpose (transpose_feeds_matmuls) and the B of a com.microsoft.FusedMatMul
    that is A @ B or A @ Bᵀ. Any dtype and rank (quantizable_matmuls filters them)."""
    if is_standard(n) and n.op_type == "MatMul" and len(n.input) == 2:
        w = n.input[1]
        if w in gi.inits:
            return MatMulWeight(n, w, False)
        p = gi.producer.get(w)
        if not direct_only and p is not None and p.input and p.input[0] in gi.inits and transpose_feeds_matmuls(p, gi):
            return MatMulWeight(n, p.input[0], True, p)
        return None
    trans_b = None if direct_only else fused_matmul_const_b(n, gi)
    return None if trans_b is None else MatMulWeight(n, n.input[1], trans_b)


# A constant MatMul weight with a side shorter than MatMulNBits' smallest block (16) is not a
# projection: onnxruntime's fusions leave the rotary frequencies as MatMul(positions, inv_freq[1, d/2]).
# Quantizing it saves nothing and puts the rotary angles through int8 activations; both the
# quantizers and the "float weight left" checks (const_weight_matmuls, src/onnx/quantization.ts) skip it.
MIN_PROJECTION_DIM = 16


def quantizable_matmuls(gi: GraphIndex, notes: list[str], direct_only: bool = False) -> dict[str, MatMulWeight]:
    """MatMul output -> its weight, for every MatMul sphana's quantizers rewrite: B a float32
    rank-2 initializer (see matmul_weight). A float weight of another rank is left in float, with a
    note."""
    found: dict[str, MatMulWeight] = {}
    for n in gi.model.graph.node:
        mw = matmul_weight(n, gi, direct_only) if n.output else None
        if mw is None or gi.inits[mw.weight].data_type != TensorProto.FLOAT:
            continue
        dims = list(gi.inits[mw.weight].dims)
        if len(dims) != 2:
            notes.append(f"MatMul {n.name or n.output[0]!r}: weight {mw.weight!r} is rank {len(dims)}; left in float")
            continue
        if min(dims) < MIN_PROJECTION_DIM:
            notes.append(
                f"MatMul {n.name or n.output[0]!r}: weight {mw.weight!r} {dims} is not a projection "
                f"(a side under {MIN_PROJECTION_DIM}, e.g. rotary frequencies); left in float"
            )
            continue
        found[n.output[0]] = mw
    return found


class UnsupportedEmbedding(Exception):
    pass


def float_const_matmul_report(model: onnx.ModelProto) -> list[dict]:
    """MatMul/Gemm nodes in ``model`` whose weight is still a float constant."""
    gi = GraphIndex.build(model)
    rep = []
    for cm in const_weight_matmuls(gi):
        rep.append(
            {
                "node": cm.node.name or cm.node.output[0],
                "op": cm.node.op_type,
                "weight": cm.weight,
                "via": cm.via,
            }
        )
    return rep
