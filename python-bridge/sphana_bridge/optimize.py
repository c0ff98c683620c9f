"""`optimize`: onnxruntime fusions on an exported fp32 decoder, gated by the export's parity check.

The exported graph goes through onnxscript's ``ort_fusions.optimize_for_ort`` (RMSNorm ->
SimplifiedLayerNormalization, residual + RMSNorm -> SkipSimplifiedLayerNormalization, rotary
embeddings -> RotaryEmbedding, attention -> com.microsoft.GroupQueryAttention, ...). Then:

* a tied LM head that fusion turned into ``com.microsoft.FusedMatMul(x, table, transB=1)`` on the
  embedding table stays that way by default: sphana's quantizer quantizes it with the table it
  shares with the embedding Gather (one INT8 copy). ``untieLmHead`` rewrites it as a plain
  ``MatMul(x, tableᵀ)`` on a constant transposed copy (for weight quantizers that look only for
  MatMul on a constant); it costs one more [hidden, vocab] table (SmolLM2: 113 MB fp32, 28 MB
  INT8);
* the graph's inputs and outputs must be exactly the exported ones (names, element types,
  shapes: the concrete KV-head and head-dim sizes stay);
* the fused model, saved into a staging folder, must pass the same parity gate as the export
  (PyTorch prefill + decode steps, every position, same tolerance).

If fusion raises, the I/O changes or parity fails, nothing is written and the result says
``applied: false`` with the reason: the caller keeps the unfused model. Architecture facts
come from the model folder's config (for the PyTorch reference) and from the graph; nothing
here switches on a model type.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from collections import Counter
from typing import Any, Callable

from sphana_bridge.parity import DEFAULT_ATOL, DEFAULT_DECODE_STEPS, DEFAULT_RTOL, PARITY_KEYS, ParityFailed, check_parity, default_prompt, reference
from sphana_bridge.protocol import BadRequest, InputError, OutOfMemory, one_line

Emit = Callable[..., None]

DEFAULT_PROTO_LIMIT = 2**31
# Op types the fusions produce (counted in the fused graph; the manifest's fusionCounts).
FUSED_OPS = ("SimplifiedLayerNormalization", "LayerNormalization")
GRAPH_MARGIN_BYTES = 64 << 20
STANDARD_DOMAINS = ("", "ai.onnx")


def op_histogram(model) -> dict[str, int]:
    """op_type, or domain.op_type outside the standard domain, over the main graph and subgraphs."""
    import onnx_ir as ir

    counts: Counter[str] = Counter()
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        counts[node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}.{node.op_type}"] += 1
    return dict(sorted(counts.items()))


def fused_op_counts(ops: dict[str, int]) -> dict[str, int]:
    """The fused ops of an op histogram: everything outside the standard domain, and the norms."""
    return {k: v for k, v in ops.items() if "." in k or k in FUSED_OPS}


def fuse(model):
    """onnxscript's onnxruntime fusions, in place: (model, {fusion: count})."""
    from onnxscript.rewriter import ort_fusions

    return ort_fusions.optimize_for_ort(model)


def io_signature(model) -> list[tuple[str, str, str, tuple]]:
    def one(kind: str, v) -> tuple[str, str, str, tuple]:
        dims = tuple(d if isinstance(d, int) else str(d) for d in v.shape) if v.shape is not None else ()
        return (kind, v.name, str(v.dtype), dims)

    return [one("input", v) for v in model.graph.inputs] + [one("output", v) for v in model.graph.outputs]


def untie_lm_head(model) -> list[dict[str, Any]]:
    """FusedMatMul(x, W, transB=1) on a constant 2-D W, alpha 1, no transA -> MatMul(x, Wᵀ) on a new
    constant. Returns what was rewritten."""
    import numpy as np
    import onnx_ir as ir

    rewritten = []
    graph = model.graph
    for node in list(graph):
        if node.domain != "com.microsoft" or node.op_type != "FusedMatMul" or len(node.inputs) != 2:
            continue
        attrs = {k: a.value for k, a in node.attributes.items()}
        if attrs.get("transB", 0) != 1 or attrs.get("transA", 0) != 0 or float(attrs.get("alpha", 1.0)) != 1.0:
            continue
        if attrs.get("transBatchA", 0) or attrs.get("transBatchB", 0):
            continue
        weight = node.inputs[1]
        if weight is None or weight.const_value is None or weight.shape is None or len(weight.shape) != 2:
            continue
        table = weight.const_value.numpy()
        transposed = ir.Value(
            name=f"{weight.name}.transposed",
            shape=ir.Shape([table.shape[1], table.shape[0]]),
            type=ir.TensorType(weight.dtype),
            const_value=ir.tensor(np.ascontiguousarray(table.T), name=f"{weight.name}.transposed"),
        )
        graph.register_initializer(transposed)
        matmul = ir.node("MatMul", inputs=[node.inputs[0], transposed], name=f"{node.name or 'lm_head'}.untied")
        graph.insert_before(node, matmul)
        old = node.outputs[0]
        new = matmul.outputs[0]
        new.shape, new.type = old.shape, old.type
        name = old.name
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        old.name = f"{name}.fused"
        new.name = name
        graph.remove(node, safe=True)
        rewritten.append({"node": node.name, "table": weight.name, "shape": list(table.shape), "addedBytes": int(table.nbytes)})
    return rewritten


def _initializer_bytes(model) -> int:
    total = 0
    for v in model.graph.initializers.values():
        if v.const_value is not None:
            total += int(v.const_value.nbytes)
    return total


def optimize_model(
    input_path: str,
    output: str,
    model_dir: str,
    fusions: str = "ort",
    untie_head: bool = False,
    proto_limit_bytes: int = DEFAULT_PROTO_LIMIT,
    prompt_ids: list[int] | None = None,
    decode_steps: int = DEFAULT_DECODE_STEPS,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    emit: Emit | None = None,
) -> dict[str, Any]:
    from sphana_bridge.export_model import load_model, read_config

    def progress(step: str, fraction: float | None, message: str) -> None:
        if emit:
            emit(step, fraction, message)

    seconds: dict[str, float] = {}
    if not os.path.isfile(input_path):
        raise InputError(f"model not found: {input_path}", {"path": input_path})
    read_config(model_dir)
    output = os.path.abspath(output)
    if output == os.path.abspath(input_path):
        raise BadRequest("output must differ from input", {"field": "output"})

    # PyTorch's side of the gate first, then free the torch model.
    t = time.monotonic()
    progress("parity", 0.0, "PyTorch reference (prefill + greedy decode, and one uncached run)")
    try:
        torch_model = load_model(model_dir)
        cfg = torch_model.config
        prompt = list(prompt_ids) if prompt_ids else default_prompt(cfg.vocab_size, getattr(cfg, "bos_token_id", None))
        ref = reference(torch_model, prompt, decode_steps)
    except MemoryError as e:
        raise OutOfMemory(f"out of memory running the PyTorch model: {one_line(str(e))}", {"stage": "parity"}) from None
    del torch_model
    gc.collect()
    seconds["reference"] = round(time.monotonic() - t, 3)
    result = fuse_file(input_path, output, ref, untie_head=untie_head, proto_limit_bytes=proto_limit_bytes, atol=atol, rtol=rtol, emit=emit)
    result["seconds"] = {**seconds, **result["seconds"]}
    return result


def fuse_file(
    input_path: str,
    output: str,
    ref,
    untie_head: bool = False,
    proto_limit_bytes: int = DEFAULT_PROTO_LIMIT,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    emit: Emit | None = None,
    fusions: str = "ort",
) -> dict[str, Any]:
    """The whole graph of ``input_path`` fused, written to ``output`` only if it passes the parity
    gate against ``ref`` (a parity.Reference computed by the caller); else ``applied: false``."""
    import onnx_ir as ir

    from sphana_bridge.export_model import EXTERNAL_ALIGNMENT
    from sphana_bridge.modelio import Staging

    def progress(step: str, fraction: float | None, message: str) -> None:
        if emit:
            emit(step, fraction, message)

    seconds: dict[str, float] = {}
    t = time.monotonic()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    progress("optimize", 0.0, f"loading {os.path.basename(input_path)}")
    try:
        model = ir.load(input_path)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot read {input_path}: {one_line(str(e))}", {"path": input_path}) from None
    before_ops = op_histogram(model)
    before_io = io_signature(model)
    result: dict[str, Any] = {"fusions": fusions, "applied": False, "opsBefore": before_ops}

    def fallback(reason: str, **details: Any) -> dict[str, Any]:
        progress("optimize", 1.0, f"not applied: {reason}")
        return {**result, "applied": False, "reason": reason, **details, "seconds": seconds}

    progress("optimize", 0.2, "onnxscript ort_fusions.optimize_for_ort")
    try:
        model, counts = fuse(model)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any fusion failure means: keep the unfused model
        traceback.print_exc(file=sys.stderr)
        seconds["fuse"] = round(time.monotonic() - t, 3)
        return fallback(f"fusion failed: {type(e).__name__}: {one_line(str(e), 300)}")
    result["fusionCounts"] = {k: int(v) for k, v in sorted(counts.items()) if v}
    untied = untie_lm_head(model) if untie_head else []
    result["untiedLmHead"] = untied
    after_io = io_signature(model)
    seconds["fuse"] = round(time.monotonic() - t, 3)
    if after_io != before_io:
        changed = [list(map(str, a)) for a, b in zip(after_io, before_io) if a != b][:4]
        return fallback("fusion changed the graph's inputs or outputs", ioChanges=changed)
    ops = op_histogram(model)
    result["opsAfter"] = ops
    result["fusedOps"] = fused_op_counts(ops)
    result["nonStandardOps"] = sorted(k for k in ops if "." in k)
    progress("optimize", 0.7, f"{sum(before_ops.values())} -> {sum(ops.values())} nodes; " + ", ".join(f"{k} {v}" for k, v in result["fusionCounts"].items()))

    staging = Staging(output)
    try:
        t = time.monotonic()
        weights = _initializer_bytes(model)
        external = weights + GRAPH_MARGIN_BYTES > proto_limit_bytes
        progress("save", 0.0, f"{weights} bytes of weights, {'external data file' if external else 'single file'}")
        if external:
            ir.save(model, staging.onnx_path, external_data=os.path.basename(output) + ".data", alignment=EXTERNAL_ALIGNMENT)
        else:
            ir.save(model, staging.onnx_path)
        del model
        gc.collect()
        seconds["save"] = round(time.monotonic() - t, 3)

        t = time.monotonic()
        try:
            parity = check_parity(ref, staging.onnx_path, atol=atol, rtol=rtol, emit=emit)
        except ParityFailed as e:
            staging.abort()
            seconds["parity"] = round(time.monotonic() - t, 3)
            return fallback(f"parity failed: {e.message}", parity=e.details)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. onnxruntime refuses a fused op
            traceback.print_exc(file=sys.stderr)
            staging.abort()
            seconds["parity"] = round(time.monotonic() - t, 3)
            return fallback(f"the fused model does not run in onnxruntime: {type(e).__name__}: {one_line(str(e), 300)}")
        seconds["parity"] = round(time.monotonic() - t, 3)
        finals = staging.commit(with_data=external)
    except BaseException:
        staging.abort()
        raise
    files = [{"path": p, "bytes": os.path.getsize(p)} for p in finals]
    progress("optimize", 1.0, f"applied; parity max |diff| {parity['maxAbsDiff']:.3g}")
    return {**result, "applied": True, "output": output, "files": files, "externalData": external, "parity": parity, "seconds": seconds}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def run_optimize(request: dict[str, Any], emitter) -> dict[str, Any]:
    allowed = {"input", "output", "modelDir", "fusions", "untieLmHead", "protoLimitBytes", "parity"}
    unknown = sorted(set(request) - allowed)
    if unknown:
        raise BadRequest(f"unknown request field(s) for optimize: {', '.join(unknown)}", {"unknown": unknown, "allowed": sorted(allowed)})
    for field in ("input", "output"):
        v = request.get(field)
        if not isinstance(v, str) or not v.endswith(".onnx"):
            raise BadRequest(f"request field '{field}' must be a path ending in .onnx", {"field": field})
    model_dir = request.get("modelDir")
    if not isinstance(model_dir, str) or not model_dir:
        raise BadRequest("request field 'modelDir' must be a folder path", {"field": "modelDir"})
    fusions = request.get("fusions", "ort")
    if fusions != "ort":
        raise BadRequest("request field 'fusions' must be 'ort'", {"field": "fusions"})
    untie = request.get("untieLmHead", False)
    if not isinstance(untie, bool):
        raise BadRequest("request field 'untieLmHead' must be a boolean", {"field": "untieLmHead"})
    limit = request.get("protoLimitBytes", DEFAULT_PROTO_LIMIT)
    if not _is_int(limit) or limit <= 0:
        raise BadRequest("request field 'protoLimitBytes' must be a positive integer", {"field": "protoLimitBytes"})
    parity = request.get("parity") or {}
    if not isinstance(parity, dict) or set(parity) - PARITY_KEYS:
        raise BadRequest("request field 'parity' takes promptIds, decodeSteps, atol, rtol", {"field": "parity"})
    prompt = parity.get("promptIds")
    if prompt is not None and (not isinstance(prompt, list) or not prompt or not all(_is_int(i) for i in prompt)):
        raise BadRequest("parity.promptIds must be a non-empty list of integers", {"field": "parity.promptIds"})
    steps = parity.get("decodeSteps", DEFAULT_DECODE_STEPS)
    if not _is_int(steps) or steps < 0:
        raise BadRequest("parity.decodeSteps must be a non-negative integer", {"field": "parity.decodeSteps"})
    atol, rtol = parity.get("atol", DEFAULT_ATOL), parity.get("rtol", DEFAULT_RTOL)
    if not isinstance(atol, (int, float)) or atol < 0 or not isinstance(rtol, (int, float)) or rtol < 0:
        raise BadRequest("parity.atol / parity.rtol must be non-negative numbers", {"field": "parity"})
    return optimize_model(
        request["input"], request["output"], model_dir, fusions=fusions, untie_head=untie, proto_limit_bytes=limit,
        prompt_ids=prompt, decode_steps=steps, atol=float(atol), rtol=float(rtol), emit=emitter.progress,
    )
