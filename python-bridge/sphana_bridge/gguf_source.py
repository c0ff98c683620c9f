"""`gguf-to-hf`: a GGUF file (llama.cpp's format) as a weight source.

The file is untrusted. Before anything reads it for real, ``scan_gguf`` walks its header with
explicit bounds (every length and count against the bytes that are left, tensor extents
against the file's size, caps on counts that the ``gguf`` package would otherwise turn into
millions of Python objects) and raises a one-line ``InputError`` (details.code
``E_GGUF_INVALID``) on the first problem. Only then does transformers' GGUF loader (which
uses ``gguf.GGUFReader``, a memory map with few checks of its own) dequantize the tensors to
fp32; the architecture, config and tokenizer come from the file's own metadata.

What ``gguf.GGUFReader`` 0.19.0 checks by itself: the magic, the version (2 or 3), duplicate
keys and tensor names, ``general.alignment`` (a uint32 power of two), known value and tensor
types. What it does not (hence the scan): string and array lengths against the file's size
(a slice past the end of the map is silently short and fails later with an IndexError or a
reshape error), a tensor's data extent against the file (a truncated file fails only at the
reshape of that tensor), dimension products (computed with numpy uint64, which wraps), the
number of dimensions, and counts: an array of 10^8 uint8 items in a 100 MB file is valid to it
and becomes 10^8 numpy objects (measured 0.72 KB each: ~70 GB) before anything is checked.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import struct
import sys
import time
from typing import Any, Callable

from sphana_bridge.protocol import BadRequest, BridgeError, InputError, one_line

Emit = Callable[..., None]

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
# Caps above what real models need (the largest vocabularies are ~262k tokens; Llama 3's
# tokens + types + merges are ~536k array items, Gemma 3's tokens + scores + types ~786k; MoE
# models have a few thousand tensors). gguf.GGUFReader builds one numpy object per array item:
# measured 0.72 KB and 45 us each (10^6 items: 687 MB, 45 s), so 2^21 items cost ~1.5 GB.
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 16
MAX_ARRAY_ITEMS = 1 << 20
MAX_TOTAL_ARRAY_ITEMS = 1 << 21
MAX_ARRAY_DEPTH = 2
MAX_KEY_BYTES = 1 << 16
MAX_STRING_BYTES = 1 << 24
MAX_NAME_BYTES = 1 << 10
# A metadata string kept in the facts (architecture, name, ...); longer ones are only skipped.
KEEP_STRING_BYTES = 256

# GGUF value types: id -> (name, struct code or None)
_SCALARS = {
    0: ("UINT8", "B"), 1: ("INT8", "b"), 2: ("UINT16", "H"), 3: ("INT16", "h"), 4: ("UINT32", "I"),
    5: ("INT32", "i"), 6: ("FLOAT32", "f"), 7: ("BOOL", "?"), 10: ("UINT64", "Q"), 11: ("INT64", "q"),
    12: ("FLOAT64", "d"),
}
_STRING, _ARRAY = 8, 9


class GgufInvalid(InputError):
    """The file is not a GGUF we can read safely (error class InputError, exit 3 in TypeScript)."""

    def __init__(self, path: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{os.path.basename(path)}: {message}", {"code": "E_GGUF_INVALID", "path": path, **(details or {})})


class GgufUnsupported(InputError):
    def __init__(self, path: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{os.path.basename(path)}: {message}", {"code": "E_GGUF_UNSUPPORTED", "path": path, **(details or {})})


class GgufMismatch(BridgeError):
    """The converted folder disagrees with the file's metadata (BOS/EOS, vocabulary)."""

    error_class = "GgufMismatch"


def _quant_sizes() -> dict[int, tuple[str, int, int]]:
    """GGML tensor type id -> (name, block size, bytes per block), from the gguf package."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    return {int(t): (t.name, int(b), int(s)) for t, (b, s) in GGML_QUANT_SIZES.items() if isinstance(t, GGMLQuantizationType)}


def _file_type_name(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        from gguf.constants import LlamaFileType

        return LlamaFileType(value).name
    except (ImportError, ValueError):
        return f"UNKNOWN_{value}"


class _Cursor:
    def __init__(self, path: str, buf: Any, size: int):
        self.path, self.buf, self.size, self.pos = path, buf, size, 0
        self.order = "<"

    def fail(self, message: str, **details: Any) -> None:
        raise GgufInvalid(self.path, message, {"offset": self.pos, **details})

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            self.fail(f"truncated: {what} needs {n} bytes at offset {self.pos}, the file has {self.size - self.pos} left", need=n)

    def unpack(self, code: str, what: str) -> Any:
        n = struct.calcsize(code)
        self.need(n, what)
        (value,) = struct.unpack_from(self.order + code, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str, limit: int, keep: int = 0, decode: bool = True) -> str | None:
        n = self.unpack("Q", f"{what} length")
        if n > limit:
            self.fail(f"{what} claims {n} bytes (limit {limit})", length=n)
        self.need(n, what)
        raw = None
        if decode or n <= keep:
            raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        if raw is None:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} is not UTF-8")
        return text if decode or n <= keep else None


def scan_gguf(path: str) -> dict[str, Any]:
    """Validates a GGUF file's structure without trusting any of its numbers; returns its facts."""
    if not os.path.isfile(path):
        raise InputError(f"GGUF file not found: {path}", {"code": "E_FILE_NOT_FOUND", "path": path})
    size = os.path.getsize(path)
    if size < 24:
        raise GgufInvalid(path, f"not a GGUF file: {size} bytes, a GGUF header needs at least 24", {"bytes": size})
    with open(path, "rb") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _scan(path, buf, size)


def _scan(path: str, buf: Any, size: int) -> dict[str, Any]:
    c = _Cursor(path, buf, size)
    version, tensor_count, kv_count = _header(c, path, buf, size)
    metadata, arrays = _metadata(c, kv_count, size)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if "general.alignment" in metadata and (not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1)):
        c.fail(f"general.alignment {alignment!r} is not a power of two")
    infos = _tensor_infos(c, tensor_count)
    data_start = _check_tensor_data(c, infos, alignment, size)
    return _summary(c, version, size, tensor_count, kv_count, alignment, data_start, metadata, arrays, infos)


def _header(c: "_Cursor", path: str, buf: Any, size: int) -> tuple[int, int, int]:
    """Magic, version (and byte order), and the tensor and metadata counts, each bounded by
    what the file's remaining bytes could hold."""
    if bytes(buf[0:4]) != GGUF_MAGIC:
        raise GgufInvalid(path, f"not a GGUF file (magic {bytes(buf[0:4])!r}, expected b'GGUF')")
    c.pos = 4
    version = c.unpack("I", "version")
    if version & 0xFFFF == 0:  # written for the other byte order (as gguf.GGUFReader detects it)
        c.order = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in SUPPORTED_VERSIONS:
        raise GgufInvalid(path, f"GGUF version {version} is not supported (2 or 3)", {"version": version})
    tensor_count = c.unpack("Q", "tensor count")
    kv_count = c.unpack("Q", "metadata count")
    left = size - c.pos
    if tensor_count > MAX_TENSORS or tensor_count * 24 > left:
        c.fail(f"absurd tensor count {tensor_count} (limit {MAX_TENSORS}, and each needs ≥ 24 header bytes of the {left} left)", tensorCount=tensor_count)
    if kv_count > MAX_KV or kv_count * 13 > left:
        c.fail(f"absurd metadata count {kv_count} (limit {MAX_KV}, and each needs ≥ 13 bytes of the {left} left)", kvCount=kv_count)
    return version, tensor_count, kv_count


def _metadata(c: "_Cursor", kv_count: int, size: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The key/value section: scalar and string values kept, arrays summarised (item type and
    count; their bytes skipped), every length checked against the bytes left before it is used."""
    metadata: dict[str, Any] = {}
    arrays: dict[str, dict[str, Any]] = {}
    total_items = 0

    def value(vtype: int, what: str, depth: int) -> Any:
        nonlocal total_items
        if vtype in _SCALARS:
            return c.unpack(_SCALARS[vtype][1], what)
        if vtype == _STRING:
            return c.string(what, MAX_STRING_BYTES, keep=KEEP_STRING_BYTES, decode=False)
        if vtype == _ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                c.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
            itype = c.unpack("I", f"{what} item type")
            count = c.unpack("Q", f"{what} item count")
            if itype not in _SCALARS and itype not in (_STRING, _ARRAY):
                c.fail(f"{what}: unknown array item type {itype}", itemType=itype)
            minimum = struct.calcsize(_SCALARS[itype][1]) if itype in _SCALARS else (8 if itype == _STRING else 12)
            if count > MAX_ARRAY_ITEMS or count * minimum > size - c.pos:
                c.fail(f"{what}: absurd array length {count} (limit {MAX_ARRAY_ITEMS}; {size - c.pos} bytes left)", count=count)
            total_items += count
            if total_items > MAX_TOTAL_ARRAY_ITEMS:
                c.fail(f"absurd metadata: more than {MAX_TOTAL_ARRAY_ITEMS} array items in total")
            if itype in _SCALARS:
                n = count * minimum
                c.need(n, what)
                c.pos += n
            else:
                for _ in range(count):
                    value(itype, what, depth + 1)
            return {"itemType": _SCALARS[itype][0] if itype in _SCALARS else ("STRING" if itype == _STRING else "ARRAY"), "count": count}
        c.fail(f"{what}: unknown value type {vtype}", valueType=vtype)

    for _ in range(kv_count):
        key = c.string("metadata key", MAX_KEY_BYTES)
        if key in metadata or key in arrays:
            c.fail(f"duplicate metadata key {key!r}", key=key)
        vtype = c.unpack("I", f"type of {key}")
        v = value(vtype, key, 0)
        if vtype == _ARRAY:
            arrays[key] = v
        else:
            metadata[key] = v
    return metadata, arrays


def _tensor_infos(c: "_Cursor", tensor_count: int) -> list[dict[str, Any]]:
    """The tensor directory: unique names, 1..MAX_DIMS non-empty dimensions, a known type whose
    block divides the first dimension, and the byte size that implies."""
    sizes = _quant_sizes()
    infos = []
    names: set[str] = set()
    for i in range(tensor_count):
        name = c.string(f"tensor {i} name", MAX_NAME_BYTES)
        if name in names:
            c.fail(f"duplicate tensor {name!r}", tensor=name)
        names.add(name)
        n_dims = c.unpack("I", f"{name} dimension count")
        if not 1 <= n_dims <= MAX_DIMS:
            c.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS})", tensor=name)
        dims = [c.unpack("Q", f"{name} dimension") for _ in range(n_dims)]
        ttype = c.unpack("I", f"{name} type")
        offset = c.unpack("Q", f"{name} offset")
        if ttype not in sizes:
            c.fail(f"tensor {name!r} has unknown type {ttype}", tensor=name, type=ttype)
        tname, block, block_bytes = sizes[ttype]
        if any(d < 1 for d in dims):
            c.fail(f"tensor {name!r} has an empty dimension {dims}", tensor=name)
        elements = math.prod(dims)  # Python ints: no wrap-around
        if elements > 1 << 48:
            c.fail(f"tensor {name!r} claims {elements} elements", tensor=name)
        if dims[0] % block:
            c.fail(f"tensor {name!r}: first dimension {dims[0]} is not a multiple of {tname}'s block of {block}", tensor=name)
        infos.append({"name": name, "dims": dims, "type": tname, "offset": offset, "bytes": elements // block * block_bytes, "elements": elements})
    return infos


def _check_tensor_data(c: "_Cursor", infos: list[dict[str, Any]], alignment: int, size: int) -> int:
    """The data section's start; every tensor aligned, none overlapping another, all inside the file."""
    data_start = c.pos + (-c.pos % alignment)
    end = data_start
    for t in sorted(infos, key=lambda t: t["offset"]):
        if t["offset"] % alignment:
            c.fail(f"tensor {t['name']!r} offset {t['offset']} is not aligned to {alignment}", tensor=t["name"])
        if t["offset"] < end - data_start:
            c.fail(f"tensor {t['name']!r} overlaps the previous tensor's data", tensor=t["name"])
        stop = data_start + t["offset"] + t["bytes"]
        if stop > size:
            c.fail(
                f"truncated: tensor {t['name']!r} needs bytes {data_start + t['offset']}..{stop}, the file has {size}",
                tensor=t["name"], need=stop, bytes=size,
            )
        end = stop
    return data_start


def _summary(c: "_Cursor", version: int, size: int, tensor_count: int, kv_count: int, alignment: int, data_start: int,
             metadata: dict[str, Any], arrays: dict[str, dict[str, Any]], infos: list[dict[str, Any]]) -> dict[str, Any]:
    types: dict[str, int] = {}
    for t in infos:
        types[t["type"]] = types.get(t["type"], 0) + 1
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        c.fail("no general.architecture in the metadata")
    ids = {k: metadata.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding", "unknown")}
    file_type = metadata.get("general.file_type")
    return {
        "version": version,
        "byteOrder": "little" if c.order == "<" else "big",
        "bytes": size,
        "tensorCount": tensor_count,
        "metadataCount": kv_count,
        "alignment": alignment,
        "dataOffset": data_start,
        "architecture": arch,
        "name": metadata.get("general.name") if isinstance(metadata.get("general.name"), str) else None,
        "fileType": file_type if isinstance(file_type, int) else None,
        "fileTypeName": _file_type_name(file_type),
        "tensorTypes": dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        "parameters": sum(t["elements"] for t in infos),
        "bosTokenId": ids["bos"] if isinstance(ids["bos"], int) else None,
        "eosTokenId": ids["eos"] if isinstance(ids["eos"], int) else None,
        "padTokenId": ids["padding"] if isinstance(ids["padding"], int) else None,
        "vocabSize": arrays.get("tokenizer.ggml.tokens", {}).get("count"),
        # Per-head key size, as the file states it (transformers' GGUF mapping ignores it for some architectures).
        "keyLength": metadata.get(f"{arch}.attention.key_length") if isinstance(metadata.get(f"{arch}.attention.key_length"), int) else None,
        "tokenizerModel": metadata.get("tokenizer.ggml.model") if isinstance(metadata.get("tokenizer.ggml.model"), str) else None,
    }


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class _ReaderCache:
    """transformers opens the same GGUF with gguf.GGUFReader up to four times (tokenizer config,
    tokenizer, model config, weights), each parse ~10 s for a 49k-token vocabulary; while the
    conversion runs, the reader for our (already scanned) file is built once and shared."""

    def __init__(self, path: str):
        self.path = os.path.realpath(path)
        self.reader = None

    def __enter__(self):
        import gguf  # transformers does `from gguf import GGUFReader` inside load_gguf_checkpoint, at call time

        self.original = original = gguf.GGUFReader
        cache = self

        def reader(path, mode="r"):
            if mode == "r" and os.path.realpath(os.fspath(path)) == cache.path:
                if cache.reader is None:
                    cache.reader = original(path, mode)
                return cache.reader
            return original(path, mode)

        gguf.GGUFReader = reader
        return self

    def __exit__(self, *exc):
        import gguf

        gguf.GGUFReader = self.original
        self.reader = None
        return False


def _token_id(vocab: dict[str, int], ref: Any) -> int | None:
    if isinstance(ref, dict):
        ref = ref.get("content")
    return vocab.get(ref) if isinstance(ref, str) else None


def _id_list(v: Any) -> list[int]:
    if isinstance(v, bool):
        return []
    if isinstance(v, int):
        return [v]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
    return []


def cross_check(out_dir: str, facts: dict[str, Any]) -> dict[str, Any]:
    """BOS/EOS and the vocabulary of the written folder against the GGUF's own metadata."""
    def load(name: str) -> dict[str, Any]:
        p = os.path.join(out_dir, name)
        if not os.path.isfile(p):
            return {}
        with open(p, encoding="utf-8") as f:
            return json.load(f)

    config, generation, tok_config, tok = load("config.json"), load("generation_config.json"), load("tokenizer_config.json"), load("tokenizer.json")
    vocab: dict[str, int] = dict((tok.get("model") or {}).get("vocab") or {})
    for t in tok.get("added_tokens") or []:
        vocab[t["content"]] = t["id"]
    vocab_size = max(vocab.values()) + 1 if vocab else 0
    want = {"bos": facts["bosTokenId"], "eos": facts["eosTokenId"]}
    seen = {
        "bos": {
            "config.json": config.get("bos_token_id"),
            "generation_config.json": generation.get("bos_token_id"),
            "tokenizer_config.json": _token_id(vocab, tok_config.get("bos_token")),
        },
        "eos": {
            "config.json": _id_list(config.get("eos_token_id")) or None,
            "generation_config.json": _id_list(generation.get("eos_token_id")) or None,
            "tokenizer_config.json": _token_id(vocab, tok_config.get("eos_token")),
        },
    }
    problems = []
    for which in ("bos", "eos"):
        for where, got in seen[which].items():
            if which == "eos" and isinstance(got, list):
                ok = (want[which] is None and not got) or (want[which] is not None and want[which] in got)
            else:
                ok = got == want[which] or (got is None and where == "tokenizer_config.json" and want[which] is None)
            if not ok:
                problems.append(f"{which.upper()} id {got!r} in {where}, the GGUF says {want[which]!r}")
    if facts.get("vocabSize") is not None and vocab_size != facts["vocabSize"]:
        problems.append(f"tokenizer.json has {vocab_size} tokens, the GGUF's tokenizer.ggml.tokens has {facts['vocabSize']}")
    if facts.get("vocabSize") is not None and config.get("vocab_size") != facts["vocabSize"]:
        problems.append(f"config.json vocab_size {config.get('vocab_size')!r}, the GGUF's tokenizer has {facts['vocabSize']} tokens")
    if problems:
        raise GgufMismatch("the converted folder disagrees with the GGUF's metadata: " + "; ".join(problems), {"problems": problems})
    return {"bosTokenId": want["bos"], "eosTokenId": want["eos"], "vocabSize": vocab_size, "checked": sorted(f"{w}:{k}" for w in seen for k in seen[w])}


def gguf_to_hf(path: str, out_dir: str, emit: Emit) -> dict[str, Any]:
    start = time.monotonic()
    seconds: dict[str, float] = {}
    emit("validate", None, f"scanning {os.path.basename(path)}")
    facts = scan_gguf(path)
    seconds["scan"] = time.monotonic() - start
    t = time.monotonic()
    emit("hash", None, f"sha256 of {facts['bytes']} bytes")
    facts["sha256"] = sha256_file(path)
    facts["file"] = os.path.basename(path)
    seconds["hash"] = time.monotonic() - t
    if not os.path.isdir(out_dir):
        raise BadRequest(f"outDir is not a folder: {out_dir}", {"field": "outDir"})
    if os.listdir(out_dir):
        raise BadRequest(f"outDir is not empty: {out_dir}", {"field": "outDir"})

    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    t = time.monotonic()
    emit("load", None, f"dequantizing {facts['architecture']} ({', '.join(facts['tensorTypes'])}) to fp32 with transformers")
    with _ReaderCache(path):
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            config = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True)
            # transformers 5.18 drops `<arch>.attention.key_length` for some architectures (qwen3) and falls
            # back to the config class's default head_dim; the file's own figure wins.
            key_length = facts.get("keyLength")
            if isinstance(key_length, int) and key_length > 0 and getattr(config, "head_dim", None) not in (None, key_length):
                config.head_dim = key_length
            model, info = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, config=config, dtype=torch.float32, local_files_only=True, output_loading_info=True
            )
        except (ValueError, KeyError, NotImplementedError, TypeError) as e:
            raise GgufUnsupported(path, f"transformers cannot load this GGUF ({facts['architecture']}, {facts['fileTypeName']}): {one_line(str(e), 300)}",
                                  {"architecture": facts["architecture"], "exception": type(e).__name__}) from None
    seconds["load"] = time.monotonic() - t
    # transformers initializes parameters the file lacks at random, with only a log line.
    missing = sorted(set(info.get("missing_keys") or ()) - ({"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()))
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or ()))
    if mismatched:
        raise GgufInvalid(path, f"{len(mismatched)} tensor(s) have other shapes than the config implies: {', '.join(mismatched[:4])}",
                          {"mismatched": mismatched[:50]})
    if missing:
        raise GgufInvalid(path, f"{len(missing)} tensor(s) that {type(model).__name__} needs are not in the file: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}",
                          {"missing": missing[:50]})

    t = time.monotonic()
    emit("write", None, "model.safetensors, configs, tokenizer")
    config = model.config
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        # Tied: lm_head.weight is the embedding (the same storage); safetensors refuses shared tensors.
        state.pop("lm_head.weight", None)
    bad = [k for k, v in state.items() if v.dtype != torch.float32]
    if bad:
        raise GgufUnsupported(path, f"tensors not dequantized to fp32: {', '.join(bad[:5])}")
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    parameters = sum(v.numel() for v in state.values())
    del state
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    # transformers chose the class from the file's metadata; the saved config must name it.
    config.architectures = [type(model).__name__]
    config.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    seconds["write"] = time.monotonic() - t
    del model

    emit("check", None, "BOS/EOS and vocabulary against the GGUF metadata")
    checks = cross_check(out_dir, facts)
    files = []
    for f in sorted(os.listdir(out_dir)):
        p = os.path.join(out_dir, f)
        if os.path.isfile(p):
            files.append({"path": p, "bytes": os.path.getsize(p)})
    seconds["total"] = time.monotonic() - start
    return {
        "gguf": facts,
        "architectures": config.architectures,
        "modelType": config.model_type,
        "parameters": parameters,
        "checks": checks,
        "files": files,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "peakRssBytes": _peak_rss_bytes(),
    }


def _require(request: dict[str, Any], key: str, what: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"request field {key!r} must be {what}", {"field": key})
    return value


def run_gguf_to_hf(request: dict[str, Any], emitter) -> dict[str, Any]:
    from sphana_bridge.cli import check_keys

    check_keys(request, {"gguf", "outDir"}, "gguf-to-hf")
    path = _require(request, "gguf", "a .gguf file path")
    out_dir = _require(request, "outDir", "an existing empty folder")
    return gguf_to_hf(path, out_dir, emitter.progress)


def run_gguf_info(request: dict[str, Any], emitter) -> dict[str, Any]:  # noqa: ARG001
    """The scan alone (no torch): the file's facts, or the same typed error gguf-to-hf gives."""
    from sphana_bridge.cli import check_keys

    check_keys(request, {"gguf"}, "gguf-info")
    return scan_gguf(_require(request, "gguf", "a .gguf file path"))


if __name__ == "__main__":  # pragma: no cover - manual use
    print(json.dumps(scan_gguf(sys.argv[1]), indent=2))
