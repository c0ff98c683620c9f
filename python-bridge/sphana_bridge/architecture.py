"""Architecture facts: received from TypeScript (src/models/facts.ts), never decided here.

The bridge keeps no list of architectures and no switch on ``model_type``. A request that
touches a model's structure (``synthesize``, ``export``) carries ``architecture``: the facts
of the model's family resolved for its config. The bridge loads the transformers class that
``config.architectures[0]`` names (the key TypeScript's family index uses too), checks the
facts against that model (a disagreement is a bug in a TypeScript family file: ``Internal``),
and writes them into the ONNX metadata.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sphana_bridge.protocol import BadRequest, Internal, InputError

LAYER_TYPES = ("full_attention", "sliding_attention")

# field -> (check, what it must be)
_FIELDS: dict[str, tuple[Any, str]] = {
    "family": (lambda v: isinstance(v, str) and bool(v), "a family id"),
    "architecture": (lambda v: isinstance(v, str) and v.isidentifier(), "a transformers class name"),
    "normOffset": (lambda v: v in (0, 1) and not isinstance(v, bool), "0 or 1"),
    "embeddingScale": (lambda v: v is None or _is_pos(v), "a positive number or null"),
    "attentionBias": (lambda v: v in ("none", "qkv", "qkvo"), "'none', 'qkv' or 'qkvo'"),
    "mlpBias": (lambda v: isinstance(v, bool), "a boolean"),
    "qkNorm": (lambda v: isinstance(v, bool), "a boolean"),
    "layerNorms": (lambda v: v in (2, 4) and not isinstance(v, bool), "2 or 4"),
    "fusedQkv": (lambda v: isinstance(v, bool), "a boolean"),
    "fusedGateUp": (lambda v: isinstance(v, bool), "a boolean"),
    "slidingWindow": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer or null"),
    "layerTypes": (lambda v: isinstance(v, list) and bool(v) and all(t in LAYER_TYPES for t in v), "a list of layer types"),
    "rope": (lambda v: isinstance(v, dict) and all(k in LAYER_TYPES and isinstance(r, dict) and _is_pos(r.get("theta")) for k, r in v.items()), "{layer type: {theta, scaling}}"),
    "attnLogitSoftcapping": (lambda v: v is None or _is_pos(v), "a positive number or null"),
    "finalLogitSoftcapping": (lambda v: v is None or _is_pos(v), "a positive number or null"),
    "activation": (lambda v: isinstance(v, str) and bool(v), "an activation name"),
    "tiedEmbeddings": (lambda v: isinstance(v, bool), "a boolean"),
    "headDim": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "parameters": (lambda v: _is_int(v) and v > 0, "a positive integer"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def parse_facts(value: Any) -> dict[str, Any]:
    """The request's ``architecture`` object, every field present and well-typed (BadRequest otherwise)."""
    if not isinstance(value, dict):
        raise BadRequest("request field 'architecture' must be the model's architecture facts (an object)", {"field": "architecture"})
    unknown = sorted(set(value) - set(_FIELDS))
    missing = sorted(set(_FIELDS) - set(value))
    if unknown or missing:
        raise BadRequest(
            f"architecture facts: unknown field(s) {unknown}, missing field(s) {missing}",
            {"field": "architecture", "unknown": unknown, "missing": missing, "allowed": sorted(_FIELDS)},
        )
    for key, (ok, what) in _FIELDS.items():
        if not ok(value[key]):
            raise BadRequest(f"architecture.{key} must be {what}", {"field": f"architecture.{key}", "got": value[key]})
    if value["slidingWindow"] is None and "sliding_attention" in value["layerTypes"]:
        raise BadRequest("architecture.layerTypes has sliding layers but slidingWindow is null", {"field": "architecture.slidingWindow"})
    return dict(value)


def model_class(name: str):
    """The transformers causal-LM class called ``name`` (config.architectures[0])."""
    import transformers
    from transformers import PreTrainedModel

    try:
        cls = getattr(transformers, name)
    except (AttributeError, ImportError, RuntimeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, PreTrainedModel) and name.endswith("ForCausalLM")):
        raise InputError(
            f"transformers {transformers.__version__} has no causal-LM class {name!r}",
            {"architecture": name, "transformers": transformers.__version__},
        )
    return cls


def check_config(config: dict[str, Any], facts: dict[str, Any], where: str = "config.json") -> None:
    """config.json names the facts' class (architectures[0]) and that class's model_type."""
    archs = config.get("architectures")
    if archs is not None and (not isinstance(archs, list) or not archs or archs[0] != facts["architecture"]):
        raise InputError(
            f"{where}: architectures {archs!r} do not start with {facts['architecture']!r}, the architecture the request's facts describe",
            {"architectures": archs, "architecture": facts["architecture"]},
        )
    expected = model_class(facts["architecture"]).config_class.model_type
    if config.get("model_type") not in (None, expected):
        raise InputError(
            f"{where}: model_type {config.get('model_type')!r} is not {expected!r}, the model_type of {facts['architecture']}",
            {"model_type": config.get("model_type"), "expected": expected},
        )


def check_model(cfg, parameters: int, facts: dict[str, Any]) -> None:
    """The facts agree with transformers' model built from cfg (what can be compared without running it)."""
    wrong: list[str] = []
    layers = cfg.num_hidden_layers
    if parameters != facts["parameters"]:
        wrong.append(f"parameters {facts['parameters']} (facts) vs {parameters} (model)")
    if len(facts["layerTypes"]) != layers:
        wrong.append(f"{len(facts['layerTypes'])} layer types for {layers} layers")
    listed = getattr(cfg, "layer_types", None)
    if listed is not None and list(listed) != facts["layerTypes"]:
        wrong.append(f"layer_types {','.join(listed)} (model) vs {','.join(facts['layerTypes'])} (facts)")
    if facts["slidingWindow"] is not None and getattr(cfg, "sliding_window", None) != facts["slidingWindow"]:
        wrong.append(f"sliding_window {getattr(cfg, 'sliding_window', None)} (model) vs {facts['slidingWindow']} (facts)")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if head_dim != facts["headDim"]:
        wrong.append(f"head_dim {head_dim} (model) vs {facts['headDim']} (facts)")
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    if tied != facts["tiedEmbeddings"]:
        wrong.append(f"tie_word_embeddings {tied} (model) vs {facts['tiedEmbeddings']} (facts)")
    for key, fact in (("attn_logit_softcapping", "attnLogitSoftcapping"), ("final_logit_softcapping", "finalLogitSoftcapping")):
        if getattr(cfg, key, None) != facts[fact]:
            wrong.append(f"{key} {getattr(cfg, key, None)} (model) vs {facts[fact]} (facts)")
    if wrong:
        raise Internal(
            f"the architecture facts of family {facts['family']!r} disagree with transformers' {facts['architecture']}: "
            + "; ".join(wrong) + f" (a bug in src/models/{facts['family']}.ts)",
            {"wrong": wrong, "family": facts["family"]},
        )


def norm_init_mean(facts: dict[str, Any]) -> float:
    """Where a synthetic norm weight centres: the identity scale, 1 - normOffset (0 for Gemma's 1 + w)."""
    return 1.0 - facts["normOffset"]


def metadata_value(v: Any) -> str:
    """One ONNX metadata_props value: booleans as true/false, containers as compact sorted JSON."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


def metadata(facts: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props entries stating the facts (sphana.* keys, PROTOCOL.md)."""
    s = metadata_value
    meta = {
        "sphana.family": facts["family"],
        "sphana.architecture": facts["architecture"],
        "sphana.norm_offset": s(facts["normOffset"]),
        "sphana.attention_bias": s(facts["attentionBias"] != "none"),
        "sphana.attention_bias_projections": facts["attentionBias"],
        "sphana.mlp_bias": s(facts["mlpBias"]),
        "sphana.qk_norm": s(facts["qkNorm"]),
        "sphana.activation": facts["activation"],
    }
    if facts["embeddingScale"] is not None:
        meta["sphana.embedding_scale"] = s(float(facts["embeddingScale"]))
    if facts["fusedQkv"] or facts["fusedGateUp"]:
        meta["sphana.fused_projections"] = ",".join(n for n, on in (("qkv", facts["fusedQkv"]), ("gate_up", facts["fusedGateUp"])) if on)
    if facts["slidingWindow"] is not None:
        meta["sphana.layer_types"] = ",".join(facts["layerTypes"])
        meta["sphana.sliding_window"] = s(facts["slidingWindow"])
        meta["sphana.sliding_window_cache"] = "full cache, sliding layers masked to the window"
    if len(facts["rope"]) > 1:
        meta["sphana.rope_per_layer_type"] = s(facts["rope"])
    for key, fact in (("attn_logit_softcapping", "attnLogitSoftcapping"), ("final_logit_softcapping", "finalLogitSoftcapping")):
        if facts[fact] is not None:
            meta[f"sphana.{key}"] = s(float(facts[fact]))  # JSON from JavaScript writes 2.0 as 2
    return meta
