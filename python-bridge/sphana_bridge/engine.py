"""Streaming weight quantizer (every bridge quantization except the dynamic int8 scheme's
``int8Engine: "ort"``).

The input is a *scanned* model (structure only; see modelio). The engine

1. rewrites the graph: weight-only (default; int8 and int4): every MatMul with a constant weight
   (direct, through a Transpose, or a com.microsoft.FusedMatMul) -> com.microsoft.MatMulNBits,
   the LM head included, and the token embedding -> GatherBlockQuantized whose table a tied
   head's MatMulNBits reads too; dynamic int8: MatMul -> DynamicQuantizeLinear + MatMulInteger,
   and with embedding-split one per-row int8 table shared by the Gather and the tied head,
2. produces the new initializers one at a time, writing every payload >= 1 KiB to a
   staged external data file as soon as it exists (the float source tensor is read,
   quantized and dropped before the next one is touched),
3. writes either a single .onnx (streamed from the staged data file) or an .onnx with
   one ``<name>.data`` file beside it.

Weight-only numerics are onnxruntime's C++ block quantizers (``quantize_matmul_8bits`` /
``quantize_matmul_4bits``, the kernels behind MatMulNBitsQuantizer: same bytes) or its HQQ
solver. Dynamic int8 numerics are onnxruntime's own: scale / zero point from
``onnxruntime.quantization.quant_utils.compute_scale_zp`` and the values from
``quantize_nparray``; the node pattern (DynamicQuantizeLinear -> MatMulInteger -> Cast ->
Mul(scale product)) is the one ``quantize_dynamic`` emits.
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
    # weight-only: the token embedding as blocks of this many bits (GatherBlockQuantized,
    # shared with a tied head's MatMulNBits); dynamic int8: 8 = per-row int8 table
    embedding_bits: int = 8
    output_mode: str = "single"  # "single" | "external" | "auto"
    proto_limit: int = 2**31
    # "weight-only": every constant-weight MatMul -> com.microsoft.MatMulNBits (int8: bits 8,
    # int4: bits 4), the LM head and the token embedding included, in every strategy.
    # "dynamic" (int8 only): DynamicQuantizeLinear + MatMulInteger (onnxruntime quantize_dynamic).
    scheme: str = "weight-only"
    accuracy_level: int = 4  # MatMulNBits accuracy_level (4 = int8 activations, 0 = float)
    head_accuracy_level: int | None = None  # LM head's level when it differs (kept at higher precision)
    head_bits: int | None = None  # LM head bits (untied head; a tied head follows embedding_bits)
    # level of the MatMuls fed by a product of two activations (a gated MLP's down projection,
    # where activation outliers are largest), when it differs
    gated_accuracy_level: int | None = None
    gated_bits: int | None = None  # int4: bits of those down projections (8 = mixed precision)
    symmetric: bool = False  # int4 body blocks: symmetric (no zero points) or asymmetric
    # int4 body: "rtn" (onnxruntime's block quantizer, integer zero points) | "rtn-float-zp"
    # (round-to-nearest min/max blocks with float zero points: llama.cpp's Q4_1 scheme) | "hqq"
    algorithm: str = "rtn"
    # weight-only: SmoothQuant-style activation equalization folded into the float graph
    # before quantizing (see equalize.py): alpha, and the calibration token ids it measures on
    equalize_alpha: float | None = None
    calibration_ids: list[list[int]] | None = None
    calibration_threads: int = 0

    @property
    def weight_only(self) -> bool:
        return self.precision == "int4" or self.scheme == "weight-only"

    @property
    def body_bits(self) -> int:
        return 8 if self.precision == "int8" else 4


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
    head: dict | None = None
    equalized: dict | None = None


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


def _embedding_node_maps(
    emb: graphutil.EmbeddingInfo | None,
) -> tuple[dict[str, onnx.NodeProto], set[int], dict[str, onnx.NodeProto]]:
    """The nodes the embedding rewrite replaces, by output: the tied head MatMuls, the ids of
    the Transposes feeding them (dropped), and the token Gathers."""
    tied: dict[str, onnx.NodeProto] = {}
    drop: set[int] = set()
    gathers: dict[str, onnx.NodeProto] = {}
    if emb is not None:
        for mm, tr in emb.tied_heads:
            tied[mm.output[0]] = mm
            if tr is not None:
                drop.add(id(tr))
        for g in emb.gathers:
            gathers[g.output[0]] = g
    return tied, drop, gathers


def _embedding_summary(emb: graphutil.EmbeddingInfo, table: str) -> dict:
    """The summary keys every embedding rewrite reports (its own layout keys follow)."""
    return {
        "table": emb.table,
        "vocab": emb.vocab,
        "hidden": emb.hidden,
        "tied": bool(emb.tied_heads),
        "gathers": len(emb.gathers),
        "tiedHeads": len(emb.tied_heads),
        "quantizedTable": table,
    }


def _row_chunks(rows: int, row_bytes: int) -> list[tuple[int, int]]:
    step = max(1, ROW_CHUNK_BYTES // max(1, row_bytes))
    return [(r, min(rows, r + step)) for r in range(0, rows, step)]


# ---------------------------------------------------------------------------------------
# weight quantizers (pure functions of a float array)
# ---------------------------------------------------------------------------------------


def quantize_int8_ort_chunks(
    chunks: Callable[[], object], shape: tuple[int, ...], per_channel: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric int8 exactly as onnxruntime's dynamic quantizer does it for a MatMul weight
    (QInt8, reduce_range=False; per-channel = per output column, axis -1), for a 2-D weight
    delivered as row chunks by ``chunks()`` (called twice: min/max pass, then quantize pass).
    Uses onnxruntime's own ``compute_scale_zp`` / ``quantize_nparray`` so the bytes are identical."""
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


_BLOCK_KERNELS = {4: "quantize_matmul_4bits", 8: "quantize_matmul_8bits"}


def _block_kernel(w_kn: np.ndarray, block_size: int, bits: int, symmetric: bool):
    """One call of onnxruntime's C++ block quantizer on a [K, N] weight: packed [N, kb,
    bs*bits/8] uint8, scales [N, kb] f32, zero points [N, ceil(kb*bits/8)] uint8."""
    from onnxruntime.capi import _pybind_state

    kernel = getattr(_pybind_state, _BLOCK_KERNELS[bits])
    w = np.ascontiguousarray(w_kn, dtype=np.float32)
    K, N = w.shape
    pk, sc, zp = _block_buffers(K, N, block_size, bits)
    kernel(pk, w, sc, zp, block_size, N, K, symmetric)
    return pk, sc, zp


def _block_buffers(K: int, N: int, block_size: int, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zeroed MatMulNBits tensors for a [K, N] weight: packed [N, kb, bs*bits/8] uint8, scales
    [N, kb] f32, zero points [N, ceil(kb*bits/8)] uint8 (8 // bits zero points a byte)."""
    per = 8 // bits
    kb = (K + block_size - 1) // block_size
    return (
        np.zeros((N, kb, block_size * bits // 8), dtype=np.uint8),
        np.zeros((N, kb), dtype=np.float32),
        np.zeros((N, (kb + per - 1) // per), dtype=np.uint8),
    )


def quantize_blocks_chunks(chunks, shape: tuple[int, int], block_size: int, bits: int, symmetric: bool):
    """Block-wise ``bits`` along K for a [K, N] weight in MatMulNBits layout, with ORT's C++
    kernel (the one MatMulNBitsQuantizer uses), from K-row chunks starting at multiples of
    2 * block_size (blocks are independent; two 4-bit zero points share a byte), so the bytes
    equal one call on the whole matrix. Returns packed [N, kb, bs*bits/8] uint8, scales
    [N, kb] f32, zero points [N, ceil(kb*bits/8)] uint8 (unused when symmetric)."""
    per = 8 // bits
    K, N = shape
    packed, scales, zps = _block_buffers(K, N, block_size, bits)
    for r0, r1, rows in chunks:
        if r0 % (2 * block_size):
            raise ValueError("block row chunks must start at a multiple of 2*block_size")
        k = r1 - r0
        ckb = (k + block_size - 1) // block_size
        b0 = r0 // block_size
        pk, sc, zp = _block_kernel(rows, block_size, bits, symmetric)  # rows: [k, N]
        packed[:, b0 : b0 + ckb] = pk
        scales[:, b0 : b0 + ckb] = sc
        zps[:, b0 // per : b0 // per + zp.shape[1]] = zp
    return packed, scales, zps


def quantize_blocks_rows(chunks, shape: tuple[int, int], block_size: int, bits: int, symmetric: bool):
    """The same layout for a weight stored TRANSPOSED, [N, K] (a tied head's embedding table,
    a Transpose-fed MatMul), delivered as N-row chunks: each chunk is the MatMulNBits weight
    of N columns, so it is quantized on its own and the bytes equal one call on W = T^T."""
    N, K = shape
    packed, scales, zps = _block_buffers(K, N, block_size, bits)
    for c0, c1, big in chunks:
        packed[c0:c1], scales[c0:c1], zps[c0:c1] = _block_kernel(big.T, block_size, bits, symmetric)  # [K, n]
    return packed, scales, zps


def _float_zp_kernel(w_kn: np.ndarray, block_size: int, bits: int):
    """Round-to-nearest with a FLOAT zero point per block (llama.cpp's Q4_1 scheme): per block
    of ``block_size`` along K, scale = (max - min) / (2^bits - 1), zero point = -min / scale
    (a float), q = round((w - min) / scale) in 0..2^bits-1, so MatMulNBits' (q - zp) * scale
    spans exactly [min, max]. A constant block gets scale 1 (q = 0 reproduces it). For a [K, N]
    weight: packed [N, kb, bs*bits/8] uint8 (low nibble = even K index), scales and zero
    points [N, kb] f32. A final partial block is padded with its last row (min/max unchanged)."""
    K, N = w_kn.shape
    kb = (K + block_size - 1) // block_size
    w = np.asarray(w_kn, dtype=np.float32)
    if kb * block_size != K:
        w = np.pad(w, ((0, kb * block_size - K), (0, 0)), mode="edge")
    blocks = np.ascontiguousarray(w.T).reshape(N, kb, block_size)  # [N, kb, bs]
    lo = blocks.min(axis=2)
    hi = blocks.max(axis=2)
    levels = (1 << bits) - 1
    scale = (hi - lo) / np.float32(levels)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    zp = (-lo / scale).astype(np.float32)
    q = np.rint((blocks - lo[..., None]) / scale[..., None])
    np.clip(q, 0, levels, out=q)
    q = q.astype(np.uint8)
    if bits == 4:
        q = q[..., 0::2] | (q[..., 1::2] << 4)
    return q, scale, zp


def _float_zp_buffers(N: int, K: int, block_size: int, bits: int):
    """Outputs of a float-zero-point quantizer: packed [N, kb, bs*bits/8] uint8, scales and
    zero points [N, kb] float32."""
    kb = (K + block_size - 1) // block_size
    return (
        np.zeros((N, kb, block_size * bits // 8), dtype=np.uint8),
        np.zeros((N, kb), dtype=np.float32),
        np.zeros((N, kb), dtype=np.float32),
    )


def quantize_float_zp_chunks(chunks, shape: tuple[int, int], block_size: int, bits: int):
    """``_float_zp_kernel`` over K-row chunks of a [K, N] weight (chunks start at multiples of
    block_size), so memory stays one chunk plus the outputs; bytes equal one call on the
    whole matrix. Returns packed [N, kb, bs*bits/8], scales [N, kb], zero points [N, kb]."""
    K, N = shape
    packed, scales, zps = _float_zp_buffers(N, K, block_size, bits)
    for r0, r1, rows in chunks:
        if r0 % block_size:
            raise ValueError("block row chunks must start at a multiple of block_size")
        b0 = r0 // block_size
        pk, sc, zp = _float_zp_kernel(rows, block_size, bits)
        b1 = b0 + pk.shape[1]
        packed[:, b0:b1], scales[:, b0:b1], zps[:, b0:b1] = pk, sc, zp
    return packed, scales, zps


def quantize_float_zp_rows(chunks, shape: tuple[int, int], block_size: int, bits: int):
    """The same for a weight stored TRANSPOSED, [N, K], delivered as N-row chunks."""
    N, K = shape
    packed, scales, zps = _float_zp_buffers(N, K, block_size, bits)
    for c0, c1, big in chunks:
        packed[c0:c1], scales[c0:c1], zps[c0:c1] = _float_zp_kernel(big.T, block_size, bits)
    return packed, scales, zps


def quantize_hqq(w_kn: np.ndarray, block_size: int, bits: int):
    """Half-quadratic quantization (onnxruntime's HQQWeightOnlyQuantizer numerics: asymmetric
    blocks along K, float zero points refined by its proximal solver) of a [K, N] weight, in
    MatMulNBits layout: packed [N, kb, bs*bits/8], scales [N*kb] f32, zero points [N*kb] f32."""
    import torch
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, HQQWeightOnlyQuantizer

    K, N = w_kn.shape
    hq = HQQWeightOnlyQuantizer(HQQWeightOnlyQuantConfig(block_size=block_size, bits=bits))
    wt = torch.from_numpy(np.ascontiguousarray(w_kn))
    q, sc, zp = hq.quantize_internal(wt.T, bits=bits, group_size=block_size)
    q = q.contiguous()
    per = 8 // bits
    packed = torch.zeros((q.shape[0], q.shape[1] // per), dtype=torch.uint8)
    hq.pack_on_row_fast_248bit(packed, q, bits)
    kb = (K + block_size - 1) // block_size
    return (
        packed.numpy().reshape(N, kb, block_size * bits // 8),
        sc.contiguous().numpy().reshape(-1).astype(np.float32),
        zp.contiguous().numpy().reshape(-1).astype(np.float32),
    )


def quantize_rows_int8_chunks(chunks: Callable[[], object], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 of a [V, H] table delivered as row chunks, returned TRANSPOSED:
    q [H, V] and scales [V] (float32) so that E[v, h] ~= q[h, v] * scales[v]."""
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
        self.head_summary: dict | None = None
        self.emb_block = opts.block_size
        # equalization (weight name -> row multipliers / column divisors; 1-D constant -> divisor)
        self.row_scale: dict[str, np.ndarray] = {}
        self.col_scale: dict[str, np.ndarray] = {}
        self.gamma_div: dict[str, np.ndarray] = {}
        self.equalized: dict | None = None
        if self.opts.precision not in ("int8", "int4"):
            raise QuantizationError(f"unknown precision {self.opts.precision}")
        if self.opts.embedding_bits not in (8, 4):
            raise QuantizationError(f"unsupported embedding bits {self.opts.embedding_bits}")
        if self.opts.scheme not in ("weight-only", "dynamic"):
            raise QuantizationError(f"unknown int8 scheme {self.opts.scheme}")
        if (
            self.opts.accuracy_level not in range(5)
            or self.opts.head_accuracy_level not in (None, *range(5))
            or self.opts.gated_accuracy_level not in (None, *range(5))
        ):
            raise QuantizationError("accuracy level must be 0..4")
        if self.opts.head_bits not in (None, 8, 4) or self.opts.algorithm not in ("rtn", "rtn-float-zp", "hqq"):
            raise QuantizationError("head bits must be 8 or 4; algorithm rtn, rtn-float-zp or hqq")
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
        new_nodes = self._rewrite_weight_only() if self.opts.weight_only else self._rewrite_dynamic()
        return self._assemble(new_nodes)

    def _rewrite_dynamic(self) -> list[onnx.NodeProto]:
        """int8 dynamic scheme: DynamicQuantizeLinear + MatMulInteger (embedding-split: a
        per-row int8 table shared by the Gather and the tied head)."""
        src = self.src
        gi = self.gi
        opts = self.opts
        emb = None
        if opts.split_embedding:
            emb = self.embedding = self._required_embedding()

        # MatMuls with a direct rank-2 float32 initializer weight
        found = graphutil.quantizable_matmuls(gi, self.notes, direct_only=True)
        targets = {out: m.node for out, m in found.items() if emb is None or m.weight != emb.table}
        weight_of = {out: found[out].weight for out in targets}

        tied_nodes, drop_nodes, gather_nodes = _embedding_node_maps(emb)

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
                int8_matmul(n, *names)
                continue
            if out0 in tied_nodes and tied_nodes[out0] is n:
                table, scales = embedding_tensors()
                zp0 = self._const("embedding_zero_point", np.array(0, dtype=np.int8))
                int8_matmul(n, table, scales, zp0)
                continue
            if out0 in gather_nodes and gather_nodes[out0] is n:
                names = embedding_tensors()
                new_nodes.extend(self._embedding_gather_nodes(n, names))
                continue
            new_nodes.append(n)
        self.quantized_weights = len(qweights)
        return new_nodes

    def _assemble(self, new_nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
        """The output model around the rewritten nodes (initializers are filled in by the jobs)."""
        src = self.src
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

        copy_jobs = [
            self._scaled_constant_job(t) if t.name in self.gamma_div
            else Job(names=[t.name], cost=tensor_nbytes(t), copy_of=t, label=t.name)
            for t in kept_inits
        ]
        # order: originals first (as in the source), then the new tensors
        self.jobs = copy_jobs + self.jobs
        for t in self.new_inits_small:
            self.jobs.append(Job(names=[t.name], cost=0, copy_of=t, label=t.name))
        return model

    def _scaled_constant_job(self, t: TensorProto) -> Job:
        """A 1-D constant (a norm weight) divided by its equalization scales."""
        s = self.gamma_div[t.name]

        def fn():
            return {t.name: (self.reader.read_array(t).astype(np.float32) / s).astype(np.float32)}

        return Job(names=[t.name], cost=tensor_nbytes(t), fn=fn, label=t.name)

    # ---- weight-only (MatMulNBits) ---------------------------------------------------

    def _required_embedding(self) -> graphutil.EmbeddingInfo:
        """embedding-split's token embedding: found, or the quantization fails."""
        try:
            emb = graphutil.find_embedding(self.gi)
        except graphutil.UnsupportedEmbedding as e:
            raise QuantizationError(str(e)) from None
        if emb is None:
            raise QuantizationError(
                "embedding-split: no token-embedding Gather found (a Gather on a 2-D float "
                "initializer whose indices come from a graph input such as input_ids)"
            )
        return emb

    def _find_embedding_weight_only(self) -> graphutil.EmbeddingInfo | None:
        """Every weight-only strategy quantizes the token embedding (its table is shared by
        the Gather and a tied head); only embedding-split insists on finding one."""
        if self.opts.split_embedding:
            return self._required_embedding()
        try:
            return graphutil.find_embedding(self.gi)
        except graphutil.UnsupportedEmbedding as e:
            self.notes.append(f"token embedding left in float: {e}")
            return None

    def _head_outputs(self) -> set[str]:
        """Outputs of MatMuls that produce a graph output (through layout-only ops): the LM head."""
        gi = self.gi
        heads: set[str] = set()
        for n in self.src.graph.node:
            if n.op_type not in ("MatMul", "FusedMatMul") or not n.output:
                continue
            name, hops = n.output[0], 0
            while hops < 4:
                if name in gi.graph_outputs:
                    heads.add(n.output[0])
                    break
                users = gi.consumers.get(name, [])
                if len(users) != 1 or users[0][0].op_type not in graphutil.PASS_THROUGH_OPS:
                    break
                name = users[0][0].output[0]
                hops += 1
        return heads

    def _gated_inputs(self) -> set[str]:
        """Activations made by a Mul of two non-constant tensors (silu(gate) * up in a gated
        MLP): the MatMuls reading them are the down projections. Found by structure, not name."""
        gi = self.gi
        out: set[str] = set()
        for n in self.src.graph.node:
            if n.op_type == "Mul" and n.domain in ("", "ai.onnx") and len(n.input) == 2 and n.output:
                if all(i not in gi.inits and gi.trace_const(i) is None for i in n.input):
                    out.add(n.output[0])
        return out

    def _mnb_node(self, x: str, out: str, names: tuple[str, ...], K: int, N: int, bits: int, block: int,
                  level: int, base: str) -> onnx.NodeProto:
        inputs = [x, names[0], names[1]] + ([names[2]] if len(names) > 2 and names[2] else [])
        attrs = dict(K=K, N=N, bits=bits, block_size=block)
        if level:
            attrs["accuracy_level"] = level
        return self._node("MatMulNBits", inputs, [out], base + f"_Q{bits}", domain=MS_DOMAIN, **attrs)

    def _offset_nodes(self, x: str, codes: str, out: str, offsets: str, K: int, bs: int, base: str,
                      block_sums: dict[tuple[str, int, int], str]) -> list[onnx.NodeProto]:
        """rtn-float-zp's float zero points, kept out of MatMulNBits (onnxruntime 1.30 runs float
        zero points 5x slower than fp32 at every level; bench/results/int8.md): W = s(q - z) =
        s(q - 2^(bits-1)) + s(2^(bits-1) - z), so the output is the symmetric MatMulNBits of the
        codes plus the per-block sums of x (Reshape [.., kb, bs] + ReduceSum) times the offsets
        O [kb, N] (a float MatMul 1/bs the size of the weight; exact). One block-sum per input."""
        nodes: list[onnx.NodeProto] = []
        key = (x, K, bs)
        if key not in block_sums:
            if K % bs:
                raise QuantizationError(
                    f"rtn-float-zp needs the input size K={K} to be a multiple of the block size {bs}",
                    {"hint": "use a block size that divides it, or --int4-algorithm rtn"},
                )
            kb = K // bs
            blocks, sums = self.names.fresh(x + "_blocks"), self.names.fresh(x + "_block_sums")
            flat, lead, full, shp = (self.names.fresh(x + sfx) for sfx in ("_flat_sums", "_lead_shape", "_sums_shape", "_shape"))
            # [.., K] -> [rows, kb, bs] -> sums [rows, kb] -> [.., kb] (any rank of x)
            nodes.append(self._node("Shape", [x], [shp], base + "_shape"))
            nodes.append(self._node("Slice", [shp, self._const(base + "_zero", np.array([0], np.int64)),
                                              self._const(base + "_minus1", np.array([-1], np.int64))], [lead], base + "_lead"))
            nodes.append(self._node("Reshape", [x, self._const(base + "_block_shape", np.array([-1, kb, bs], np.int64))], [blocks], base + "_blocks"))
            if self.opset >= 13:
                nodes.append(self._node("ReduceSum", [blocks, self._const(base + "_sum_axes", np.array([-1], np.int64))], [flat],
                                        base + "_block_sum", keepdims=0))
            else:
                nodes.append(self._node("ReduceSum", [blocks], [flat], base + "_block_sum", axes=[-1], keepdims=0))
            nodes.append(self._node("Concat", [lead, self._const(base + "_kb", np.array([kb], np.int64))], [full], base + "_sums_shape", axis=0))
            nodes.append(self._node("Reshape", [flat, full], [sums], base + "_sums"))
            block_sums[key] = sums
        corr = self.names.fresh(out + "_offsets")
        nodes.append(self._node("MatMul", [block_sums[key], offsets], [corr], base + "_offsets"))
        nodes.append(self._node("Add", [codes, corr], [out], base + "_add_offsets"))
        return nodes

    def _rewrite_weight_only(self) -> list[onnx.NodeProto]:
        src, gi, opts = self.src, self.gi, self.opts
        emb = self._find_embedding_weight_only()
        self.embedding = emb
        heads = self._head_outputs()
        gated = self._gated_inputs() if opts.gated_accuracy_level is not None or opts.gated_bits else set()
        bs = opts.block_size
        body_bits = opts.body_bits
        head_bits = opts.head_bits or 8  # the LM head stays at 8 bits unless asked (int4: mixed precision)
        head_level = opts.accuracy_level if opts.head_accuracy_level is None else opts.head_accuracy_level
        tied_nodes, drop_nodes, gather_nodes = _embedding_node_maps(emb)
        if emb is not None:
            # a MatMul on the embedding table's transpose is the LM head, whatever follows it
            # (Gemma 2's soft-capping puts Div/Tanh/Mul between it and the logits)
            heads |= set(tied_nodes)
        qweights: dict[tuple[str, bool, int], tuple[str, ...]] = {}
        block_sums: dict[tuple[str, int, int], str] = {}  # (activation, K, block) -> its block sums
        emb_names: tuple[str, ...] | None = None
        new_nodes: list[onnx.NodeProto] = []

        # the transposes feeding quantized MatMuls are dropped: find them before emitting
        plan_w: dict[str, tuple[str, bool]] = {}
        for out, m in graphutil.quantizable_matmuls(gi, self.notes).items():
            if out in tied_nodes:
                continue
            plan_w[out] = (m.weight, m.transposed)
            if m.transpose is not None:
                drop_nodes.add(id(m.transpose))
        if opts.equalize_alpha is not None:
            self._plan_equalization(plan_w, heads)

        for n in src.graph.node:
            if id(n) in drop_nodes:
                continue
            out0 = n.output[0] if n.output else ""
            base = n.name or out0
            is_head = out0 in heads
            level = head_level if is_head else opts.accuracy_level
            is_gated = not is_head and bool(n.input) and n.input[0] in gated
            if is_gated and opts.gated_accuracy_level is not None:
                level = opts.gated_accuracy_level
            if out0 in tied_nodes and tied_nodes[out0] is n:
                if emb_names is None:
                    emb_names = self._plan_block_embedding_job(emb)
                table, _scales3, scales2 = emb_names
                new_nodes.append(self._mnb_node(n.input[0], out0, (table, scales2), emb.hidden, emb.vocab,
                                                opts.embedding_bits, self.emb_block, level if is_head else opts.accuracy_level, base))
                continue
            if out0 in gather_nodes and gather_nodes[out0] is n:
                if emb_names is None:
                    emb_names = self._plan_block_embedding_job(emb)
                new_nodes.extend(self._gbq_gather_nodes(n, emb_names))
                continue
            if out0 in plan_w:
                w, transposed = plan_w[out0]
                bits = head_bits if is_head else (opts.gated_bits or body_bits) if is_gated else body_bits
                key = (w, transposed, bits)
                if key not in qweights:
                    qweights[key] = self._plan_block_weight_job(w, transposed, bits, is_head)
                t = gi.inits[w]
                K, N = (int(t.dims[1]), int(t.dims[0])) if transposed else (int(t.dims[0]), int(t.dims[1]))
                names = qweights[key]
                if len(names) > 3:  # rtn-float-zp: symmetric codes + the block offsets (see _offset_nodes)
                    codes = self.names.fresh(out0 + "_codes")
                    new_nodes.append(self._mnb_node(n.input[0], codes, names[:2], K, N, bits, bs, level, base))
                    new_nodes.extend(self._offset_nodes(n.input[0], codes, out0, names[3], K, bs, base, block_sums))
                else:
                    new_nodes.append(self._mnb_node(n.input[0], out0, names, K, N, bits, bs, level, base))
                continue
            new_nodes.append(n)
        self.quantized_weights = len(qweights) + (1 if emb_names else 0)
        self.head_summary = {
            "outputs": sorted(heads),
            "tied": bool(emb is not None and emb.tied_heads),
            "bits": opts.embedding_bits if emb is not None and emb.tied_heads else head_bits,
            "accuracyLevel": head_level,
            "quantized": bool(heads) and all(h in plan_w or h in tied_nodes for h in heads),
        }
        return new_nodes

    def _plan_block_weight_job(self, w: str, transposed: bool, bits: int, is_head: bool) -> tuple[str, ...]:
        """MatMulNBits tensors of one weight: packed [N, kb, bs*bits/8] uint8, scales [N, kb]
        and, for asymmetric blocks, zero points."""
        t = self.gi.inits[w]
        opts = self.opts
        bs = opts.block_size
        # 8-bit blocks are symmetric (the body and the head alike); 4-bit follows the option
        symmetric = True if bits == 8 else opts.symmetric
        algorithm = opts.algorithm if bits == 4 else "rtn"
        q, s = (self.names.fresh(w + sfx) for sfx in (f"{'_T' if transposed else ''}_Q{bits}", "_scales"))
        # HQQ: float zero points in MatMulNBits; rtn-float-zp: symmetric codes + block offsets
        z = self.names.fresh(w + "_zero_points") if (not symmetric or algorithm == "hqq") and algorithm != "rtn-float-zp" else ""
        off = self.names.fresh(w + "_block_offsets") if algorithm == "rtn-float-zp" else ""
        rows, cols = int(t.dims[0]), int(t.dims[1])

        if transposed and (w in self.row_scale or w in self.col_scale):
            raise QuantizationError(f"internal: equalization planned for the transposed weight {w!r}")

        def fn():
            if algorithm == "hqq":
                (_r0, _r1, w_kn), = self._equalized_rows(w, iter([(0, rows, self.reader.read_array(t))]))
                pk, sc, zp = quantize_hqq(w_kn.T if transposed else w_kn, bs, bits)
            elif algorithm == "rtn-float-zp" and transposed:
                pk, sc, zp = quantize_float_zp_rows(self.reader.iter_rows(t, ROW_CHUNK_BYTES), (rows, cols), bs, bits)
            elif algorithm == "rtn-float-zp":
                pk, sc, zp = quantize_float_zp_chunks(
                    self._equalized_rows(w, self.reader.iter_rows(t, ROW_CHUNK_BYTES, multiple=2 * bs)),
                    (rows, cols), bs, bits,
                )
            elif transposed:  # t is [N, K]
                pk, sc, zp = quantize_blocks_rows(self.reader.iter_rows(t, ROW_CHUNK_BYTES), (rows, cols), bs, bits, symmetric)
            else:
                pk, sc, zp = quantize_blocks_chunks(
                    self._equalized_rows(w, self.reader.iter_rows(t, ROW_CHUNK_BYTES, multiple=2 * bs)),
                    (rows, cols), bs, bits, symmetric,
                )
            out = {q: pk, s: sc}
            if z:
                out[z] = zp
            if off:  # s(q - z) = s(q - mid) + s(mid - z): the offsets O [kb, N]
                out[off] = np.ascontiguousarray((sc * (np.float32(1 << (bits - 1)) - zp)).T, dtype=np.float32)
            return out

        self.jobs.append(Job(names=[q, s] + ([z] if z else []) + ([off] if off else []), cost=tensor_nbytes(t), fn=fn, label=w))
        return (q, s, "", off) if off else (q, s, z) if z else (q, s)

    def _equalized_rows(self, w: str, chunks):
        """K-row chunks of the [K, N] weight ``w`` with its equalization applied (rows times s,
        columns divided by the next group's s); unchanged when ``w`` has none."""
        rs, cs = self.row_scale.get(w), self.col_scale.get(w)
        for r0, r1, rows in chunks:
            if rs is None and cs is None:
                yield r0, r1, rows
                continue
            rows = np.array(rows, dtype=np.float32, copy=True)
            if rs is not None:
                rows *= rs[r0:r1, None]
            if cs is not None:
                rows /= cs[None, :]
            yield r0, r1, rows

    def _plan_equalization(self, plan_w: dict[str, tuple[str, bool]], heads: set[str]) -> None:
        """Measure the activations of every equalization group on the calibration ids and
        record the scales the weight and constant jobs apply (equalize.py)."""
        from sphana_bridge import equalize

        opts = self.opts
        if not opts.calibration_ids:
            raise QuantizationError("equalization needs calibration token ids")
        groups = equalize.find_groups(self.gi, plan_w, heads)
        if not groups:
            self.notes.append("equalization: no MatMul input with a foldable producer; nothing equalized")
            self.equalized = {"alpha": opts.equalize_alpha, "groups": 0, "matmuls": 0}
            return
        self.progress("calibrate", None, f"activation ranges of {len(groups)} MatMul inputs on "
                      f"{sum(map(len, opts.calibration_ids))} calibration tokens")
        amax = equalize.activation_amax(self.src, self.scanned.base_dir, [g.activation for g in groups],
                                        opts.calibration_ids, opts.calibration_threads)
        spans = []
        for g in groups:
            wmax = None
            for w in g.weights:
                t = self.gi.inits[w]
                rmax = np.concatenate([np.abs(c).max(axis=1) for _r0, _r1, c in self.reader.iter_rows(t, ROW_CHUNK_BYTES)])
                wmax = rmax if wmax is None else np.maximum(wmax, rmax)
            s = equalize.smoothing_scales(amax[g.activation], wmax, opts.equalize_alpha)
            for w in g.weights:
                self.row_scale[w] = s
            if g.gamma is not None:
                self.gamma_div[g.gamma] = s
            else:
                self.col_scale[g.columns_of] = s
            spans.append((float(s.min()), float(s.max())))
        matmuls = sum(len(g.weights) for g in groups)
        self.equalized = {"alpha": opts.equalize_alpha, "groups": len(groups), "matmuls": matmuls,
                          "calibrationTokens": sum(map(len, opts.calibration_ids)),
                          "scaleRange": [min(a for a, _ in spans), max(b for _, b in spans)]}
        self.notes.append(
            f"equalization (SmoothQuant-style, alpha {opts.equalize_alpha}): {matmuls} MatMuls in {len(groups)} groups, "
            f"scales folded into {sum(1 for g in groups if g.gamma)} norm weights and "
            f"{sum(1 for g in groups if g.columns_of)} producing projections, measured on "
            f"{self.equalized['calibrationTokens']} calibration tokens"
        )

    def _plan_block_embedding_job(self, emb: graphutil.EmbeddingInfo) -> tuple[str, str, str]:
        """The token table as symmetric blocks along hidden: [V, kb, bs*bits/8] uint8, read by
        GatherBlockQuantized and, when tied, by the head's MatMulNBits (the same bytes: E's
        rows are E^T's columns)."""
        t = self.gi.inits[emb.table]
        V, H = emb.vocab, emb.hidden
        bits = self.opts.embedding_bits
        bs = embedding_block_size(H, self.opts.block_size)
        self.emb_block = bs
        if bs != self.opts.block_size:
            self.notes.append(f"embedding block size {bs} (hidden {H} is not a multiple of {self.opts.block_size})")
        kb = H // bs
        table = self.names.fresh(emb.table + f"_Q{bits}")
        scales3 = self.names.fresh(emb.table + "_scales")
        scales2 = self.names.fresh(emb.table + "_scales_2d") if emb.tied_heads else ""

        def fn():
            pk, sc, _zp = quantize_blocks_rows(self.reader.iter_rows(t, ROW_CHUNK_BYTES), (V, H), bs, bits, True)
            out = {table: pk, scales3: sc.reshape(V, kb, 1)}
            if scales2:
                out[scales2] = sc
            return out

        self.jobs.append(Job(names=[table, scales3] + ([scales2] if scales2 else []), cost=tensor_nbytes(t), fn=fn,
                             label=emb.table))
        self.embedding_summary = {
            **_embedding_summary(emb, table),
            "bits": bits,
            "layout": f"uint8 [vocab, {kb}, {bs * bits // 8}] symmetric {bits}-bit blocks of {bs} (MatMulNBits layout), "
            f"scales [vocab, {kb}, 1]",
            "scales": scales3,
            "blockSize": bs,
        }
        return table, scales3, scales2

    def _gbq_gather_nodes(self, n: onnx.NodeProto, names: tuple[str, ...]) -> list[onnx.NodeProto]:
        emb = self.embedding
        assert emb is not None
        table, scales3 = names[0], names[1]
        ids, out = n.input[1], n.output[0]
        base = n.name or out
        ids_shape = self.names.fresh(base + "_ids_shape")
        out_shape = self.names.fresh(base + "_out_shape")
        g = self.names.fresh(base + "_gbq")
        return [
            self._node("Shape", [ids], [ids_shape], base + "_ids_shape"),
            self._node("Concat", [ids_shape, self._const(base + "_hidden", np.array([emb.hidden], np.int64))],
                       [out_shape], base + "_out_shape", axis=0),
            self._node("GatherBlockQuantized", [table, ids, scales3], [g], base + f"_Q{self.opts.embedding_bits}",
                       domain=MS_DOMAIN, bits=self.opts.embedding_bits, block_size=self.emb_block, gather_axis=0,
                       quantize_axis=2),
            self._node("Reshape", [g, out_shape], [out], base + "_reshape"),
        ]

    def _plan_weight_job(self, w: str) -> tuple[str, ...]:
        """Dynamic int8 tensors of one weight (onnxruntime's numerics)."""
        t = self.gi.inits[w]
        opts = self.opts
        q, s, z = (self.names.fresh(w + sfx) for sfx in ("_quantized", "_scale", "_zero_point"))

        def fn(t=t, q=q, s=s, z=z):
            shape = (int(t.dims[0]), int(t.dims[1]))
            qa, sa, za = quantize_int8_ort_chunks(lambda: self.reader.iter_rows(t, ROW_CHUNK_BYTES), shape, opts.per_channel)
            return {q: qa, s: sa, z: za}

        self.jobs.append(Job(names=[q, s, z], cost=tensor_nbytes(t), fn=fn, label=w))
        return q, s, z

    def _plan_embedding_job(self) -> tuple[str, ...]:
        emb = self.embedding
        assert emb is not None
        t = self.gi.inits[emb.table]
        V, H = emb.vocab, emb.hidden
        table = self.names.fresh(emb.table + "_int8_T")
        scales = self.names.fresh(emb.table + "_row_scales")

        def fn():
            qT, sc = quantize_rows_int8_chunks(lambda: self.reader.iter_rows(t, ROW_CHUNK_BYTES), (V, H))
            return {table: qT, scales: sc}

        self.jobs.append(Job(names=[table, scales], cost=tensor_nbytes(t), fn=fn, label=emb.table))
        self.embedding_summary = {
            **_embedding_summary(emb, table),
            "layout": "int8 [hidden, vocab] (transposed), symmetric per-token scales [vocab]",
            "scales": scales,
        }
        return table, scales

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
        return nodes

    # ---- execution -----------------------------------------------------------------

    def execute(self, model: onnx.ModelProto, data_path: str, onnx_path: str) -> EngineResult:
        opts = self.opts
        writer = DataFileWriter(data_path, fsync=opts.output_mode != "single")  # single: copied, then deleted
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
            head=self.head_summary,
            equalized=self.equalized,
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


def estimate_direct_bytes(
    scanned: ScannedModel, precision: str, block_size: int, stock_int8: bool, weight_only: bool = False
) -> int:
    """Rough serialized size of a single-file output (used to fail fast)."""
    model = scanned.model
    gi = graphutil.GraphIndex.build(model)
    lazy_payload = 0
    for t in model.graph.initializer:
        if is_external(t):
            lazy_payload += tensor_nbytes(t)
    skeleton = max(0, scanned.file_bytes - (0 if scanned.has_external_data else lazy_payload))
    skeleton = max(skeleton, 1024)
    quantized = _stock_int8_sizes(gi) if stock_int8 else _engine_weight_sizes(gi, precision, block_size, weight_only)
    # a quantized weight's float bytes stay when anything else reads it (a dropped Transpose does not count)
    only_quantized_use = {
        w: all((c.op_type in ("MatMul", "Gemm", "FusedMatMul") and i == 1) or graphutil.transpose_feeds_matmuls(c, gi)
               for c, i in gi.consumers.get(w, []))
        for w in quantized
    }
    total = skeleton
    for t in model.graph.initializer:
        b = tensor_nbytes(t)
        if t.name in quantized:
            total += quantized[t.name] + (0 if only_quantized_use[t.name] else b)
        else:
            total += b
    return int(total)


def _stock_int8_sizes(gi: graphutil.GraphIndex) -> dict[str, int]:
    """onnxruntime's quantize_dynamic: every MatMul / Gemm on a direct float32 initializer, as int8."""
    out: dict[str, int] = {}
    for n in gi.model.graph.node:
        t = gi.inits.get(n.input[1]) if len(n.input) >= 2 else None
        if n.op_type in ("MatMul", "Gemm") and graphutil.is_standard(n) and t is not None and t.data_type == TensorProto.FLOAT:
            out[n.input[1]] = numel(t) + 64
    return out


def _engine_weight_sizes(gi: graphutil.GraphIndex, precision: str, block_size: int, weight_only: bool) -> dict[str, int]:
    """The engine's weights (graphutil.quantizable_matmuls, as the plan finds them): MatMulNBits
    blocks when weight-only, per-column int8 for the dynamic scheme."""
    out: dict[str, int] = {}
    for m in graphutil.quantizable_matmuls(gi, [], direct_only=not weight_only).values():
        t = gi.inits[m.weight]
        if not weight_only:
            out[m.weight] = numel(t) + 64
            continue
        K, N = (int(t.dims[1]), int(t.dims[0])) if m.transposed else (int(t.dims[0]), int(t.dims[1]))
        kb = (K + block_size - 1) // block_size
        bits = 8 if precision == "int8" else 4
        out[m.weight] = N * kb * (block_size * bits // 8) + N * kb * 4 + (0 if bits == 8 else N * ((kb + 1) // 2)) + 64
    return out
