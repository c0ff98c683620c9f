"""`synthesize` and `synthetic-tokenizer`: Hugging Face folders built offline from a config.

No weights are ever downloaded. ``synthesize`` builds the model's *shape* on the meta
device (no memory), then generates every parameter tensor from a seeded generator and
streams them into safetensors shard by shard, so peak memory is about one shard (≤ 2 GB)
rather than the whole model. The same seed gives byte-identical files.

Initialisation (deliberately NOT Hugging Face's std-0.02 default, under which a tiny
model's logits are all nearly equal and attention barely contributes, so that a broken
export could pass a tolerance check):

* embedding (and untied LM head) rows ~ N(0, 1/hidden) times a per-row log-normal scale
  exp(N(0, 0.5²)): with a unit-RMS final hidden state the logits have std ≈ 1.3 and a
  heavy upper tail, so top-1 leads the runner-up by ~1 logit std (median; ~0.15 without
  the row scales at a 128k vocabulary), far above fp32 noise;
* every Linear weight ~ N(0, 1/fan_in): each attention and MLP block contributes O(1)
  to the residual stream, and attention scores are O(1), so the softmax is far from
  uniform and masks, RoPE and the KV cache all change the logits measurably;
* norm weights: the identity scale (1, or 0 where the facts' ``normOffset`` is 1: Gemma's
  ``1 + w``) plus N(0, 0.1²);
* biases (Qwen2's q/k/v) ~ N(0, 0.2²), so the bias path is exercised.

The model's structure comes from the request's architecture facts (sphana_bridge.architecture):
the transformers class config.architectures[0] names, checked against the facts.

``synthetic-tokenizer`` makes a clearly synthetic byte-level BPE tokenizer of exactly
``vocabSize`` entries: byte alphabet + merges learned (deterministically) from a fixed
built-in text, special tokens at their required ids, and the remaining ids filled with
unreachable ``<|sphana_unused_N|>`` pieces.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Any, Callable

from sphana_bridge.architecture import check_config, check_model, model_class, norm_init_mean, parse_facts
from sphana_bridge.cli import check_keys as _check_keys
from sphana_bridge.protocol import BadRequest, InputError

Emit = Callable[..., None]  # emit(step, fraction, message)

SHARD_MAX_BYTES = 2_000_000_000  # "2GB" the way Hugging Face counts it
ROW_NORM_SIGMA = 0.5
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"

def _progress(emit: Emit | None, step: str, fraction: float | None, message: str) -> None:
    if emit is not None:
        emit(step, fraction, message)


def _require(request: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in request:
        raise BadRequest(f"missing request field {key!r} ({what})", {"field": key})
    value = request[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"request field {key!r} must be {what}", {"field": key, "got": type(value).__name__})
    return value


def _floats_where_declared(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """JSON from JavaScript writes 30.0 as 30: give float-typed config fields their float back."""
    import typing

    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        try:
            hints.update(typing.get_type_hints(klass))
        except Exception:
            hints.update(getattr(klass, "__annotations__", {}) or {})
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool) and key in hints:
            hint = hints[key]
            args = typing.get_args(hint) or (hint,)
            if float in args and int not in args:
                out[key] = float(value)
    return out


def build_config(config: dict[str, Any], facts: dict[str, Any]):
    """A transformers config object from a config.json dict, of the class the facts name; InputError if invalid."""
    check_config(config, facts, "config")
    config_class = model_class(facts["architecture"]).config_class
    rest = {k: v for k, v in config.items() if k not in ("model_type", "transformers_version")}
    rest["architectures"] = [facts["architecture"]]
    rest = _floats_where_declared(config_class, rest)
    try:
        cfg = config_class(**rest)
    except Exception as e:  # invalid values (e.g. heads not dividing hidden)
        raise InputError(f"invalid {facts['architecture']} config: {type(e).__name__}: {e}", {"architecture": facts["architecture"]}) from None
    cfg.dtype = "float32"
    return cfg


def _meta_model(cfg, facts: dict[str, Any]):
    import torch

    with torch.device("meta"):
        return model_class(facts["architecture"])._from_config(cfg, dtype=torch.float32)


def _fill(name: str, shape: tuple[int, ...], norm_mean: float, generator) -> Any:
    """One parameter's synthetic value (float32, CPU)."""
    import torch

    leaf = name.rsplit(".", 1)[-1]
    t = torch.empty(shape, dtype=torch.float32)
    if "embed_tokens" in name or name.startswith("lm_head."):
        # Rows of varying norm (log-normal, like real vocabularies): the upper tail of the
        # logits spreads out, so the top-1 margin is ~1 logit std instead of ~0.15.
        t.normal_(0.0, 1.0 / math.sqrt(shape[-1]), generator=generator)
        row_scale = torch.empty((shape[0], 1), dtype=torch.float32).normal_(0.0, ROW_NORM_SIGMA, generator=generator)
        return t.mul_(row_scale.exp_())
    if "norm" in name and len(shape) == 1:
        return t.normal_(norm_mean, 0.1, generator=generator)
    if leaf == "bias":
        return t.normal_(0.0, 0.2, generator=generator)
    if len(shape) == 2:  # Linear: [out, in]
        return t.normal_(0.0, 1.0 / math.sqrt(shape[1]), generator=generator)
    return t.normal_(0.0, 0.1, generator=generator)


def _plan_shards(params: list[tuple[str, tuple[int, ...]]]) -> list[list[tuple[str, tuple[int, ...]]]]:
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in params:
        nbytes = 4 * math.prod(shape)
        if shards[-1] and size + nbytes > SHARD_MAX_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def _write_generation_config(cfg, generation: dict[str, Any] | None, out_dir: str) -> None:
    from transformers import GenerationConfig

    if generation is None:
        gen = GenerationConfig.from_model_config(cfg)
    else:
        rest = {k: v for k, v in generation.items() if k != "transformers_version"}
        gen = GenerationConfig(**rest)
    gen.save_pretrained(out_dir)


def _files(out_dir: str, names: list[str]) -> list[dict[str, Any]]:
    return [{"path": os.path.join(out_dir, n), "bytes": os.path.getsize(os.path.join(out_dir, n))} for n in names]


def synthesize(
    config: dict[str, Any], facts: dict[str, Any], generation_config: dict[str, Any] | None, seed: int, out_dir: str,
    emit: Emit | None = None,
) -> dict[str, Any]:
    """Write a random-weight Hugging Face folder (config, generation config, safetensors) into out_dir."""
    import torch
    from safetensors.torch import save_file

    start = time.monotonic()
    _progress(emit, "config", 0.0, "building config")
    facts = parse_facts(facts)
    cfg = build_config(config, facts)
    meta = _meta_model(cfg, facts)
    # named_parameters() skips tied duplicates (lm_head.weight when tied), like save_pretrained.
    params = [(n, tuple(p.shape)) for n, p in meta.named_parameters()]
    n_params = sum(math.prod(s) for _, s in params)
    del meta
    check_model(cfg, n_params, facts)
    norm_mean = norm_init_mean(facts)
    shards = _plan_shards(params)
    total_bytes = 4 * n_params

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".sphana-synth-", dir=out_dir)
    names: list[str] = []
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        metadata = {"format": "pt"}
        weight_map: dict[str, str] = {}
        written = 0
        for i, shard in enumerate(shards):
            fname = WEIGHTS_NAME if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            tensors = {}
            for name, shape in shard:
                tensors[name] = _fill(name, shape, norm_mean, generator)
                weight_map[name] = fname
                written += 4 * math.prod(shape)
                _progress(emit, "weights", 0.95 * written / total_bytes, f"{name} {list(shape)}")
            save_file(tensors, os.path.join(stage, fname), metadata=metadata)
            del tensors
            names.append(fname)
        if len(shards) > 1:
            index = {
                "metadata": {"total_parameters": n_params, "total_size": total_bytes},
                "weight_map": dict(sorted(weight_map.items())),
            }
            with open(os.path.join(stage, INDEX_NAME), "w", encoding="utf-8") as f:
                json.dump(index, f, indent=2, sort_keys=True)
                f.write("\n")
            names.append(INDEX_NAME)
        cfg.save_pretrained(stage)
        _write_generation_config(cfg, generation_config, stage)
        names = ["config.json", "generation_config.json"] + names
        # Move into place; drop weights of an earlier run that this one does not overwrite.
        for old in os.listdir(out_dir):
            if (old == WEIGHTS_NAME or old == INDEX_NAME or (old.startswith("model-") and old.endswith(".safetensors"))) and old not in names:
                os.remove(os.path.join(out_dir, old))
        for n in names:
            os.replace(os.path.join(stage, n), os.path.join(out_dir, n))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    _progress(emit, "weights", 1.0, f"wrote {len(shards)} weight file(s)")
    return {"files": _files(out_dir, names), "parameters": n_params, "seconds": round(time.monotonic() - start, 3)}


def run_synthesize(request: dict[str, Any], emitter) -> dict[str, Any]:
    _check_keys(request, {"config", "architecture", "generationConfig", "seed", "outDir"}, "synthesize")
    config = _require(request, "config", dict, "a config.json object")
    facts = parse_facts(request.get("architecture"))
    generation = request.get("generationConfig")
    if generation is not None and not isinstance(generation, dict):
        raise BadRequest("request field 'generationConfig' must be an object or null", {"field": "generationConfig"})
    seed = _require(request, "seed", int, "an integer")
    out_dir = _require(request, "outDir", str, "a folder path")
    return synthesize(config, facts, generation, seed, out_dir, emitter.progress)


# --------------------------------------------------------------------------------------
# synthetic tokenizer
# --------------------------------------------------------------------------------------

# Fixed training text: varied English, code and numbers so common merges appear.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A synthetic tokenizer is not a real one:
it exists so that an exported model can be run end to end without the original files.
Once upon a time there was a small language model that lived inside an ONNX graph.
It read the tokens one by one, kept its keys and values in a cache, and answered.
def main(argv):
    for index, value in enumerate(argv):
        if value.startswith("--"):
            print(index, value)
    return 0
The year 2024 had 366 days; 3.14159 is close to pi and 2.71828 is close to e.
Sphinx of black quartz, judge my vow. How vexingly quick daft zebras jump!
She sells sea shells by the sea shore, and the shells she sells are sea shells.
{"name": "sphana", "version": "1.0.0", "description": "verified ONNX artifacts"}
Attention is computed from queries, keys and values; the softmax turns scores into weights.
"""


def _unused(i: int) -> str:
    return f"<|sphana_unused_{i}|>"


def synthetic_tokenizer(
    vocab_size: int,
    bos_token_id: int | None,
    eos_token_ids: list[int],
    pad_token_id: int | None,
    special_tokens: dict[str, int],
    out_dir: str,
    model_type: str,
    add_bos_token: bool | None = None,
    model_max_length: int | None = None,
    emit: Emit | None = None,
) -> dict[str, Any]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    start = time.monotonic()
    # Every special id gets a content string; explicit ones win.
    by_id: dict[int, str] = {}
    for content, tid in special_tokens.items():
        if not isinstance(tid, int) or isinstance(tid, bool) or not (0 <= tid < vocab_size):
            raise InputError(f"special token {content!r} has id {tid!r} outside [0, {vocab_size})", {"token": content})
        if tid in by_id:
            raise InputError(f"special tokens {by_id[tid]!r} and {content!r} share id {tid}", {"id": tid})
        by_id[tid] = content
    defaults = [(bos_token_id, "<|sphana_bos|>")] + [(e, f"<|sphana_eos_{i}|>") for i, e in enumerate(eos_token_ids)]
    defaults.append((pad_token_id, "<|sphana_pad|>"))
    for tid, content in defaults:
        if tid is None:
            continue
        if not (0 <= tid < vocab_size):
            raise InputError(f"token id {tid} outside [0, {vocab_size})", {"id": tid})
        by_id.setdefault(tid, content)
    if len(set(by_id.values())) != len(by_id):
        raise InputError("two special ids share one content string", {"special": {str(k): v for k, v in by_id.items()}})

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    room = vocab_size - len(by_id)
    if room < len(alphabet):
        raise InputError(
            f"vocabSize {vocab_size} leaves {room} ids after {len(by_id)} special tokens; a byte-level BPE needs at least {len(alphabet)}",
            {"vocabSize": vocab_size},
        )
    _progress(emit, "train", 0.0, "training byte-level BPE on the built-in text")
    # Train (deterministic: single input, fixed order) as far as the text allows.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=room, min_frequency=2, show_progress=False, initial_alphabet=alphabet, special_tokens=[]
    )
    trained.train_from_iterator([_CORPUS], trainer=trainer)
    state = json.loads(trained.to_str())
    learned_vocab: dict[str, int] = state["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    learned = [tok for tok, _ in sorted(learned_vocab.items(), key=lambda kv: kv[1])]

    # Final ids: specials at theirs, learned pieces in order on the free ids, then fillers.
    vocab: dict[str, int] = {content: tid for tid, content in by_id.items()}
    free = (i for i in range(vocab_size) if i not in by_id)
    for tok in learned:
        vocab[tok] = next(free)
    n_unused = 0
    for tid in free:
        vocab[_unused(n_unused)] = tid
        n_unused += 1
    if len(vocab) != vocab_size:
        raise RuntimeError(f"internal: built {len(vocab)} entries, expected {vocab_size}")

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials_sorted = sorted(by_id.items())
    tok.add_special_tokens([c for _, c in specials_sorted])
    if add_bos_token is None:
        add_bos_token = bos_token_id is not None
    bos = by_id.get(bos_token_id) if bos_token_id is not None else None
    if add_bos_token and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_token_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    for tid, content in specials_sorted:
        if tok.token_to_id(content) != tid:
            raise RuntimeError(f"internal: special token {content!r} landed on {tok.token_to_id(content)}, not {tid}")
    if tok.get_vocab_size(with_added_tokens=True) != vocab_size:
        raise RuntimeError("internal: vocabulary size changed when adding special tokens")

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    eos = [by_id[e] for e in eos_token_ids]
    pad = by_id.get(pad_token_id) if pad_token_id is not None else None
    special_map: dict[str, Any] = {}
    if bos is not None:
        special_map["bos_token"] = bos
    if eos:
        special_map["eos_token"] = eos[0]
    if pad is not None:
        special_map["pad_token"] = pad
    if len(eos) > 1:
        special_map["additional_special_tokens"] = eos[1:]
    tok_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_type": model_type,
        "add_bos_token": bool(add_bos_token and bos is not None),
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length if model_max_length is not None else 1 << 30,
        "added_tokens_decoder": {
            str(tid): {"content": c, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False, "special": True}
            for tid, c in specials_sorted
        },
        "sphana_synthetic": True,
        "sphana_note": "synthetic byte-level BPE trained on a fixed built-in text; not the model's real tokenizer",
        **special_map,
    }
    tok.save(os.path.join(out_dir, "tokenizer.json"), pretty=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special_map, f, indent=2, sort_keys=True)
        f.write("\n")
    names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    _progress(emit, "train", 1.0, f"{len(learned)} learned pieces, {n_unused} unused fillers")
    return {
        "files": _files(out_dir, names),
        "vocabSize": vocab_size,
        "learnedTokens": len(learned),
        "merges": len(merges),
        "unusedTokens": n_unused,
        "specialTokens": {c: tid for tid, c in specials_sorted},
        "synthetic": True,
        "seconds": round(time.monotonic() - start, 3),
    }


def run_synthetic_tokenizer(request: dict[str, Any], emitter) -> dict[str, Any]:
    allowed = {
        "vocabSize", "bosTokenId", "eosTokenIds", "padTokenId", "specialTokens", "outDir", "modelType",
        "addBosToken", "modelMaxLength",
    }
    _check_keys(request, allowed, "synthetic-tokenizer")
    vocab_size = _require(request, "vocabSize", int, "a positive integer")
    out_dir = _require(request, "outDir", str, "a folder path")
    model_type = _require(request, "modelType", str, "a string")

    def opt_int(key: str) -> int | None:
        v = request.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise BadRequest(f"request field {key!r} must be an integer or null", {"field": key})
        return v

    eos = request.get("eosTokenIds", [])
    if not isinstance(eos, list) or not all(isinstance(e, int) and not isinstance(e, bool) for e in eos):
        raise BadRequest("request field 'eosTokenIds' must be a list of integers", {"field": "eosTokenIds"})
    special = request.get("specialTokens", {}) or {}
    if not isinstance(special, dict):
        raise BadRequest("request field 'specialTokens' must be an object {content: id}", {"field": "specialTokens"})
    add_bos = request.get("addBosToken")
    if add_bos is not None and not isinstance(add_bos, bool):
        raise BadRequest("request field 'addBosToken' must be a boolean or null", {"field": "addBosToken"})
    return synthetic_tokenizer(
        vocab_size, opt_int("bosTokenId"), list(eos), opt_int("padTokenId"), dict(special), out_dir, model_type,
        add_bos_token=add_bos, model_max_length=opt_int("modelMaxLength"), emit=emitter.progress,
    )
