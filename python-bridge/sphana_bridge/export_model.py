"""`export`: a local Hugging Face decoder folder -> one verified fp32 ONNX decoder with a KV cache.

I/O contract (names are exact; ``N`` runs over the layers):

    inputs   input_ids                int64   [batch_size, sequence_length]
             attention_mask           int64   [batch_size, total_sequence_length]
             position_ids             int64   [batch_size, sequence_length]
             past_key_values.N.key    float32 [batch_size, KV, past_sequence_length, HD]
             past_key_values.N.value  float32 [batch_size, KV, past_sequence_length, HD]
    outputs  logits                   float32 [batch_size, sequence_length, vocab]
             present.N.key            float32 [batch_size, KV, total_sequence_length, HD]
             present.N.value          float32 [batch_size, KV, total_sequence_length, HD]

with total_sequence_length = past_sequence_length + sequence_length and concrete KV, HD and
vocab. Every layer keeps a FULL cache (present = past + new), including Gemma-2's
sliding-window layers: those are masked to the window instead of having their cache
truncated, so sequences longer than the window work (the runtime never has to know which
layers slide). The model runs with eager attention (Gemma-2's soft-capping needs it, and its
additive float mask keeps fully-padded rows finite).

Files: the .onnx alone when the weights fit under ``protoLimitBytes`` (minus a margin for
the graph), otherwise the .onnx plus ONE ``<output name>.data`` beside it. Everything is
written into a private folder beside the output and moved into place only after the parity
gate passed; on any failure nothing is left behind.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from sphana_bridge import architecture as arch
from sphana_bridge.parity import DEFAULT_ATOL, DEFAULT_DECODE_STEPS, DEFAULT_RTOL, PARITY_KEYS, ParityFailed, check_parity, default_prompt, reference
from sphana_bridge.protocol import BadRequest, BridgeError, InputError, OutOfMemory, one_line
from sphana_bridge.rope import make_traceable
from sphana_bridge.vocabulary import EXPORT_DEFAULTS, EXPORTERS

Emit = Callable[..., None]

DEFAULT_OPSET = 18
DEFAULT_PROTO_LIMIT = 2**31
# Room left under the protobuf limit for the graph itself and small constants.
GRAPH_MARGIN_BYTES = 64 << 20
EXTERNAL_ALIGNMENT = 65536

BATCH, SEQ, PAST, TOTAL = "batch_size", "sequence_length", "past_sequence_length", "total_sequence_length"


class ExportFailed(BridgeError):
    error_class = "ExportFailed"


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _root_message(e: BaseException) -> str:
    """First line of the innermost cause (torch.onnx wraps the real error in long banners)."""
    seen = set()
    while e.__cause__ is not None and id(e.__cause__) not in seen:
        seen.add(id(e))
        e = e.__cause__
    for line in str(e).splitlines():
        line = line.strip()
        if line and not line.startswith(("[torch.onnx]", "Traceback")):
            return f"{type(e).__name__}: {one_line(line, 500)}"
    return type(e).__name__


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text or "defaultcpuallocator" in text or "bad_alloc" in text)


def _files(paths: Sequence[str]) -> list[dict[str, Any]]:
    return [{"path": p, "bytes": os.path.getsize(p)} for p in paths]


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------


def read_config(model_dir: str, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json as a dict: it names a class in architectures[0] (and the facts' class, when given)."""
    if not os.path.isdir(model_dir):
        raise InputError(f"model folder not found: {model_dir}", {"modelDir": model_dir})
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise InputError(f"no config.json in {model_dir}", {"modelDir": model_dir})
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable config.json: {e}", {"path": path}) from None
    if not isinstance(config, dict):
        raise InputError("config.json is not a JSON object", {"path": path})
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise InputError(f"config.json names no architecture (architectures[0]): {archs!r}", {"path": path, "architectures": archs})
    if facts is not None:
        arch.check_config(config, facts)
    return config


def load_model(model_dir: str):
    """The transformers class config.json's architectures[0] names, in fp32 with eager attention."""
    import torch

    cls = arch.model_class(read_config(model_dir)["architectures"][0])
    try:
        model = cls.from_pretrained(
            model_dir, local_files_only=True, dtype=torch.float32, attn_implementation="eager"
        )
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load the model from {model_dir}: {_root_message(e)}", {"modelDir": model_dir}) from None
    model.eval()
    model.requires_grad_(False)
    return model


def arch_facts(cfg) -> dict[str, Any]:
    """What the runtime needs to know about the model (also written as metadata)."""
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {
        "model_type": cfg.model_type,
        "num_layers": cfg.num_hidden_layers,
        "num_kv_heads": kv,
        "head_dim": head_dim,
        "hidden_size": cfg.hidden_size,
        "num_attention_heads": heads,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": getattr(cfg, "max_position_embeddings", None),
        "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
    }


def _metadata(cfg, facts: dict[str, Any], exporter_name: str, architecture: dict[str, Any], generation=None) -> dict[str, str]:
    s = arch.metadata_value
    meta = {f"sphana.{k}": s(v) for k, v in facts.items() if v is not None}
    meta["sphana.exporter"] = exporter_name
    meta["sphana.kv_cache"] = "full"  # present = past + new on every layer
    meta["sphana.io"] = "input_ids,attention_mask,position_ids,past_key_values.N.key|value->logits,present.N.key|value"
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None)
    if rope:
        meta["sphana.rope_parameters"] = s(dict(rope))
    for key in ("rope_theta", "rms_norm_eps", "hidden_act", "hidden_activation", "query_pre_attn_scalar"):
        v = getattr(cfg, key, None)
        if v is not None:
            meta[f"sphana.{key}"] = s(v)
    meta.update(arch.metadata(architecture))
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = getattr(generation, key, None) if generation is not None else None
        if v is None:
            v = getattr(cfg, key, None)
        if v is not None:
            meta[f"sphana.{key}"] = s(v)
    return meta


# --------------------------------------------------------------------------------------
# the traced module
# --------------------------------------------------------------------------------------


def input_names(layers: int) -> list[str]:
    return ["input_ids", "attention_mask", "position_ids"] + [
        f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")
    ]


def output_names(layers: int) -> list[str]:
    return ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def make_wrapper(model, layers: int):
    import torch
    from transformers import DynamicCache

    class FlatKVDecoder(torch.nn.Module):
        """Flat past tensors in, flat presents out; a full (non-sliding) DynamicCache in between."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids, *past):
            # config=None: every layer is a plain DynamicLayer (present = past + new), even
            # for sliding-window layers, whose window is then applied by the mask alone.
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)])
            out = self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            presents = []
            for layer in out.past_key_values.layers:
                presents.extend((layer.keys, layer.values))
            return (out.logits, *presents)

    return FlatKVDecoder(model).eval()


def trace_sizes(facts: dict[str, Any], avoid: Sequence[int] = ()) -> tuple[int, int, int]:
    """batch, seq, past: none 0 or 1, and batch, seq, past, past+seq all distinct from each other and
    from every concrete size of the model (so no dynamic axis can be confused with a static one)."""
    statics = {v for v in facts.values() if isinstance(v, int) and not isinstance(v, bool)} | set(avoid)
    candidates = [n for n in range(2, 64) if n not in statics]
    for b in candidates:
        for s in candidates:
            for p in candidates:
                dims = {b, s, p, s + p}
                if len(dims) == 4 and (s + p) not in statics:
                    return b, s, p
    raise ExportFailed("could not choose tracing sizes", {"statics": sorted(statics)})


def sample_inputs(facts: dict[str, Any], b: int, s: int, p: int):
    import torch

    g = torch.Generator().manual_seed(0)
    vocab = facts["vocab_size"]
    kv, hd = facts["num_kv_heads"], facts["head_dim"]
    ids = torch.randint(0, vocab, (b, s), generator=g)
    mask = torch.ones((b, p + s), dtype=torch.long)
    pos = torch.arange(p, p + s, dtype=torch.long).unsqueeze(0).expand(b, s).contiguous()
    past = [torch.randn((b, kv, p, hd), generator=g) * 0.1 for _ in range(2 * facts["num_layers"])]
    return (ids, mask, pos, *past)


# --------------------------------------------------------------------------------------
# exporters -> onnx_ir.Model
# --------------------------------------------------------------------------------------


def export_dynamo(wrapper, args, layers: int, opset: int, before_optimize: Callable[[Any], None] | None = None):
    """``before_optimize(model)``, if given, sees the translated graph before onnxscript's optimize
    pass (the same pass ``optimize=True`` runs)."""
    import torch
    from torch.export import Dim

    batch, seq, past, total = Dim(BATCH), Dim(SEQ), Dim(PAST), Dim(TOTAL)
    dynamic_shapes = (
        {0: batch, 1: seq},
        {0: batch, 1: total},
        {0: batch, 1: seq},
        tuple({0: batch, 2: past} for _ in range(2 * layers)),
    )
    program = torch.onnx.export(
        wrapper,
        args,
        dynamo=True,
        opset_version=opset,
        dynamic_shapes=dynamic_shapes,
        input_names=input_names(layers),
        output_names=output_names(layers),
        optimize=before_optimize is None,
        verbose=False,
    )
    if before_optimize is not None:
        before_optimize(program.model)
        program.optimize()
    return program.model


def export_torchscript(wrapper, args, layers: int, opset: int, work_dir: str):
    import onnx_ir as ir
    import torch

    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: BATCH, 1: SEQ},
        "attention_mask": {0: BATCH, 1: TOTAL},
        "position_ids": {0: BATCH, 1: SEQ},
        "logits": {0: BATCH, 1: SEQ},
    }
    for name in input_names(layers)[3:]:
        axes[name] = {0: BATCH, 2: PAST}
    for name in output_names(layers)[1:]:
        axes[name] = {0: BATCH, 2: TOTAL}
    path = os.path.join(work_dir, "torchscript.onnx")
    with warnings.catch_warnings():
        # The tracer's "might not generalize" notes concern branches on the cache length
        # (traced non-empty) and on mask padding; the parity gate runs the empty-cache path.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
        _torchscript_export(wrapper, args, path, layers, opset, axes)
    return ir.load(path)


def _torchscript_export(wrapper, args, path: str, layers: int, opset: int, axes) -> None:
    import torch

    torch.onnx.export(
        wrapper,
        args,
        path,
        dynamo=False,
        opset_version=opset,
        input_names=input_names(layers),
        output_names=output_names(layers),
        dynamic_axes=axes,
        do_constant_folding=False,  # folding would give the tied LM head its own transposed copy
    )


# --------------------------------------------------------------------------------------
# post-processing of the graph
# --------------------------------------------------------------------------------------


def _dim_name(dim) -> str | int | None:
    if isinstance(dim, int):
        return dim
    value = getattr(dim, "value", dim)
    return None if value is None else str(value)


def _canonical(name: str | int | None) -> str | int | None:
    """Map the exporter's spelling of a dynamic axis onto the contract's names."""
    if not isinstance(name, str):
        return name
    terms = sorted(t.strip() for t in name.replace(" ", "").split("+"))
    if terms == sorted([PAST, SEQ]):
        return TOTAL
    return name


def rename_dims(model) -> None:
    import onnx_ir as ir

    def fix(value) -> None:
        shape = value.shape
        if shape is None:
            return
        dims = [_canonical(_dim_name(d)) for d in shape]
        if dims != [_dim_name(d) for d in shape]:
            value.shape = ir.Shape([d if isinstance(d, int) else ir.SymbolicDim(d) for d in dims])

    for v in list(model.graph.inputs) + list(model.graph.outputs):
        fix(v)
    for node in model.graph:
        for v in node.outputs:
            fix(v)


def io_summary(model) -> dict[str, list[dict[str, Any]]]:
    def one(v) -> dict[str, Any]:
        dtype = None
        if v.dtype is not None:
            try:
                import numpy as np

                dtype = str(np.dtype(v.dtype.numpy()))
            except Exception:
                dtype = v.dtype.name.lower()
        return {"name": v.name, "dtype": dtype, "shape": [_dim_name(d) for d in v.shape] if v.shape is not None else None}

    return {"inputs": [one(v) for v in model.graph.inputs], "outputs": [one(v) for v in model.graph.outputs]}


def check_contract(io: dict[str, list[dict[str, Any]]], facts: dict[str, Any]) -> None:
    layers, kv, hd, vocab = facts["num_layers"], facts["num_kv_heads"], facts["head_dim"], facts["vocab_size"]
    want_in = {
        "input_ids": ("int64", [BATCH, SEQ]),
        "attention_mask": ("int64", [BATCH, TOTAL]),
        "position_ids": ("int64", [BATCH, SEQ]),
    }
    for name in input_names(layers)[3:]:
        want_in[name] = ("float32", [BATCH, kv, PAST, hd])
    want_out = {"logits": ("float32", [BATCH, SEQ, vocab])}
    for name in output_names(layers)[1:]:
        want_out[name] = ("float32", [BATCH, kv, TOTAL, hd])
    for kind, want, got in (("input", want_in, io["inputs"]), ("output", want_out, io["outputs"])):
        names = [g["name"] for g in got]
        if names != list(want):
            raise ExportFailed(f"the exported graph's {kind}s are {names}, expected {list(want)}", {"got": names})
        for g in got:
            dtype, shape = want[g["name"]]
            if g["dtype"] != dtype or g["shape"] != shape:
                raise ExportFailed(
                    f"{kind} {g['name']} is {g['dtype']}{g['shape']}, expected {dtype}{shape}",
                    {"name": g["name"], "got": {"dtype": g["dtype"], "shape": g["shape"]}, "expected": {"dtype": dtype, "shape": shape}},
                )


def embedding_tables(model, facts: dict[str, Any]) -> int:
    """Initializers holding a [vocab, hidden] (or transposed) table."""
    shapes = {(facts["vocab_size"], facts["hidden_size"]), (facts["hidden_size"], facts["vocab_size"])}
    n = 0
    for v in model.graph.initializers.values():
        if v.shape is not None and tuple(_dim_name(d) for d in v.shape) in shapes:
            n += 1
    return n


def initializer_bytes(model) -> int:
    total = 0
    for v in model.graph.initializers.values():
        t = v.const_value
        if t is not None:
            total += int(t.nbytes)
    return total


def _release_export_caches() -> None:
    """torch.export keeps its last trace in a module-level map (fake tensor id -> fx Node); the
    nodes reach the traced module and with it every weight. Drop it so the weights are freed
    before onnxruntime loads its own copy."""
    try:
        from torch.fx.experimental import proxy_tensor

        getattr(proxy_tensor, "_FAKE_TENSOR_ID_TO_PROXY_MAP_FOR_EXPORT", {}).clear()
    except Exception:  # private API: best effort
        pass


def _free_torch_weights(model) -> None:
    """Empty every parameter and buffer in place. The exporter's leftovers (module-level
    caches in torch.export and onnxscript) still reference the Parameter objects; swapping
    their storage frees the memory (or unmaps the safetensors pages) whatever holds them."""
    import torch

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.data = torch.empty(0, dtype=t.dtype)


def _drop_weights(model) -> None:
    """Cut the saved graph loose from the torch weights. onnxscript's rewrite rules keep
    module-level references to the last graph they matched, and the graph's initializers wrap
    the torch parameters, so merely deleting our references would keep every weight alive."""
    try:
        for value in list(model.graph.initializers.values()):
            value.const_value = None
        model.graph.initializers.clear()
    except Exception:  # best effort: only memory is at stake
        pass


def save_model(model, path: str, external: bool, emit: Emit | None) -> None:
    import onnx_ir as ir

    if not external:
        from sphana_bridge.modelio import save_ir_single_file

        shown = [0.0]

        def streamed(done: int, total: int) -> None:
            if emit and done / total - shown[0] >= 0.05:
                shown[0] = done / total
                emit("save", min(0.99, shown[0]), f"{done >> 20}/{total >> 20} MiB")

        save_ir_single_file(model, path, progress=streamed)
        return
    total = max(1, initializer_bytes(model))
    done = [0]

    def callback(tensor, info) -> None:
        done[0] += int(getattr(tensor, "nbytes", 0) or 0)
        if emit and info.index % 16 == 0:
            emit("save", min(0.99, done[0] / total), f"{info.index + 1}/{info.total} tensors")

    ir.save(
        model,
        path,
        external_data=os.path.basename(path) + ".data",
        callback=callback,
        alignment=EXTERNAL_ALIGNMENT,
    )


# --------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------


def export_model(
    model_dir: str,
    output: str,
    architecture: dict[str, Any],
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    proto_limit_bytes: int = DEFAULT_PROTO_LIMIT,
    prompt_ids: Sequence[int] | None = None,
    decode_steps: int = DEFAULT_DECODE_STEPS,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    emit: Emit | None = None,
    stamp_layers: bool = True,
    optimize: str = "none",
) -> dict[str, Any]:
    """``stamp_layers``: trace one layer per layer type and stamp it per layer (sphana_bridge.stamp),
    falling back to the full trace; False traces every layer (the benchmark's baseline).

    ``optimize="ort"``: onnxruntime's fusions (onnxscript's optimize_for_ort). Stamped exports fuse
    a small template and stamp the FUSED layer per layer (stamp.stamp_fused); exports that cannot
    be stamped fuse the whole traced graph. Either way the fused model passes the same parity gate
    against the same PyTorch reference (computed once), or the unfused model is kept and the
    result's ``optimize`` record says why."""
    import torch

    from sphana_bridge.modelio import Staging

    progress = _progress_to(emit)
    seconds: dict[str, float] = {}
    t = time.monotonic()
    architecture = arch.parse_facts(architecture)
    read_config(model_dir, architecture)
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    exporter_name = f"torch {torch.__version__.split('+')[0]} {exporter}"
    model, facts, prompt_ids, n_params = _load_checked(model_dir, architecture, prompt_ids, progress)
    seconds["load"] = round(time.monotonic() - t, 3)
    cfg = model.config
    progress("load", 1.0, f"{n_params} parameters, {facts['num_layers']} layers")
    # PyTorch's side of the parity gate first: the model can then be freed before
    # onnxruntime loads the exported weights (peak ~1x the weights instead of ~2x).
    ref = _torch_reference(model, prompt_ids, decode_steps, progress)
    job = _Job(
        model_dir, model, cfg, facts, architecture, getattr(model, "generation_config", None), exporter, exporter_name,
        opset, proto_limit_bytes, Staging(output), seconds, progress, emit,
        stamp_info={"applied": False} if exporter == "dynamo" and stamp_layers else None,
        optimize=_optimize_record(optimize, architecture),
    )
    del model  # the job holds the only reference: it frees the weights after saving
    try:
        job.sizes = trace_sizes(facts, avoid=[architecture["slidingWindow"] or 0])
        make_traceable(job.model)  # after the reference: the gate compares with HF's own rotary code
        parity, io, tables, external = _export_until_gated(job, ref, atol, rtol)
        if job.optimize is not None and job.optimize.get("reason") is None and not job.optimize["applied"]:
            parity, external = _fuse_full_graph(job, ref, parity, external, atol, rtol)
        finals = job.staging.commit(with_data=external)
    except BaseException:
        job.staging.abort()
        raise
    return _summary(job, output, finals, external, n_params, parity, io, tables)


def _summary(job: _Job, output: str, finals: list[str], external: bool, n_params: int, parity, io, tables: int) -> dict[str, Any]:
    return {
        "output": output,
        "files": _files(finals),
        "externalData": external,
        "seconds": job.seconds,
        "peakRssBytes": peak_rss_bytes(),
        "parameters": n_params,
        "parity": parity,
        "io": io,
        "opset": job.opset,
        "exporter": job.exporter_name,
        "embeddingTables": tables,
        "architecture": job.facts,
        **({"stamp": job.stamp_info} if job.stamp_info is not None else {}),
        **({"optimize": job.optimize} if job.optimize is not None else {}),
    }


def _progress_to(emit: Emit | None) -> Callable[[str, float | None, str], None]:
    def progress(step: str, fraction: float | None, message: str) -> None:
        if emit:
            emit(step, fraction, message)

    return progress


def _load_checked(model_dir: str, architecture: dict[str, Any], prompt_ids: Sequence[int] | None, progress):
    """The model, its facts (checked against the family's), the parity prompt and the parameter count."""
    progress("load", 0.0, f"loading {architecture['architecture']} from {model_dir}")
    model = _load_for_export(model_dir)
    facts = arch_facts(model.config)
    _check_sizes(facts)
    prompt_ids = _parity_prompt(prompt_ids, facts, model.config)
    n_params = sum(p.numel() for p in model.parameters())
    arch.check_model(model.config, n_params, architecture)
    return model, facts, prompt_ids, n_params


def _load_for_export(model_dir: str):
    try:
        return load_model(model_dir)
    except BridgeError:
        raise
    except BaseException as e:
        if _is_oom(e):
            raise OutOfMemory(f"out of memory while loading the model: {_root_message(e)}", {"stage": "load"}) from None
        raise


def _check_sizes(facts: dict[str, Any]) -> None:
    zero = [k for k, v in facts.items() if k != "max_position_embeddings" and _is_int(v) and v <= 0]
    if zero:
        raise InputError(f"the config has non-positive sizes: {', '.join(zero)}", {"facts": facts})


def _parity_prompt(prompt_ids: Sequence[int] | None, facts: dict[str, Any], cfg) -> Sequence[int]:
    """The request's prompt (every id inside the vocabulary) or the default one."""
    if prompt_ids is None:
        prompt_ids = default_prompt(facts["vocab_size"], getattr(cfg, "bos_token_id", None))
    bad = [i for i in prompt_ids if not (0 <= i < facts["vocab_size"])]
    if bad:
        raise BadRequest(f"parity prompt ids outside [0, {facts['vocab_size']}): {bad[:5]}", {"bad": bad[:20]})
    return prompt_ids


def _torch_reference(model, prompt_ids: Sequence[int], decode_steps: int, progress):
    progress("parity", 0.0, "PyTorch reference (prefill + greedy decode, and one uncached run)")
    try:
        return reference(model, list(prompt_ids), decode_steps)
    except BaseException as e:
        if _is_oom(e):
            raise OutOfMemory(f"out of memory running the PyTorch model: {_root_message(e)}", {"stage": "parity"}) from None
        raise


@dataclass
class _Job:
    """One export's state across its attempts (stamped first, then the full trace)."""

    model_dir: str
    model: Any  # None once its weights were freed after a save
    cfg: Any
    facts: dict[str, Any]
    architecture: dict[str, Any]
    generation: Any
    exporter: str
    exporter_name: str
    opset: int
    proto_limit_bytes: int
    staging: Any
    seconds: dict[str, float]
    progress: Callable[[str, float | None, str], None]
    emit: Emit | None
    stamp_info: dict[str, Any] | None = None
    # The fusions' record (None: not asked for): applied / reason / method; no reason yet means
    # the next stamped attempt (or, unstamped, the gated full graph) is fused.
    optimize: dict[str, Any] | None = None
    sizes: tuple[int, int, int] = (0, 0, 0)
    stamped: bool = False  # the current attempt's graph was stamped
    fused: bool = False  # the current attempt's graph is the stamped fused one
    template: Any = None  # the traced template (stamp.TemplateTrace) while its weights are alive

    def add_seconds(self, step: str, since: float) -> None:
        self.seconds[step] = round(self.seconds.get(step, 0.0) + time.monotonic() - since, 3)

    def fall_back(self, reason: str) -> None:
        """The stamped attempt failed: the next one traces every layer (or, when it was the fused
        graph that failed, stamps the unfused layer)."""
        if self.fused:  # the fused graph is discarded: only why (and the template's fusion counts) stay
            self.optimize.update(applied=False, reason=reason, method=None, fusionCounts={}, nonStandardOps=[])
            return
        self.stamp_info.update(applied=False, reason=reason)

    def wants_fused_stamp(self) -> bool:
        return self.optimize is not None and self.optimize.get("reason") is None


def _export_until_gated(job: _Job, ref, atol: float, rtol: float) -> tuple[dict[str, Any], dict[str, Any], int, bool]:
    """Stamping first (dynamo only); the full trace when it cannot be done or its graph fails a check
    or the gate. Returns the parity record, the I/O summary, the embedding-table count, and whether
    the weights went to an external data file."""
    while True:
        graph = _traced_graph(job)
        if graph is None:
            continue
        onnx_model, io, tables = graph
        del graph
        t = time.monotonic()
        weights = initializer_bytes(onnx_model)
        external = weights + GRAPH_MARGIN_BYTES > job.proto_limit_bytes
        job.progress("save", 0.0, f"{weights} bytes of weights, {'external data file' if external else 'single file'}")
        save_model(onnx_model, job.staging.onnx_path, external, job.emit)
        _drop_weights(onnx_model)
        del onnx_model
        _free_model(job)
        if not external and os.path.getsize(job.staging.onnx_path) > job.proto_limit_bytes:
            raise ExportFailed("the single-file model exceeds protoLimitBytes", {"bytes": os.path.getsize(job.staging.onnx_path)})
        job.add_seconds("save", t)
        job.progress("save", 1.0, "saved")
        parity = _gate(job, ref, atol, rtol)
        if parity is not None:
            return parity, io, tables, external


def _traced_graph(job: _Job) -> tuple[Any, dict[str, Any], int] | None:
    """One attempt's finished graph with its I/O summary and table count, or None when a stamped
    graph failed a check (the next attempt traces every layer)."""
    stamped = job.stamp_info is not None and job.stamp_info.get("reason") is None
    if job.model is None:  # freed by a stamped attempt whose parity failed
        job.model = load_model(job.model_dir)
        make_traceable(job.model)
    t = time.monotonic()
    onnx_model = _stamped_graph(job) if stamped else None
    job.stamped = onnx_model is not None
    if onnx_model is None:
        onnx_model = _full_graph(job.model, job.facts, job.exporter, job.opset, job.sizes, job.staging.dir, job.progress)
    try:
        io, tables = _finish_graph(onnx_model, job.cfg, job.facts, job.exporter_name, job.architecture, job.generation)
    except ExportFailed as e:
        if not job.stamped:
            raise
        job.add_seconds("export", t)
        job.fall_back(f"the {'fused ' if job.fused else ''}stamped graph failed a check: {e.message}")
        return None
    job.add_seconds("export", t)
    stamp_note = f", stamped from {len(job.stamp_info['templateLayers'])} traced layer(s)" if job.stamped else ""
    stamp_note += ", fused" if job.fused else ""
    job.progress("trace", 1.0, f"graph with {len(onnx_model.graph)} nodes" + stamp_note)
    return onnx_model, io, tables


def _free_model(job: _Job) -> None:
    """Free the torch weights once the graph is saved, before onnxruntime loads its own copy."""
    _free_torch_weights(job.model)
    job.model = None
    job.template = None  # its embedding, norm and head were the model's tensors
    _release_export_caches()
    gc.collect()


def _gate(job: _Job, ref, atol: float, rtol: float) -> dict[str, Any] | None:
    """The parity record of the staged files, or None when a stamped model failed it (its files are
    removed; the next attempt traces every layer)."""
    t = time.monotonic()
    try:
        parity = check_parity(ref, job.staging.onnx_path, atol=atol, rtol=rtol, emit=job.emit)
    except ParityFailed as e:
        if not job.stamped:
            raise
        job.add_seconds("parity", t)
        job.fall_back(f"the {'fused ' if job.fused else ''}stamped model failed the parity gate: {e.message}")
        job.progress("trace", None, "fused stamped model failed the parity gate; stamping the unfused layer" if job.fused else "stamped model failed the parity gate; tracing every layer")
        _remove_staged(job)
        return None
    except BridgeError:
        raise
    except BaseException as e:
        if _is_oom(e):
            raise OutOfMemory(f"out of memory during the parity check: {_root_message(e)}", {"stage": "parity"}) from None
        if not job.fused or isinstance(e, KeyboardInterrupt):
            raise
        # e.g. onnxruntime refuses a fused kernel's shape (GroupQueryAttention wants head_size % 16 == 0)
        traceback.print_exc(file=sys.stderr)
        job.add_seconds("parity", t)
        job.fall_back(f"the fused stamped model does not run in onnxruntime: {_root_message(e)}")
        job.progress("trace", None, "fused model does not run in onnxruntime; stamping the unfused layer")
        _remove_staged(job)
        return None
    if job.fused:
        job.optimize.update(applied=True, parity=parity)
        job.template = None
    window = job.architecture["slidingWindow"]
    if window:
        parity["slidingWindow"] = window
        parity["exceedsSlidingWindow"] = parity["positions"] > window
    job.seconds["parity"] = round(job.seconds.get("parity", 0.0) + time.monotonic() - t + ref.seconds, 3)
    return parity


def _remove_staged(job: _Job) -> None:
    for path in (job.staging.onnx_path, job.staging.data_path):
        if os.path.exists(path):
            os.remove(path)


def _stamped_graph(job: _Job) -> Any:
    """The whole graph stamped from one traced layer per layer type (the fused layer when the
    fusions are asked for and have not failed yet), or None (``job.stamp_info`` says why)."""
    from sphana_bridge import stamp

    info, progress, hidden = job.stamp_info, job.progress, job.facts["hidden_size"]
    job.fused = False
    try:
        if job.template is None:
            progress("trace", 0.0, f"dynamo export of one layer per layer type, opset {job.opset}, then stamped per layer")
            job.template = stamp.trace_template(job.model, job.facts, job.opset, job.sizes)
        if job.wants_fused_stamp():
            fused = _fused_stamp(job)
            if fused is not None:
                return fused
        onnx_model, result = stamp.stamp_unfused(job.template, job.model, hidden)
        job.template = None  # stamp_unfused consumed its graph
    except BaseException as e:
        if _is_oom(e) or isinstance(e, KeyboardInterrupt):
            raise
        if not isinstance(e, stamp.NotSeparable):
            traceback.print_exc(file=sys.stderr)
        job.template = None
        info.update(applied=False, reason=f"not stamped: {type(e).__name__}: {one_line(str(e), 300)}")
        progress("trace", None, f"{info['reason']}; tracing every layer")
        _release_export_caches()
        return None
    info.clear()
    info.update(result)
    return onnx_model


def _fused_stamp(job: _Job) -> Any:
    """The fused layer stamped per layer (job.fused), or None with the reason recorded (the
    template is left as it was, for the unfused stamp)."""
    from sphana_bridge import optimize as opt
    from sphana_bridge import stamp

    job.progress("optimize", 0.0, "onnxruntime fusions on a small template (layer 0 and one later layer per type), then the fused layer stamped per layer")
    t = time.monotonic()
    try:
        onnx_model, result = stamp.stamp_fused(job.template, job.model, job.facts["hidden_size"], opt.fuse)
    except BaseException as e:
        if _is_oom(e) or isinstance(e, KeyboardInterrupt):
            raise
        if not isinstance(e, stamp.NotSeparable):
            traceback.print_exc(file=sys.stderr)
        job.optimize.update(applied=False, reason=f"the fused layer was not stamped: {type(e).__name__}: {one_line(str(e), 300)}")
        job.seconds["fuse"] = round(time.monotonic() - t, 3)
        job.progress("optimize", None, f"{job.optimize['reason']}; stamping the unfused layer")
        return None
    ops = opt.op_histogram(onnx_model)
    job.optimize.update(
        method="stamped", fusionCounts=opt.fused_op_counts(ops), templateFusionCounts=result.pop("fusionCounts"),
        nonStandardOps=sorted(k for k in ops if "." in k),
    )
    job.seconds["fuse"] = round(time.monotonic() - t, 3)
    job.stamp_info.clear()
    job.stamp_info.update(result)
    job.fused = True
    return onnx_model


def _optimize_record(mode: str, architecture: dict[str, Any]) -> dict[str, Any] | None:
    if mode == "none":
        return None
    record: dict[str, Any] = {"mode": mode, "applied": False, "method": None, "fusionCounts": {}, "nonStandardOps": []}
    if architecture["slidingWindow"]:
        # onnxscript 0.7.2's GroupQueryAttention fusion matches the causal part of a sliding-window
        # mask and drops the window: the tiny Mistral / Gemma 3 exports fail parity fused (max |diff|
        # 11.7 / 5.1), and a real model's window is longer than the parity prompt, so the gate
        # could not see it there.
        record["reason"] = f"sliding-window attention (window {architecture['slidingWindow']}): onnxscript's GroupQueryAttention fusion does not keep the window"
    return record


def _fuse_full_graph(job: _Job, ref, parity: dict[str, Any], external: bool, atol: float, rtol: float) -> tuple[dict[str, Any], bool]:
    """The whole gated unfused graph fused (exports that were not stamped), gated against the same
    reference; its files replace the staged unfused ones only when they pass."""
    from sphana_bridge import optimize as opt

    job.progress("optimize", 0.0, "onnxruntime fusions on the whole graph (this export was not stamped)")
    t = time.monotonic()
    out_dir = os.path.join(job.staging.dir, "fused")
    os.makedirs(out_dir, exist_ok=True)
    result = opt.fuse_file(job.staging.onnx_path, os.path.join(out_dir, os.path.basename(job.staging.onnx_path)), ref,
                           proto_limit_bytes=job.proto_limit_bytes, atol=atol, rtol=rtol, emit=job.emit)
    job.seconds["fuse"] = round(time.monotonic() - t, 3)
    record = job.optimize
    if not result["applied"]:
        record.update(applied=False, reason=f"full-graph fusion: {result['reason']}")
        return parity, external
    record.update(applied=True, method="full-graph", fusionCounts=result["fusedOps"], templateFusionCounts=result["fusionCounts"],
                  nonStandardOps=result["nonStandardOps"], parity=result["parity"])
    _remove_staged(job)
    for f in result["files"]:
        os.replace(f["path"], os.path.join(job.staging.dir, os.path.basename(f["path"])))
    return result["parity"], result["externalData"]


def _full_graph(model, facts, exporter: str, opset: int, sizes, work_dir: str, progress) -> Any:
    import torch

    b, s, p = sizes
    progress("trace", 0.0, f"{exporter} export, opset {opset}, tracing with batch {b}, sequence {s}, past {p}")
    wrapper = make_wrapper(model, facts["num_layers"])
    args = sample_inputs(facts, b, s, p)
    try:
        with torch.inference_mode(False):
            if exporter == "dynamo":
                return export_dynamo(wrapper, args, facts["num_layers"], opset)
            return export_torchscript(wrapper, args, facts["num_layers"], opset, work_dir)
    except BridgeError:
        raise
    except BaseException as e:
        traceback.print_exc(file=sys.stderr)
        if _is_oom(e):
            raise OutOfMemory(f"out of memory during export: {_root_message(e)}", {"stage": "export"}) from None
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ExportFailed(
            f"torch.onnx ({exporter}) failed: {_root_message(e)}",
            {"exporter": exporter, "opset": opset, "exception": type(e).__name__, "summary": one_line(str(e), 4000)},
        ) from None


def _finish_graph(onnx_model, cfg, facts, exporter_name: str, architecture, generation) -> tuple[dict[str, Any], int]:
    """Contract dim names, the I/O check, the tied-table check and the metadata."""
    rename_dims(onnx_model)
    io = io_summary(onnx_model)
    check_contract(io, facts)
    tables = embedding_tables(onnx_model, facts)
    if facts["tie_word_embeddings"] and tables != 1:
        raise ExportFailed(
            f"tied embeddings: the graph holds {tables} [vocab, hidden] tables, expected exactly 1",
            {"embeddingTables": tables},
        )
    for k, v in _metadata(cfg, facts, exporter_name, architecture, generation).items():
        onnx_model.metadata_props[k] = v
    onnx_model.producer_name = "sphana"
    onnx_model.producer_version = exporter_name
    return io, tables


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def run_export(request: dict[str, Any], emitter) -> dict[str, Any]:
    allowed = {"modelDir", "output", "architecture", "opset", "exporter", "protoLimitBytes", "optimize", "parity"}
    unknown = sorted(set(request) - allowed)
    if unknown:
        raise BadRequest(f"unknown request field(s) for export: {', '.join(unknown)}", {"unknown": unknown, "allowed": sorted(allowed)})
    model_dir = request.get("modelDir")
    output = request.get("output")
    if not isinstance(model_dir, str) or not model_dir:
        raise BadRequest("request field 'modelDir' must be a folder path", {"field": "modelDir"})
    if not isinstance(output, str) or not output.endswith(".onnx"):
        raise BadRequest("request field 'output' must be a path ending in .onnx", {"field": "output"})
    opset = request.get("opset", DEFAULT_OPSET)
    if not _is_int(opset) or not (14 <= opset <= 23):
        raise BadRequest("request field 'opset' must be an integer in [14, 23]", {"field": "opset"})
    exporter = request.get("exporter", EXPORT_DEFAULTS["exporter"])
    if exporter not in EXPORTERS:
        raise BadRequest("request field 'exporter' must be 'dynamo' or 'torchscript'", {"field": "exporter"})
    limit = request.get("protoLimitBytes", DEFAULT_PROTO_LIMIT)
    if not _is_int(limit) or limit <= 0:
        raise BadRequest("request field 'protoLimitBytes' must be a positive integer", {"field": "protoLimitBytes"})
    parity = request.get("parity") or {}
    if not isinstance(parity, dict):
        raise BadRequest("request field 'parity' must be an object", {"field": "parity"})
    unknown = sorted(set(parity) - PARITY_KEYS)
    if unknown:
        raise BadRequest(f"unknown parity field(s): {', '.join(unknown)}", {"unknown": unknown})
    prompt = parity.get("promptIds")
    if prompt is not None and (not isinstance(prompt, list) or not prompt or not all(_is_int(i) for i in prompt)):
        raise BadRequest("parity.promptIds must be a non-empty list of integers", {"field": "parity.promptIds"})
    steps = parity.get("decodeSteps", DEFAULT_DECODE_STEPS)
    if not _is_int(steps) or steps < 0:
        raise BadRequest("parity.decodeSteps must be a non-negative integer", {"field": "parity.decodeSteps"})
    atol = parity.get("atol", DEFAULT_ATOL)
    rtol = parity.get("rtol", DEFAULT_RTOL)
    if not _is_num(atol) or atol < 0 or not _is_num(rtol) or rtol < 0:
        raise BadRequest("parity.atol / parity.rtol must be non-negative numbers", {"field": "parity"})
    optimize = request.get("optimize", "none")
    if optimize not in ("none", "ort"):
        raise BadRequest("request field 'optimize' must be 'none' or 'ort'", {"field": "optimize"})
    return export_model(
        model_dir, output, arch.parse_facts(request.get("architecture")), opset=opset, exporter=exporter, proto_limit_bytes=limit, prompt_ids=prompt,
        decode_steps=steps, atol=float(atol), rtol=float(rtol), emit=emitter.progress, optimize=optimize,
    )
