"""`quantize` command: runs exactly one strategy at one precision."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from sphana_bridge import graphutil
from sphana_bridge.engine import Engine, EngineOptions, estimate_direct_bytes
from sphana_bridge.modelio import ScannedModel, Staging, scan_model
from sphana_bridge.protocol import (
    BadRequest,
    BridgeError,
    Emitter,
    OutOfMemory,
    ProtoLimitExceeded,
    QuantizationError,
    is_proto_size_error,
    one_line,
)

from sphana_bridge.vocabulary import INT4_ALGORITHMS, INT8_ENGINES, INT8_SCHEMES, QUANT_DEFAULTS, STRATEGIES, TABLE_BITS
from sphana_bridge.vocabulary import QUANT_PRECISIONS as PRECISIONS

ALLOWED_KEYS = {
    "input",
    "output",
    "strategy",
    "precision",
    "perChannel",
    "protoLimitBytes",
    "blockSize",
    "embeddingBits",
    "int8Engine",
    "int8Scheme",
    "accuracyLevel",
    "headAccuracyLevel",
    "gatedAccuracyLevel",
    "gatedBits",
    "headBits",
    "symmetric",
    "algorithm",
    "equalize",
    "calibrationIds",
}
MAX_CALIBRATION_TOKENS = 8192
PROTOBUF_HARD_LIMIT = 2**31 - 1  # a serialized ModelProto can never reach 2 GiB

log = logging.getLogger("sphana_bridge.quantize")


@dataclass
class QuantizeRequest:
    input: str
    output: str
    strategy: str
    precision: str
    per_channel: bool
    proto_limit: int
    block_size: int
    block_size_given: bool
    embedding_bits: int = QUANT_DEFAULTS["embeddingBits"]
    embedding_bits_given: bool = False
    int8_engine: str = QUANT_DEFAULTS["int8Engine"]
    int8_engine_given: bool = False
    int8_scheme: str = QUANT_DEFAULTS["int8Scheme"]
    accuracy_level: int = QUANT_DEFAULTS["accuracyLevel"]
    head_accuracy_level: int | None = None
    gated_accuracy_level: int | None = None
    gated_bits: int | None = None
    head_bits: int | None = None
    symmetric: bool = False
    algorithm: str = QUANT_DEFAULTS["algorithm"]
    equalize: float | None = None
    calibration_ids: list[list[int]] | None = None

    @property
    def weight_only(self) -> bool:
        return self.precision == "int4" or self.int8_scheme == "weight-only"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_request(req: dict[str, Any]) -> QuantizeRequest:
    from sphana_bridge.cli import check_keys

    check_keys(req, ALLOWED_KEYS, "quantize")
    for key in ("input", "output", "strategy", "precision"):
        if key not in req:
            raise BadRequest(f"quantize request is missing {key!r}", {"field": key})
        if not isinstance(req[key], str) or not req[key]:
            raise BadRequest(f"{key!r} must be a non-empty string", {"field": key})
    if req["strategy"] not in STRATEGIES:
        raise BadRequest(
            f"strategy must be one of {', '.join(STRATEGIES)} (got {req['strategy']!r})", {"field": "strategy"}
        )
    if req["precision"] not in PRECISIONS:
        raise BadRequest(
            f"precision must be one of {', '.join(PRECISIONS)} (got {req['precision']!r})", {"field": "precision"}
        )
    per_channel = req.get("perChannel", QUANT_DEFAULTS["perChannel"])
    if not isinstance(per_channel, bool):
        raise BadRequest("perChannel must be a boolean", {"field": "perChannel"})
    limit = req.get("protoLimitBytes", 2**31)
    if not _is_int(limit) or limit <= 0:
        raise BadRequest("protoLimitBytes must be a positive integer", {"field": "protoLimitBytes"})
    block = req.get("blockSize", QUANT_DEFAULTS["blockSize"])
    if not _is_int(block) or block < 16 or block & (block - 1):
        raise BadRequest("blockSize must be a power of two >= 16", {"field": "blockSize"})
    emb_bits = req.get("embeddingBits", QUANT_DEFAULTS["embeddingBits"])
    if emb_bits not in TABLE_BITS or isinstance(emb_bits, bool):
        raise BadRequest("embeddingBits must be 8 or 4", {"field": "embeddingBits"})
    int8_engine = req.get("int8Engine", QUANT_DEFAULTS["int8Engine"])
    if int8_engine not in INT8_ENGINES:
        raise BadRequest(f"int8Engine must be one of {', '.join(INT8_ENGINES)}", {"field": "int8Engine"})
    scheme = req.get("int8Scheme", QUANT_DEFAULTS["int8Scheme"])
    if scheme not in INT8_SCHEMES:
        raise BadRequest(f"int8Scheme must be one of {', '.join(INT8_SCHEMES)}", {"field": "int8Scheme"})
    level = req.get("accuracyLevel", QUANT_DEFAULTS["accuracyLevel"])
    if not _is_int(level) or not 0 <= level <= 4:
        raise BadRequest("accuracyLevel must be an integer 0..4", {"field": "accuracyLevel"})
    head_level = req.get("headAccuracyLevel")
    if head_level is not None and (not _is_int(head_level) or not 0 <= head_level <= 4):
        raise BadRequest("headAccuracyLevel must be an integer 0..4", {"field": "headAccuracyLevel"})
    gated_level = req.get("gatedAccuracyLevel")
    if gated_level is not None and (not _is_int(gated_level) or not 0 <= gated_level <= 4):
        raise BadRequest("gatedAccuracyLevel must be an integer 0..4", {"field": "gatedAccuracyLevel"})
    gated_bits = req.get("gatedBits")
    if gated_bits is not None and (gated_bits not in (8, 4) or isinstance(gated_bits, bool)):
        raise BadRequest("gatedBits must be 8 or 4", {"field": "gatedBits"})
    head_bits = req.get("headBits")
    if head_bits is not None and (head_bits not in (8, 4) or isinstance(head_bits, bool)):
        raise BadRequest("headBits must be 8 or 4", {"field": "headBits"})
    symmetric = req.get("symmetric", QUANT_DEFAULTS["symmetric"])
    if not isinstance(symmetric, bool):
        raise BadRequest("symmetric must be a boolean", {"field": "symmetric"})
    algorithm = req.get("algorithm", QUANT_DEFAULTS["algorithm"])
    if algorithm not in INT4_ALGORITHMS:
        raise BadRequest(f"algorithm must be one of {', '.join(INT4_ALGORITHMS)}", {"field": "algorithm"})
    if algorithm == "rtn-float-zp" and symmetric:
        raise BadRequest("symmetric does not apply to algorithm rtn-float-zp (its zero points are floats)", {"field": "symmetric"})
    equalize = req.get("equalize")
    if equalize is not None and (isinstance(equalize, bool) or not isinstance(equalize, (int, float)) or not 0 < equalize < 1):
        raise BadRequest("equalize must be a number between 0 and 1 (the SmoothQuant alpha)", {"field": "equalize"})
    calib = req.get("calibrationIds")
    if calib is not None:
        if (
            not isinstance(calib, list) or not calib
            or not all(isinstance(seq, list) and seq and all(_is_int(i) and i >= 0 for i in seq) for seq in calib)
        ):
            raise BadRequest("calibrationIds must be a non-empty list of non-empty lists of token ids", {"field": "calibrationIds"})
        if sum(map(len, calib)) > MAX_CALIBRATION_TOKENS:
            raise BadRequest(f"calibrationIds holds more than {MAX_CALIBRATION_TOKENS} tokens", {"field": "calibrationIds"})
    if equalize is not None and calib is None:
        raise BadRequest("equalize needs calibrationIds (token ids of calibration text)", {"field": "calibrationIds"})
    if equalize is not None and req["precision"] == "int8" and scheme != "weight-only":
        raise BadRequest("equalize applies to the weight-only schemes only", {"field": "equalize"})
    inp = os.path.abspath(req["input"])
    out = os.path.abspath(req["output"])
    if not out.endswith(".onnx"):
        raise BadRequest("output must be a path ending in .onnx", {"field": "output", "output": out})
    if not os.path.isdir(os.path.dirname(out)):
        raise BadRequest(
            f"output folder does not exist: {os.path.dirname(out)}", {"field": "output", "output": out}
        )
    if out == inp:
        raise BadRequest("output must differ from input", {"field": "output"})
    return QuantizeRequest(
        input=inp,
        output=out,
        strategy=req["strategy"],
        precision=req["precision"],
        per_channel=per_channel,
        proto_limit=limit,
        block_size=block,
        block_size_given="blockSize" in req,
        embedding_bits=emb_bits,
        embedding_bits_given="embeddingBits" in req,
        int8_engine=int8_engine,
        int8_engine_given="int8Engine" in req,
        int8_scheme=scheme,
        accuracy_level=level,
        head_accuracy_level=head_level,
        gated_accuracy_level=gated_level,
        gated_bits=gated_bits,
        head_bits=head_bits,
        symmetric=symmetric,
        algorithm=algorithm,
        equalize=None if equalize is None else float(equalize),
        calibration_ids=calib,
    )


def _peak_rss_bytes() -> int | None:
    """Peak RSS of THIS process. Linux: VmHWM (per address space, reset by exec).
    ``getrusage().ru_maxrss`` is NOT used there: Linux carries it across fork+exec, so
    a bridge spawned by a big parent (node, pytest) would report the parent's size."""
    try:
        with open("/proc/self/status", "r", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    parts = line.split()
                    return int(parts[1]) * 1024  # kB
    except OSError:
        pass
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r if sys.platform == "darwin" else r * 1024)
    except Exception:
        return None


def run_quantize(request: dict[str, Any], emitter: Emitter) -> dict[str, Any]:
    req = parse_request(request)
    t0 = time.monotonic()
    emitter.progress("load", 0.0, f"reading model structure from {req.input}")
    scanned = scan_model(req.input)  # InputError on missing / unreadable / not ONNX
    emitter.progress(
        "load",
        1.0,
        f"{len(scanned.model.graph.node)} nodes, {len(scanned.model.graph.initializer)} initializers, "
        f"{scanned.total_bytes()} bytes on disk",
    )
    notes: list[str] = []
    if req.precision == "int8" and req.block_size_given and not req.weight_only:
        notes.append("blockSize is only used by weight-only schemes; ignored for dynamic int8")
    if req.embedding_bits_given and req.strategy != "embedding-split":
        notes.append("embeddingBits only applies to embedding-split; ignored")
    if req.int8_engine_given and not (req.precision == "int8" and not req.weight_only and req.strategy != "embedding-split"):
        notes.append("int8Engine only applies to the dynamic int8 scheme's direct/external-data; ignored")
    if req.embedding_bits_given and req.weight_only:
        notes = [n for n in notes if not n.startswith("embeddingBits")]
    if req.precision == "int4" and req.per_channel:
        notes.append("perChannel is ignored for int4 (block-wise quantization)")

    if req.strategy == "direct":
        _precheck_direct(scanned, req, emitter)

    try:
        staging = Staging(req.output)
    except OSError as e:
        raise BadRequest(
            f"cannot write in the output folder {os.path.dirname(req.output)}: {e.strerror or e}",
            {"field": "output"},
        ) from None

    ok = False
    try:
        if req.precision == "int8" and not req.weight_only and req.strategy != "embedding-split" and req.int8_engine == "ort":
            data = _run_stock_int8(scanned, req, staging, emitter, notes)
        else:
            data = _run_engine(scanned, req, staging, emitter, notes)
        ok = True
    except BridgeError:
        raise
    except MemoryError as e:
        raise OutOfMemory(f"out of memory during quantization: {one_line(str(e)) or 'MemoryError'}") from None
    except Exception as e:
        if is_proto_size_error(e):
            raise ProtoLimitExceeded(one_line(str(e)), {"exception": type(e).__name__}) from None
        log.exception("quantization failed")
        raise QuantizationError(
            f"{type(e).__name__}: {one_line(str(e))}", {"exception": type(e).__name__}
        ) from None
    finally:
        if not ok:
            staging.abort()
    data["seconds"] = round(time.monotonic() - t0, 3)
    data["peakRssBytes"] = _peak_rss_bytes()
    data["inputBytes"] = scanned.total_bytes()
    emitter.progress("done", 1.0, f"wrote {', '.join(f['path'] for f in data['files'])}")
    return data


# ---------------------------------------------------------------------------------------


def _precheck_direct(scanned: ScannedModel, req: QuantizeRequest, emitter: Emitter) -> None:
    limit = min(req.proto_limit, PROTOBUF_HARD_LIMIT)
    if scanned.has_external_data:
        raise ProtoLimitExceeded(
            "direct needs the whole model in one protobuf, but the input stores its weights as external data "
            f"({len(scanned.external_files)} file(s), estimated {scanned.total_bytes()} bytes in total; "
            f"limit {limit} bytes)",
            {
                "estimatedBytes": scanned.total_bytes(),
                "inputBytes": scanned.total_bytes(),
                "limitBytes": limit,
                "reason": "input-external-data",
            },
        )
    if scanned.file_bytes > limit:
        raise ProtoLimitExceeded(
            f"loading the input needs one {scanned.file_bytes}-byte protobuf (estimated bytes), above the limit "
            f"{limit} bytes",
            {
                "estimatedBytes": scanned.file_bytes,
                "inputBytes": scanned.file_bytes,
                "limitBytes": limit,
                "reason": "input-too-large",
            },
        )
    est = estimate_direct_bytes(
        scanned,
        req.precision,
        req.block_size,
        stock_int8=req.precision == "int8" and req.int8_engine == "ort" and not req.weight_only,
        weight_only=req.weight_only,
    )
    emitter.progress("estimate", None, f"estimated single-file output {est} bytes (limit {limit})")
    if est > limit:
        raise ProtoLimitExceeded(
            f"estimated single-file output is {est} bytes, above the protobuf limit {limit} bytes",
            {"estimatedBytes": est, "limitBytes": limit, "reason": "output-too-large"},
        )


def _float_matmul_notes(model, notes: list[str]) -> list[dict]:
    left = graphutil.float_const_matmul_report(model)
    if left:
        shown = ", ".join(
            f"{r['node']} (weight {r['weight']}{' via ' + '/'.join(r['via']) if r['via'] else ''})" for r in left[:20]
        )
        more = f" and {len(left) - 20} more" if len(left) > 20 else ""
        notes.append(f"{len(left)} MatMul/Gemm with constant weights left in float: {shown}{more}")
    return left


def _files(paths: list[str]) -> list[dict[str, Any]]:
    return [{"path": p, "bytes": os.path.getsize(p)} for p in paths]


def _staged_shape_infer_loader(staging_dir: str):
    """Drop-in for onnxruntime's ``quant_utils.load_model_with_shape_infer``.

    Stock ORT writes ``<input>-inferred.onnx`` BESIDE the input (fails on read-only
    folders, litters the caller's folder). This version runs the same
    ``onnx.shape_inference.infer_shapes_path`` into the staging folder and loads the
    external data from the input's own folder; the result is identical."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model
    from onnxruntime.quantization.quant_utils import add_infer_metadata

    def load_model_with_shape_infer(model_path):
        model_path = os.path.abspath(str(model_path))
        inferred = os.path.join(staging_dir, "shape-inferred.onnx")
        onnx.shape_inference.infer_shapes_path(model_path, inferred)
        model = onnx.load(inferred, load_external_data=False)
        load_external_data_for_model(model, os.path.dirname(model_path))
        add_infer_metadata(model)
        os.remove(inferred)
        return model

    return load_model_with_shape_infer


def _run_stock_int8(
    scanned: ScannedModel, req: QuantizeRequest, staging: Staging, emitter: Emitter, notes: list[str]
) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the package re-exports a *function* named `quantize`, so fetch the module itself
    ort_quantize_module = sys.modules["onnxruntime.quantization.quantize"]

    external = req.strategy == "external-data"
    if req.per_channel:
        notes.append(
            "perChannel: onnxruntime quantizes MatMul weights per output column; its MatMulInteger path asks for "
            "reduce_range (7-bit weights) but onnxruntime 1.30 only applies it when the global reduce_range flag is "
            "set, which the bridge leaves False, so weights use the full symmetric int8 range [-127, 127]"
        )
    emitter.progress("quantize", None, "onnxruntime.quantization.quantize_dynamic (QInt8, MatMul/Gemm)")
    old_tmp = tempfile.tempdir
    old_loader = ort_quantize_module.load_model_with_shape_infer
    tempfile.tempdir = staging.dir  # ORT's shape-inference temp copies stay in the output folder
    ort_quantize_module.load_model_with_shape_infer = _staged_shape_infer_loader(staging.dir)
    try:
        quantize_dynamic(
            scanned.path,
            staging.onnx_path,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=req.per_channel,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            use_external_data_format=external,
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        tempfile.tempdir = old_tmp
        ort_quantize_module.load_model_with_shape_infer = old_loader
    emitter.progress("verify", None, "checking the written model")
    out_scan = scan_model(staging.onnx_path)
    has_data = os.path.isfile(staging.data_path)
    if not external:
        size = os.path.getsize(staging.onnx_path)
        if has_data or out_scan.has_external_data:
            raise QuantizationError("onnxruntime wrote external data for a direct (single-file) request")
        limit = min(req.proto_limit, PROTOBUF_HARD_LIMIT)
        if size > limit:
            raise ProtoLimitExceeded(
                f"quantized model is {size} bytes, above protoLimitBytes {limit}",
                {"actualBytes": size, "limitBytes": limit},
            )
    else:
        extra = [f for f in out_scan.external_files if os.path.abspath(f) != os.path.abspath(staging.data_path)]
        if extra:
            raise QuantizationError(f"unexpected external data files: {extra}")
        if not has_data:
            notes.append("no tensor reached the external-data size threshold; the model is a single file")
    quantized_ops = graphutil.quantized_op_counts(out_scan.model)
    left = _float_matmul_notes(out_scan.model, notes)
    notes.append("int8 via onnxruntime.quantization.quantize_dynamic (weights QInt8 symmetric, activations uint8 dynamic)")
    finals = staging.commit(with_data=external and has_data)
    return {
        "strategy": req.strategy,
        "precision": req.precision,
        "files": _files(finals),
        "quantizedOps": quantized_ops,
        "notes": notes,
        "external": bool(external and has_data),
        "floatConstMatMuls": left,
        "engine": "onnxruntime.quantize_dynamic",
    }


def _run_engine(
    scanned: ScannedModel, req: QuantizeRequest, staging: Staging, emitter: Emitter, notes: list[str]
) -> dict[str, Any]:
    mode = {"direct": "single", "external-data": "external", "embedding-split": "auto"}[req.strategy]
    opts = EngineOptions(
        precision=req.precision,
        per_channel=req.per_channel if req.precision == "int8" else False,
        block_size=req.block_size,
        split_embedding=req.strategy == "embedding-split",
        embedding_bits=req.embedding_bits,
        output_mode=mode,
        proto_limit=min(req.proto_limit, PROTOBUF_HARD_LIMIT),
        scheme="weight-only" if req.weight_only else "dynamic",
        accuracy_level=req.accuracy_level,
        head_accuracy_level=req.head_accuracy_level,
        gated_accuracy_level=req.gated_accuracy_level,
        gated_bits=req.gated_bits,
        head_bits=req.head_bits,
        symmetric=req.symmetric,
        algorithm=req.algorithm,
        equalize_alpha=req.equalize,
        calibration_ids=req.calibration_ids,
    )
    engine = Engine(scanned, opts, emitter.progress)
    emitter.progress("analyze", None, "planning graph rewrite")
    model = engine.plan()
    result = engine.execute(model, staging.data_path, staging.onnx_path)
    emitter.progress("verify", None, "checking the written model")
    out_scan = scan_model(staging.onnx_path)
    notes.extend(result.notes)
    settings = _settings(req)
    if req.weight_only:
        head = result.head or {}
        notes.append(
            f"{req.precision} weight-only: com.microsoft.MatMulNBits bits={8 if req.precision == 'int8' else 4}, "
            f"blocks of {req.block_size} along K "
            f"({'symmetric' if req.precision == 'int8' or req.symmetric else 'asymmetric (zero points)'}, "
            f"{_ALGORITHM_NOTES[req.algorithm] if req.precision == 'int4' else 'onnxruntime block quantizer'}), "
            f"accuracy_level {req.accuracy_level}; LM head {'quantized' if head.get('quantized') else 'NOT quantized'} "
            f"({head.get('bits')}-bit, level {head.get('accuracyLevel')}{', tied' if head.get('tied') else ''})"
        )
    elif req.precision == "int8":
        notes.append(
            "int8: onnxruntime dynamic-quantization numerics and node pattern "
            "(DynamicQuantizeLinear + MatMulInteger), applied tensor by tensor (streaming engine)"
        )
        if req.per_channel:
            notes.append("perChannel: per output column scales, full symmetric int8 range (no reduce_range)")
    else:
        notes.append(
            f"int4: com.microsoft.MatMulNBits, 4-bit asymmetric blocks of {req.block_size} along K "
            "(onnxruntime's quantize_matmul_4bits kernel)"
        )
    if result.embedding is not None:
        e = result.embedding
        notes.append(
            f"embedding {e['table']} [{e['vocab']}x{e['hidden']}] -> {e['layout']}; "
            f"{'tied LM head shares the table' if e['tied'] else 'untied: LM head quantized with the body'}"
        )
    left = _float_matmul_notes(out_scan.model, notes)
    if result.external and not os.path.isfile(staging.data_path):
        raise QuantizationError("external data file was not written")
    finals = staging.commit(with_data=result.external)
    return {
        "strategy": req.strategy,
        "precision": req.precision,
        "files": _files(finals),
        "quantizedOps": graphutil.quantized_op_counts(out_scan.model),
        "notes": notes,
        "external": result.external,
        "floatConstMatMuls": left,
        "engine": "sphana-streaming",
        "embedding": result.embedding,
        "scheme": settings["scheme"],
        "settings": settings,
        "head": result.head,
        "equalized": result.equalized,
    }


_ALGORITHM_NOTES = {
    "rtn": "onnxruntime block quantizer, integer zero points",
    "rtn-float-zp": "round-to-nearest min/max blocks with float zero points (llama.cpp's Q4_1 scheme), "
                    "emitted as symmetric codes plus a float MatMul of per-block input sums by the block offsets",
    "hqq": "HQQ, float zero points",
}


def _settings(req: QuantizeRequest) -> dict[str, Any]:
    """The quantization settings as the manifest records them."""
    if not req.weight_only:
        return {"scheme": "dynamic", "perChannel": req.per_channel, "embeddingBits": 8}
    out: dict[str, Any] = {
        "scheme": "weight-only",
        "bits": 8 if req.precision == "int8" else 4,
        "blockSize": req.block_size,
        "accuracyLevel": req.accuracy_level,
        "headAccuracyLevel": req.accuracy_level if req.head_accuracy_level is None else req.head_accuracy_level,
        "embeddingBits": req.embedding_bits,
    }
    if req.gated_accuracy_level is not None:
        out["gatedAccuracyLevel"] = req.gated_accuracy_level
    if req.gated_bits is not None:
        out["gatedBits"] = req.gated_bits
    if req.equalize is not None:
        out["equalize"] = req.equalize
    if req.precision == "int4":
        out.update(symmetric=req.symmetric, algorithm=req.algorithm, headBits=req.head_bits or 8)
    return out
