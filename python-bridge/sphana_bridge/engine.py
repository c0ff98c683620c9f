"""Streaming weight quantizer (used for int4 everywhere and for embedding-split).

The input is a *scanned* model (structure only; see modelio). The engine

1. rewrites the graph (MatMul -> ORT dynamic-int8 pattern or MatMulNBits; the token
   embedding -> one quantized table shared by the Gather and the tied LM head),
2. produces the new initializers one at a time, writing every payload >= 1 KiB to a
   staged external data file as soon as it exists (the float source tensor is read,
   quantized and dropped before the next one is touched),
3. writes either a single .onnx (streamed from the staged data file) or an .onnx with
   one ``<name>.data`` file beside it.

int8 numerics are onnxruntime's own: scale / zero point come from
``onnxruntime.quantization.quant_utils.compute_data_quant_params`` /
``compute_scale_zp`` and the values from ``quantize_nparray``; the emitted node
pattern (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(scale product)) is the
one ``quantize_dynamic`` emits. int4 uses onnxruntime's C++ block quantizer
(``quantize_matmul_4bits``, the kernel behind MatMulNBitsQuantizer) and emits
``com.microsoft.MatMulNBits`` with the same layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sphana_bridge import graphutil
from sphana_bridge.modelio import (
    EXTERNAL_MIN_BYTES,
    DataFileWriter,
    ScannedModel,
    TensorReader,
    is_external,
    numel,
    set_external,
    single_file_size,
    tensor_nbytes,
    write_single_file,
)
from sphana_bridge.protocol import ProtoLimitExceeded, QuantizationError

MS_DOMAIN = "com.microsoft"
ROW_CHUNK_BYTES = 8 << 20  # float32 bytes read / processed per numpy step


@dataclass
class EngineOptions:
    precision: str  # "int8" | "int4"
    per_channel: bool = False
    block_size: int = 32
    split_embedding: bool = False
    embedding_bits: int = 8  # 8: per-row int8 table (default for both precisions); 4: GBQ/MatMulNBits
    output_mode: str = "single"  # "single" | "external" | "auto"
    proto_limit: int = 2**31


@dataclass
class Job:
    """Produces some output initializers. ``fn`` returns {name: array}."""

    names: list[str]
    cost: int  # input bytes (for progress)
    fn: Callable[[], dict[str, np.ndarray]] | None = None
    copy_of: TensorProto | None = None  # keep an original initializer as-is
    label: str = ""


@dataclass
class EngineResult:
    external: bool
    size_single: int
    data_bytes: int
    notes: list[str] = field(default_factory=list)
    embedding: dict | None = None
    quantized_weights: int = 0


class _Names:
    def __init__(self, model: onnx.ModelProto):
        used: set[str] = set()

        def walk(g: onnx.GraphProto) -> None:
            used.update(t.name for t in g.initializer)
            used.update(v.name for v in g.input)
            used.update(v.name for v in g.output)
            used.update(v.name for v in g.value_info)
            for n in g.node:
                used.update(n.input)
                used.update(n.output)
                if n.name:
                    used.add(n.name)
                for a in n.attribute:
                    for sg in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                        walk(sg)

        walk(model.graph)
        self.used = used

    def fresh(self, base: str) -> str:
        name = base
        i = 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 0


def _row_chunks(rows: int, row_bytes: int) -> list[tuple[int, int]]:
    step = max(1, ROW_CHUNK_BYTES // max(1, row_bytes))
    return [(r, min(rows, r + step)) for r in range(0, rows, step)]


# ---------------------------------------------------------------------------------------
# weight quantizers (pure functions of a float array)
# ---------------------------------------------------------------------------------------


def quantize_int8_ort(w: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric int8 exactly as onnxruntime's dynamic quantizer does it for a MatMul
    weight (QInt8, reduce_range=False; per-channel = per output column, axis -1)."""
    return quantize_int8_ort_chunks(lambda: iter([(0, w.shape[0], w)]), w.shape, per_channel)


def quantize_int8_ort_chunks(
    chunks: Callable[[], object], shape: tuple[int, ...], per_channel: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as ``quantize_int8_ort`` for a 2-D weight delivered as row chunks by
    ``chunks()`` (called twice: min/max pass, then quantize pass). Uses onnxruntime's
    own ``compute_scale_zp`` / ``quantize_nparray`` so the bytes are identical."""
    from onnxruntime.quantization.quant_utils import (
        compute_scale_zp,
        get_qmin_qmax_for_qType,
        quantize_nparray,
    )

    qt = TensorProto.INT8
    qmin, qmax = get_qmin_qmax_for_qType(qt, reduce_range=False, symmetric=True)
    rows, cols = shape
    cmin = np.full(cols, np.inf, dtype=np.float32)
    cmax = np.full(cols, -np.inf, dtype=np.float32)
    for _r0, _r1, c in chunks():
        c = c.astype(np.float32, copy=False)
        np.minimum(cmin, c.min(axis=0), out=cmin)
        np.maximum(cmax, c.max(axis=0), out=cmax)
    if per_channel:
        scales = np.empty(cols, dtype=np.float32)
        zps = np.empty(cols, dtype=np.int8)
        for j in range(cols):
            zp, sc = compute_scale_zp(np.array(cmin[j]), np.array(cmax[j]), qmin, qmax, True, None)
            scales[j] = sc
            zps[j] = zp
        scale_arr, zp_arr = scales, zps
    else:
        # == compute_data_quant_params(w, INT8, symmetric=True): min/max over the whole tensor
        zp, sc = compute_scale_zp(np.array(cmin.min()), np.array(cmax.max()), qmin, qmax, True, None)
        scale_arr = np.asarray(sc, dtype=np.float32).reshape(())
        zp_arr = np.asarray(zp, dtype=np.int8).reshape(())
    q = np.empty(shape, dtype=np.int8)
    for r0, r1, c in chunks():
        for a0, a1 in _row_chunks(r1 - r0, cols * 4):
            q[r0 + a0 : r0 + a1] = quantize_nparray(qt, c[a0:a1], scale_arr, zp_arr)
    return q, scale_arr, zp_arr


def quantize_int4_blocks(w_kn: np.ndarray, block_size: int, symmetric: bool):
    """Block-wise 4-bit along K for a [K, N] weight, MatMulNBits layout, using ORT's
    C++ kernel. Returns packed [N, kb, bs/2] uint8, scales [N, kb] f32, zp [N, ceil(kb/2)] uint8."""
    return quantize_int4_blocks_chunks(iter([(0, w_kn.shape[0], w_kn)]), w_kn.shape, block_size, symmetric)


def quantize_int4_blocks_chunks(chunks, shape: tuple[int, int], block_size: int, symmetric: bool):
    """Same, for a [K, N] weight delivered as K-row chunks whose starts are multiples of
    2 * block_size (blocks are independent, and two blocks share a zero-point byte, so
    the result is byte-identical to one call on the whole matrix)."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    K, N = shape
    kb = (K + block_size - 1) // block_size
    blob = block_size // 2
    packed = np.zeros((N, kb, blob), dtype=np.uint8)
    scales = np.zeros((N, kb), dtype=np.float32)
    zps = np.zeros((N, (kb + 1) // 2), dtype=np.uint8)
    for r0, r1, rows in chunks:
        if r0 % (2 * block_size):
            raise ValueError("int4 row chunks must start at a multiple of 2*block_size")
        k = r1 - r0
        ckb = (k + block_size - 1) // block_size
        b0 = r0 // block_size
        wc = np.ascontiguousarray(rows, dtype=np.float32)  # [k, N]
        pk = np.zeros((N, ckb, blob), dtype=np.uint8)
        sc = np.zeros((N, ckb), dtype=np.float32)
        zp = np.zeros((N, (ckb + 1) // 2), dtype=np.uint8)
        quantize_matmul_4bits(pk, wc, sc, zp, block_size, N, k, symmetric)
        del wc
        packed[:, b0 : b0 + ckb] = pk
        scales[:, b0 : b0 + ckb] = sc
        zps[:, b0 // 2 : b0 // 2 + zp.shape[1]] = zp
    return packed, scales, zps


def quantize_rows_int8(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 of a [V, H] table, returned TRANSPOSED: q [H, V] and
    scales [V] (float32) so that E[v, h] ~= q[h, v] * scales[v]."""
    return quantize_rows_int8_chunks(lambda: iter([(0, e.shape[0], e)]), e.shape)


def quantize_rows_int8_chunks(chunks: Callable[[], object], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    V, H = shape
    qT = np.empty((H, V), dtype=np.int8)
    scales = np.empty(V, dtype=np.float32)
    for c0, _c1, big in chunks():
        for r0, r1 in _row_chunks(big.shape[0], H * 4):
            chunk = big[r0:r1].astype(np.float32, copy=False)
            absmax = np.abs(chunk).max(axis=1).astype(np.float64)
            sc = (absmax / 127.0).astype(np.float32)
            sc[sc < np.finfo(np.float32).tiny] = 1.0
            q = np.clip(np.round(chunk / sc[:, None]), -127, 127).astype(np.int8)
            qT[:, c0 + r0 : c0 + r1] = q.T
            scales[c0 + r0 : c0 + r1] = sc
    return qT, scales


def embedding_block_size(hidden: int, requested: int) -> int:
    bs = requested
    while bs >= 16:
        if hidden % bs == 0:
            return bs
        bs //= 2
    raise QuantizationError(
        f"int4 embedding needs a block size (power of two >= 16) dividing hidden={hidden}",
        {"hidden": hidden, "blockSize": requested},
    )


# ---------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------


class Engine:
    def __init__(self, scanned: ScannedModel, opts: EngineOptions, progress: Callable[..., None]):
        self.scanned = scanned
        self.reader = TensorReader(scanned)
        self.opts = opts
        self.progress = progress
        self.src = scanned.model
        self.gi = graphutil.GraphIndex.build(self.src)
        self.names = _Names(self.src)
        self.opset = _opset(self.src)
        self.notes: list[str] = []
        self.jobs: list[Job] = []
        self.new_inits_small: list[TensorProto] = []  # tiny constants created while rewriting
        self.embedding: graphutil.EmbeddingInfo | None = None
        self.embedding_summary: dict | None = None
        self.quantized_weights = 0
        if self.opts.precision not in ("int8", "int4"):
            raise QuantizationError(f"unknown precision {self.opts.precision}")
        if self.opts.embedding_bits not in (8, 4):
            raise QuantizationError(f"unsupported embedding bits {self.opts.embedding_bits}")
        if self.opset < 11:
            raise QuantizationError(
                f"model opset {self.opset} is too old for quantization (needs >= 11)", {"opset": self.opset}
            )

    # ---- planning ------------------------------------------------------------------

    def _const(self, base: str, arr: np.ndarray) -> str:
        name = self.names.fresh(base)
        self.new_inits_small.append(numpy_helper.from_array(arr, name))
        return name

    def _node(self, op: str, inputs: list[str], outputs: list[str], base: str, domain: str = "", **attrs):
        return helper.make_node(op, inputs, outputs, name=self.names.fresh(base), domain=domain or None, **attrs)

    def _unsqueeze(self, x: str, axis: int, out: str, base: str) -> onnx.NodeProto:
        if self.opset >= 13:
            return self._node("Unsqueeze", [x, self._const(base + "_axes", np.array([axis], np.int64))], [out], base)
        return self._node("Unsqueeze", [x], [out], base, axes=[axis])

    def plan(self) -> onnx.ModelProto:
        """Build the output graph and the list of tensor jobs."""
        src = self.src
        gi = self.gi
        opts = self.opts
        emb = None
        if opts.split_embedding:
            try:
                emb = graphutil.find_embedding(gi)
            except graphutil.UnsupportedEmbedding as e:
                raise QuantizationError(str(e)) from None
            if emb is None:
                raise QuantizationError(
                    "embedding-split: no token-embedding Gather found (a Gather on a 2-D float "
                    "initializer whose indices come from a graph input such as input_ids)"
                )
            self.embedding = emb

        # MatMuls with a direct rank-2 float32 initializer weight
        targets: dict[str, onnx.NodeProto] = {}
        weight_of: dict[str, str] = {}
        for n in src.graph.node:
            if n.op_type != "MatMul" or n.domain not in ("", "ai.onnx") or len(n.input) != 2:
                continue
            w = n.input[1]
            t = gi.inits.get(w)
            if t is None or t.data_type != TensorProto.FLOAT:
                continue
            if emb is not None and w == emb.table:
                continue
            if len(t.dims) != 2:
                self.notes.append(f"MatMul {n.name or n.output[0]!r}: weight {w!r} is rank {len(t.dims)}; left in float")
                continue
            targets[n.output[0]] = n
            weight_of[n.output[0]] = w

        tied_nodes: dict[str, onnx.NodeProto] = {}
        drop_nodes: set[int] = set()
        gather_nodes: dict[str, onnx.NodeProto] = {}
        if emb is not None:
            for mm, tr in emb.tied_heads:
                tied_nodes[mm.output[0]] = mm
                if tr is not None:
                    drop_nodes.add(id(tr))
            for g in emb.gathers:
                gather_nodes[g.output[0]] = g

        new_nodes: list[onnx.NodeProto] = []
        dql: dict[str, tuple[str, str, str]] = {}  # activation -> (q, scale, zp)
        qweights: dict[str, tuple[str, ...]] = {}  # weight -> output initializer names
        emb_names: tuple[str, ...] | None = None

        def dynamic_quant(a: str) -> tuple[str, str, str]:
            if a not in dql:
                q, s, z = (self.names.fresh(a + suffix) for suffix in ("_quantized", "_scale", "_zero_point"))
                new_nodes.append(self._node("DynamicQuantizeLinear", [a], [q, s, z], a + "_QuantizeLinear"))
                dql[a] = (q, s, z)
            return dql[a]

        def int8_matmul(n: onnx.NodeProto, bq: str, bs_: str, bz: str) -> None:
            aq, as_, az = dynamic_quant(n.input[0])
            base = n.name or n.output[0]
            mi = self.names.fresh(n.output[0] + "_output_quantized")
            cast = self.names.fresh(mi + "_cast_output")
            smul = self.names.fresh(base + "_scales_mul")
            new_nodes.append(self._node("MatMulInteger", [aq, bq, az, bz], [mi], base + "_quant"))
            new_nodes.append(self._node("Cast", [mi], [cast], mi + "_cast", to=TensorProto.FLOAT))
            new_nodes.append(self._node("Mul", [as_, bs_], [smul], base + "_scales_mul"))
            new_nodes.append(self._node("Mul", [cast, smul], [n.output[0]], base + "_output_scale_mul"))

        def embedding_tensors() -> tuple[str, ...]:
            nonlocal emb_names
            if emb_names is None:
                emb_names = self._plan_embedding_job()
            return emb_names

        for n in src.graph.node:
            if id(n) in drop_nodes:
                continue
            out0 = n.output[0] if n.output else ""
            if out0 in targets and targets[out0] is n:
                w = weight_of[out0]
                if w not in qweights:
                    qweights[w] = self._plan_weight_job(w)
                names = qweights[w]
                if opts.precision == "int8":
                    int8_matmul(n, *names)
                else:
                    bq, bsc, bzp = names
                    t = gi.inits[w]
                    K, N = int(t.dims[0]), int(t.dims[1])
                    new_nodes.append(
                        self._node(
                            "MatMulNBits",
                            [n.input[0], bq, bsc, bzp],
                            [out0],
                            (n.name or out0) + "_Q4",
                            domain=MS_DOMAIN,
                            K=K,
                            N=N,
                            bits=4,
                            block_size=opts.block_size,
                        )
                    )
                continue
            if out0 in tied_nodes and tied_nodes[out0] is n:
                names = embedding_tensors()
                if opts.embedding_bits == 8:
                    table, scales = names
                    zp0 = self._const("embedding_zero_point", np.array(0, dtype=np.int8))
                    int8_matmul(n, table, scales, zp0)
                else:
                    table, scales3 = names
                    V, H = emb.vocab, emb.hidden
                    kb = H // self.emb_block
                    s2 = self.names.fresh(scales3 + "_2d")
                    new_nodes.append(
                        self._node(
                            "Reshape",
                            [scales3, self._const("embedding_scales_2d_shape", np.array([V, kb], np.int64))],
                            [s2],
                            "embedding_scales_2d",
                        )
                    )
                    new_nodes.append(
                        self._node(
                            "MatMulNBits",
                            [n.input[0], table, s2],
                            [out0],
                            (n.name or out0) + "_Q4",
                            domain=MS_DOMAIN,
                            K=H,
                            N=V,
                            bits=4,
                            block_size=self.emb_block,
                        )
                    )
                continue
            if out0 in gather_nodes and gather_nodes[out0] is n:
                names = embedding_tensors()
                new_nodes.extend(self._embedding_gather_nodes(n, names))
                continue
            new_nodes.append(n)

        # assemble the output model (initializers are filled in by the jobs)
        model = onnx.ModelProto()  # built fresh: the source is never deep-copied
        for fld in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
            if src.HasField(fld):
                setattr(model, fld, getattr(src, fld))
        model.opset_import.extend(src.opset_import)
        model.metadata_props.extend(src.metadata_props)
        model.functions.extend(src.functions)
        uses_ms = any(n.domain == MS_DOMAIN for n in new_nodes)
        if uses_ms and not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        g = model.graph
        g.name = src.graph.name
        g.doc_string = src.graph.doc_string
        g.node.extend(new_nodes)
        g.output.extend(src.graph.output)
        g.sparse_initializer.extend(src.graph.sparse_initializer)

        # which original initializers are still referenced?
        referenced: set[str] = set(v.name for v in src.graph.output)
        for n in new_nodes:
            referenced.update(i for i in n.input if i)
            for a in n.attribute:
                for sg in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    referenced |= graphutil._subgraph_free_inputs(sg)
        kept_inits = [t for t in src.graph.initializer if t.name in referenced]
        kept_names = {t.name for t in kept_inits}
        dropped = {t.name for t in src.graph.initializer} - kept_names
        g.input.extend(v for v in src.graph.input if v.name not in dropped)
        produced = {o for n in new_nodes for o in n.output} | {v.name for v in g.input}
        g.value_info.extend(v for v in src.graph.value_info if v.name in produced)

        copy_jobs = [Job(names=[t.name], cost=tensor_nbytes(t), copy_of=t, label=t.name) for t in kept_inits]
        # order: originals first (as in the source), then the new tensors
        self.jobs = copy_jobs + self.jobs
        for t in self.new_inits_small:
            self.jobs.append(Job(names=[t.name], cost=0, copy_of=t, label=t.name))
        self.quantized_weights = len(qweights)
        return model

    def _plan_weight_job(self, w: str) -> tuple[str, ...]:
        t = self.gi.inits[w]
        opts = self.opts
        if opts.precision == "int8":
            q, s, z = (self.names.fresh(w + sfx) for sfx in ("_quantized", "_scale", "_zero_point"))

            def fn(t=t, q=q, s=s, z=z):
                shape = (int(t.dims[0]), int(t.dims[1]))
                qa, sa, za = quantize_int8_ort_chunks(
                    lambda: self.reader.iter_rows(t, ROW_CHUNK_BYTES), shape, opts.per_channel
                )
                return {q: qa, s: sa, z: za}

            self.jobs.append(Job(names=[q, s, z], cost=tensor_nbytes(t), fn=fn, label=w))
            return q, s, z
        q, s, z = (self.names.fresh(w + sfx) for sfx in ("_Q4", "_scales", "_zero_points"))

        def fn4(t=t, q=q, s=s, z=z):
            shape = (int(t.dims[0]), int(t.dims[1]))
            bs = opts.block_size
            pk, sc, zp = quantize_int4_blocks_chunks(
                self.reader.iter_rows(t, ROW_CHUNK_BYTES, multiple=2 * bs), shape, bs, symmetric=False
            )
            return {q: pk, s: sc, z: zp}

        self.jobs.append(Job(names=[q, s, z], cost=tensor_nbytes(t), fn=fn4, label=w))
        return q, s, z

    def _plan_embedding_job(self) -> tuple[str, ...]:
        emb = self.embedding
        assert emb is not None
        t = self.gi.inits[emb.table]
        V, H = emb.vocab, emb.hidden
        if self.opts.embedding_bits == 8:
            table = self.names.fresh(emb.table + "_int8_T")
            scales = self.names.fresh(emb.table + "_row_scales")

            def fn():
                qT, sc = quantize_rows_int8_chunks(lambda: self.reader.iter_rows(t, ROW_CHUNK_BYTES), (V, H))
                return {table: qT, scales: sc}

            self.jobs.append(Job(names=[table, scales], cost=tensor_nbytes(t), fn=fn, label=emb.table))
            self.embedding_summary = {
                "table": emb.table,
                "vocab": V,
                "hidden": H,
                "tied": bool(emb.tied_heads),
                "gathers": len(emb.gathers),
                "tiedHeads": len(emb.tied_heads),
                "quantizedTable": table,
                "layout": "int8 [hidden, vocab] (transposed), symmetric per-token scales [vocab]",
                "scales": scales,
            }
            return table, scales
        bs = embedding_block_size(H, self.opts.block_size)
        self.emb_block = bs
        if bs != self.opts.block_size:
            self.notes.append(f"embedding block size {bs} (hidden {H} is not a multiple of {self.opts.block_size})")
        kb = H // bs
        table = self.names.fresh(emb.table + "_Q4")
        scales3 = self.names.fresh(emb.table + "_scales")

        def fn4():
            pk, sc = quantize_int4_blocks_rows(self.reader.iter_rows(t, ROW_CHUNK_BYTES), (V, H), bs)
            return {table: pk, scales3: sc.reshape(V, kb, 1)}

        self.jobs.append(Job(names=[table, scales3], cost=tensor_nbytes(t), fn=fn4, label=emb.table))
        self.embedding_summary = {
            "table": emb.table,
            "vocab": V,
            "hidden": H,
            "tied": bool(emb.tied_heads),
            "gathers": len(emb.gathers),
            "tiedHeads": len(emb.tied_heads),
            "quantizedTable": table,
            "layout": f"uint8 [vocab, {kb}, {bs // 2}] symmetric 4-bit blocks of {bs} (MatMulNBits layout), scales [vocab, {kb}, 1]",
            "scales": scales3,
            "blockSize": bs,
        }
        return table, scales3

    def _embedding_gather_nodes(self, n: onnx.NodeProto, names: tuple[str, ...]) -> list[onnx.NodeProto]:
        emb = self.embedding
        assert emb is not None
        ids = n.input[1]
        out = n.output[0]
        H = emb.hidden
        base = n.name or out
        nodes = []
        ids_shape = self.names.fresh(base + "_ids_shape")
        nodes.append(self._node("Shape", [ids], [ids_shape], base + "_ids_shape"))
        out_shape = self.names.fresh(base + "_out_shape")
        nodes.append(
            self._node(
                "Concat",
                [ids_shape, self._const(base + "_hidden", np.array([H], np.int64))],
                [out_shape],
                base + "_out_shape",
                axis=0,
            )
        )
        if self.opts.embedding_bits == 8:
            table, scales = names
            flat = self.names.fresh(base + "_ids_flat")
            nodes.append(
                self._node("Reshape", [ids, self._const(base + "_minus1", np.array([-1], np.int64))], [flat], base + "_ids_flat")
            )
            rows_t = self.names.fresh(base + "_rows_int8_T")
            nodes.append(self._node("Gather", [table, flat], [rows_t], base + "_gather_int8", axis=1))
            rows = self.names.fresh(base + "_rows_int8")
            nodes.append(self._node("Transpose", [rows_t], [rows], base + "_rows_transpose", perm=[1, 0]))
            rows_f = self.names.fresh(base + "_rows_float")
            nodes.append(self._node("Cast", [rows], [rows_f], base + "_rows_cast", to=TensorProto.FLOAT))
            sc = self.names.fresh(base + "_row_scales")
            nodes.append(self._node("Gather", [scales, flat], [sc], base + "_gather_scales", axis=0))
            sc2 = self.names.fresh(base + "_row_scales_2d")
            nodes.append(self._unsqueeze(sc, 1, sc2, base + "_row_scales_2d"))
            deq = self.names.fresh(base + "_rows_dequant")
            nodes.append(self._node("Mul", [rows_f, sc2], [deq], base + "_rows_dequant"))
            nodes.append(self._node("Reshape", [deq, out_shape], [out], base + "_reshape"))
        else:
            table, scales3 = names
            g = self.names.fresh(base + "_gbq")
            nodes.append(
                self._node(
                    "GatherBlockQuantized",
                    [table, ids, scales3],
                    [g],
                    base + "_Q4",
                    domain=MS_DOMAIN,
                    bits=4,
                    block_size=self.emb_block,
                    gather_axis=0,
                    quantize_axis=2,
                )
            )
            nodes.append(self._node("Reshape", [g, out_shape], [out], base + "_reshape"))
        return nodes

    # ---- execution -----------------------------------------------------------------

    def execute(self, model: onnx.ModelProto, data_path: str, onnx_path: str) -> EngineResult:
        opts = self.opts
        writer = DataFileWriter(data_path)
        total_cost = sum(j.cost for j in self.jobs) or 1
        done = 0
        inits: list[TensorProto] = []
        try:
            for j in self.jobs:
                if j.copy_of is not None:
                    inits.append(self._copy_tensor(j.copy_of, writer))
                else:
                    arrays = j.fn()
                    for name in j.names:
                        arr = arrays.pop(name)
                        inits.append(self._emit_array(name, arr, writer))
                        del arr
                    del arrays
                done += j.cost
                if j.cost:
                    self.progress("quantize", done / total_cost, f"{j.label}")
        finally:
            writer.close()
        model.graph.initializer.extend(inits)
        location = os.path.basename(data_path)
        size_single = single_file_size(model, location)
        data_bytes = writer.pos
        mode = opts.output_mode
        if mode == "auto":
            mode = "single" if size_single <= opts.proto_limit else "external"
            if mode == "external":
                self.notes.append(
                    f"output would be {size_single} bytes as a single file (> protoLimitBytes {opts.proto_limit}); "
                    "wrote external data"
                )
        self.progress("write", None, f"writing {'single file' if mode == 'single' else 'model + external data'}")
        if mode == "single":
            if size_single > opts.proto_limit:
                raise ProtoLimitExceeded(
                    f"quantized model is {size_single} bytes as a single file, above protoLimitBytes {opts.proto_limit}",
                    {"actualBytes": size_single, "limitBytes": opts.proto_limit},
                )
            write_single_file(model, data_path, onnx_path)
            os.remove(data_path)
            external = False
        else:
            with open(onnx_path, "wb") as f:
                f.write(model.SerializeToString())
            external = True
        return EngineResult(
            external=external,
            size_single=size_single,
            data_bytes=data_bytes,
            notes=self.notes,
            embedding=self.embedding_summary,
            quantized_weights=self.quantized_weights,
        )

    def _emit_array(self, name: str, arr: np.ndarray, writer: DataFileWriter) -> TensorProto:
        if arr.nbytes < EXTERNAL_MIN_BYTES:
            return numpy_helper.from_array(np.ascontiguousarray(arr), name)
        t = TensorProto()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        off, length = writer.append_array(arr)
        set_external(t, writer.location, off, length)
        return t

    def _copy_tensor(self, src: TensorProto, writer: DataFileWriter) -> TensorProto:
        if not is_external(src):
            t = TensorProto()
            t.CopyFrom(src)
            return t
        length = self.reader.payload_len(src)
        t = TensorProto()
        t.CopyFrom(src)
        if length < EXTERNAL_MIN_BYTES:
            data = b"".join(self.reader.read_bytes_chunks(src))
            t.ClearField("data_location")
            del t.external_data[:]
            t.raw_data = data
            return t
        off, n = writer.append_chunks(self.reader.read_bytes_chunks(src), length)
        set_external(t, writer.location, off, n)
        return t


def quantize_int4_blocks_rows(chunks, shape: tuple[int, int], block_size: int):
    """Symmetric 4-bit blocks of a [V, H] table (delivered as row chunks) in MatMulNBits
    layout for N=V, K=H, i.e. the layout of E^T as a MatMul weight."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    V, H = shape
    kb = (H + block_size - 1) // block_size
    blob = block_size // 2
    packed = np.zeros((V, kb, blob), dtype=np.uint8)
    scales = np.zeros((V, kb), dtype=np.float32)
    for c0, c1, big in chunks:
        w = np.ascontiguousarray(big.T, dtype=np.float32)  # [K=H, N=c1-c0]
        n = c1 - c0
        pk = np.zeros((n, kb, blob), dtype=np.uint8)
        sc = np.zeros((n, kb), dtype=np.float32)
        zp = np.zeros((n, (kb + 1) // 2), dtype=np.uint8)
        quantize_matmul_4bits(pk, w, sc, zp, block_size, n, H, True)
        packed[c0:c1], scales[c0:c1] = pk, sc
        del w
    return packed, scales


def estimate_direct_bytes(scanned: ScannedModel, precision: str, block_size: int, stock_int8: bool) -> int:
    """Rough serialized size of a single-file output (used to fail fast)."""
    model = scanned.model
    gi = graphutil.GraphIndex.build(model)
    lazy_payload = 0
    for t in model.graph.initializer:
        if is_external(t):
            lazy_payload += tensor_nbytes(t)
    skeleton = max(0, scanned.file_bytes - (0 if scanned.has_external_data else lazy_payload))
    skeleton = max(skeleton, 1024)
    quantized: dict[str, int] = {}
    only_quantized_use: dict[str, bool] = {}
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm") or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            continue
        w = n.input[1]
        t = gi.inits.get(w)
        if t is None or t.data_type != TensorProto.FLOAT:
            continue
        if precision == "int4" and (n.op_type != "MatMul" or len(t.dims) != 2):
            continue
        if precision == "int8" and not stock_int8 and len(t.dims) != 2:
            continue
        n_el = numel(t)
        if precision == "int8":
            q = n_el + 64
        else:
            K, N = int(t.dims[0]), int(t.dims[1])
            kb = (K + block_size - 1) // block_size
            q = N * kb * (block_size // 2) + N * kb * 4 + N * ((kb + 1) // 2) + 64
        quantized[w] = q
    for w in quantized:
        only_quantized_use[w] = all(
            c.op_type in ("MatMul", "Gemm") and i == 1 for c, i in gi.consumers.get(w, [])
        )
    total = skeleton
    for t in model.graph.initializer:
        b = tensor_nbytes(t)
        if t.name in quantized:
            total += quantized[t.name] + (0 if only_quantized_use[t.name] else b)
        else:
            total += b
    return int(total)
