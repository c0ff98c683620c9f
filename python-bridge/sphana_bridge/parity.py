"""The parity gate: an exported decoder must compute what the PyTorch model computes.

The same fixed prompt goes through

* PyTorch (the model's own cache, as ``generate`` would use it): a prefill from an empty
  cache, then ``decode_steps`` greedy steps feeding the cache back;
* the ONNX model in onnxruntime (CPU, 2 threads): the same prefill from an EMPTY cache
  (``past_sequence_length`` 0), then the same steps feeding ``present.*`` back as
  ``past_key_values.*``;
* the ONNX model once more on the whole sequence without a cache.

Logits are compared at EVERY position of the prefill and of every decode step. The
gate passes only if top-1 agrees everywhere and ``|onnx - torch| <= atol + rtol*|torch|``
everywhere, and the cached ONNX path agrees with the uncached one within the same
tolerance. A failure raises ``ParityFailed`` carrying the numbers; it is never a warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from sphana_bridge.protocol import BridgeError

DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 0.0
DEFAULT_DECODE_STEPS = 4
# The fields of a request's "parity" object (export, optimize).
PARITY_KEYS = frozenset({"promptIds", "decodeSteps", "atol", "rtol"})
ORT_THREADS = 2

Emit = Callable[..., None]


class ParityFailed(BridgeError):
    error_class = "ParityFailed"


def default_prompt(vocab_size: int, bos_token_id: int | None = None, length: int = 12) -> list[int]:
    """A fixed, spread-out prompt valid for any vocabulary of at least 2 tokens."""
    ids = [bos_token_id] if bos_token_id is not None and 0 <= bos_token_id < vocab_size else []
    x = 12345
    while len(ids) < length:
        x = (1103515245 * x + 12345) % (1 << 31)
        ids.append(x % vocab_size)
    return ids


def ort_session(onnx_path: str, threads: int = ORT_THREADS):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxDecoder:
    """Runs an exported decoder (the sphana I/O contract) step by step."""

    def __init__(self, session):
        self.session = session
        self.inputs = {i.name: i for i in session.get_inputs()}
        self.output_names = [o.name for o in session.get_outputs()]
        self.past_names = [n for n in self.inputs if n.startswith("past_key_values.")]
        for name in ("input_ids", "attention_mask", "position_ids"):
            if name not in self.inputs:
                raise ParityFailed(f"the ONNX model has no input {name!r}", {"inputs": list(self.inputs)})
        first = self.inputs[self.past_names[0]].shape if self.past_names else None
        if first is None or not isinstance(first[1], int) or not isinstance(first[3], int):
            raise ParityFailed("past_key_values inputs need concrete KV-head and head-dim sizes", {"shape": first})
        self.kv_heads, self.head_dim = first[1], first[3]

    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        return {n: np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=np.float32) for n in self.past_names}

    def run(self, ids: np.ndarray, past: dict[str, np.ndarray], past_len: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        batch, seq = ids.shape
        feed = {
            "input_ids": ids.astype(np.int64),
            "attention_mask": np.ones((batch, past_len + seq), dtype=np.int64),
            "position_ids": np.broadcast_to(np.arange(past_len, past_len + seq, dtype=np.int64), (batch, seq)).copy(),
            **past,
        }
        outs = dict(zip(self.output_names, self.session.run(self.output_names, feed)))
        presents = {n.replace("past_key_values.", "present."): n for n in self.past_names}
        new_past = {}
        for present, past_name in presents.items():
            value = outs[present]
            if value.shape[2] != past_len + seq:
                raise ParityFailed(
                    f"{present} has {value.shape[2]} positions, expected past + new = {past_len + seq}",
                    {"output": present, "shape": list(value.shape), "expected": past_len + seq},
                )
            new_past[past_name] = value
        return outs["logits"], new_past


def torch_reference(model, prompt_ids: Sequence[int], decode_steps: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """PyTorch logits [positions, vocab] of prefill + greedy decode (model's own cache), the tokens fed
    by the decode steps, and the logits of one uncached full-sequence run over the same tokens."""
    import torch

    rows = []
    fed: list[int] = []
    with torch.inference_mode():
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
        n = ids.shape[1]
        out = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(n).unsqueeze(0),
            use_cache=True,
        )
        rows.append(out.logits[0].float().numpy().copy())
        cache = out.past_key_values
        pos = n
        for _ in range(decode_steps):
            token = int(out.logits[0, -1].argmax())
            fed.append(token)
            step = torch.tensor([[token]], dtype=torch.long)
            out = model(
                input_ids=step,
                attention_mask=torch.ones((1, pos + 1), dtype=torch.long),
                position_ids=torch.tensor([[pos]]),
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            rows.append(out.logits[0].float().numpy().copy())
            pos += 1
        full_ids = torch.tensor([list(prompt_ids) + fed], dtype=torch.long)
        full = model(input_ids=full_ids, attention_mask=torch.ones_like(full_ids), use_cache=False)
        full_rows = full.logits[0].float().numpy().copy()
    return np.concatenate(rows, axis=0), fed, full_rows


@dataclass
class Reference:
    """PyTorch's side of the gate, computed once (so the torch model can be freed before
    onnxruntime loads the exported copy of the weights)."""

    prompt_ids: list[int]
    decode_steps: int
    cached: np.ndarray  # [positions, vocab]: prefill rows, then one row per decode step
    fed: list[int]  # greedy tokens fed by the decode steps
    full: np.ndarray  # uncached run over prompt + fed
    seconds: float


def reference(model, prompt_ids: Sequence[int], decode_steps: int) -> Reference:
    start = time.monotonic()
    if not prompt_ids:
        raise ParityFailed("the parity prompt is empty", {})
    cached, fed, full = torch_reference(model, prompt_ids, decode_steps)
    return Reference(list(prompt_ids), decode_steps, cached, fed, full, time.monotonic() - start)


def onnx_cached(decoder: OnnxDecoder, prompt_ids: Sequence[int], fed: Sequence[int]) -> np.ndarray:
    rows = []
    past = decoder.empty_past(1)
    logits, past = decoder.run(np.array([list(prompt_ids)], dtype=np.int64), past, 0)
    rows.append(logits[0])
    pos = len(prompt_ids)
    for token in fed:
        logits, past = decoder.run(np.array([[token]], dtype=np.int64), past, pos)
        rows.append(logits[0])
        pos += 1
    return np.concatenate(rows, axis=0)


def compare(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Numbers for one comparison of [positions, vocab] logits."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    allowed = atol + rtol * np.abs(expected.astype(np.float64))
    finite = bool(np.isfinite(actual).all())
    top_a = actual.argmax(-1)
    top_e = expected.argmax(-1)
    mismatches = np.nonzero(top_a != top_e)[0]
    over = np.nonzero((diff > allowed).any(-1) | (~np.isfinite(actual)).any(-1))[0]
    srt = np.sort(expected, axis=-1)
    margin = srt[:, -1] - srt[:, -2] if expected.shape[-1] > 1 else np.full(expected.shape[0], np.inf)
    return {
        "positions": int(actual.shape[0]),
        "maxAbsDiff": float(diff.max()) if finite else float("inf"),
        "finite": finite,
        "top1Agreement": float((top_a == top_e).mean()),
        "firstTop1Mismatch": int(mismatches[0]) if len(mismatches) else None,
        "firstOverTolerance": int(over[0]) if len(over) else None,
        "minTop1Margin": float(margin.min()),
        "ok": finite and not len(mismatches) and not len(over),
    }


def check_parity(
    torch_model,
    onnx_path: str,
    prompt_ids: Sequence[int] | None = None,
    decode_steps: int = DEFAULT_DECODE_STEPS,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    session=None,
    emit: Emit | None = None,
) -> dict[str, Any]:
    """Run the gate; returns the numbers or raises ParityFailed. ``torch_model`` is the PyTorch
    model, or a ``Reference`` computed from it earlier (then its prompt and steps are used)."""
    start = time.monotonic()
    if isinstance(torch_model, Reference):
        ref = torch_model
        spent = ref.seconds
    else:
        if emit:
            emit("parity", 0.0, "PyTorch reference")
        ref = reference(torch_model, prompt_ids or [], decode_steps)
        spent = 0.0
    prompt_ids, decode_steps = ref.prompt_ids, ref.decode_steps
    expected, fed, torch_full = ref.cached, ref.fed, ref.full
    if emit:
        emit("parity", 0.4, "onnxruntime session")
    decoder = OnnxDecoder(session if session is not None else ort_session(onnx_path))
    if emit:
        emit("parity", 0.6, "onnxruntime prefill + decode")
    actual = onnx_cached(decoder, prompt_ids, fed)
    if emit:
        emit("parity", 0.8, "onnxruntime full sequence")
    full_ids = np.array([list(prompt_ids) + list(fed)], dtype=np.int64)
    full_logits, _ = decoder.run(full_ids, decoder.empty_past(1), 0)
    full = full_logits[0]

    vs_torch = compare(actual, expected, atol, rtol)
    vs_full = compare(actual, full, atol, rtol)
    torch_self = compare(expected, torch_full, atol, rtol)
    result = {
        "positions": vs_torch["positions"],
        "promptLength": len(prompt_ids),
        "decodeSteps": decode_steps,
        "maxAbsDiff": vs_torch["maxAbsDiff"],
        "top1Agreement": vs_torch["top1Agreement"],
        "minTop1Margin": vs_torch["minTop1Margin"],
        "atol": atol,
        "rtol": rtol,
        "cachedVsFullMaxAbsDiff": vs_full["maxAbsDiff"],
        "torchCachedVsFullMaxAbsDiff": torch_self["maxAbsDiff"],
        "decodedTokens": list(fed),
        "seconds": round(time.monotonic() - start + spent, 3),
    }
    if emit:
        emit("parity", 1.0, f"max |diff| {vs_torch['maxAbsDiff']:.3g} over {vs_torch['positions']} positions")
    problems = []
    if not vs_torch["ok"]:
        problems.append(_describe("ONNX (cached) vs PyTorch", vs_torch, atol, rtol))
    if not vs_full["ok"]:
        problems.append(_describe("ONNX cached vs ONNX full-sequence", vs_full, atol, rtol))
    if problems:
        raise ParityFailed(
            "; ".join(problems),
            {
                **result,
                "vsTorch": vs_torch,
                "cachedVsFull": vs_full,
                "firstTop1Mismatch": vs_torch["firstTop1Mismatch"],
            },
        )
    return result


def _describe(what: str, c: dict[str, Any], atol: float, rtol: float) -> str:
    parts = [f"{what}: max |diff| {c['maxAbsDiff']:.4g} (atol {atol:g}, rtol {rtol:g})"]
    if not c["finite"]:
        parts.append("non-finite logits")
    if c["firstTop1Mismatch"] is not None:
        parts.append(f"top-1 agreement {c['top1Agreement']:.3f}, first mismatch at position {c['firstTop1Mismatch']}")
    if c["firstOverTolerance"] is not None:
        parts.append(f"first position over tolerance {c['firstOverTolerance']}")
    return ", ".join(parts)
