"""JSON-lines protocol: error classes and the emitter that owns the real stdout."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, BinaryIO


class BridgeError(Exception):
    """An error with a stable protocol class name."""

    error_class = "Internal"

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})


class BadRequest(BridgeError):
    error_class = "BadRequest"


class InputError(BridgeError):
    error_class = "InputError"


class ProtoLimitExceeded(BridgeError):
    error_class = "ProtoLimitExceeded"


class OutOfMemory(BridgeError):
    error_class = "OutOfMemory"


class QuantizationError(BridgeError):
    error_class = "QuantizationError"


class Internal(BridgeError):
    """A bug on either side (e.g. a request that contradicts itself), never the user's input."""

    error_class = "Internal"


# Commands may define more classes (subclass BridgeError and set ``error_class``); the
# emitter passes any identifier-like class name through.

_PROTO_SIZE_PHRASES = (
    "exceeds maximum protobuf size",  # protobuf (upb / cpp): "Message onnx.ModelProto exceeds maximum protobuf size of 2GB"
    "larger than the 2 gb limit",  # onnx.save_model: "The proto size is larger than the 2 GB limit. ..."
    "too large (>2gib)",  # onnx.checker.check_model on an in-memory model
)


def is_proto_size_error(exc: BaseException) -> bool:
    """True for protobuf's 'message exceeds 2GB' failures (EncodeError / ValueError / onnx's own)."""
    try:
        from google.protobuf.message import EncodeError
    except Exception:  # pragma: no cover - protobuf always present with onnx
        EncodeError = ValueError  # type: ignore[assignment,misc]
    seen = set()
    while exc is not None and id(exc) not in seen:  # also look at the chained cause
        seen.add(id(exc))
        if isinstance(exc, (ValueError, RuntimeError, EncodeError)):
            text = " ".join(str(exc).lower().split())
            if any(p in text for p in _PROTO_SIZE_PHRASES):
                return True
            if "protobuf" in text and any(k in text for k in ("2gb", "2 gb", "2gib", "2 gib", "too large")):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean(obj: Any) -> Any:
    """Make a value JSON-safe (numpy scalars, paths, NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):  # numpy scalar
        return _clean(obj.item())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


class Emitter:
    """Writes protocol lines to a private handle on the process's real stdout."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self.finished = False

    def _write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(_clean(obj), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
        self._out.write(line.encode("ascii") + b"\n")
        self._out.flush()

    def progress(self, step: str, fraction: float | None = None, message: str = "") -> None:
        if self.finished:
            return
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        self._write({"type": "progress", "step": step, "fraction": fraction, "message": one_line(message)})

    def result(self, data: dict[str, Any]) -> None:
        if self.finished:
            raise RuntimeError("protocol already finished")
        self.finished = True
        self._write({"type": "result", "data": data})

    def error(self, error_class: str, message: str, details: dict[str, Any] | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        if not isinstance(error_class, str) or not error_class.isidentifier():
            error_class = "Internal"
        self._write({"type": "error", "class": error_class, "message": one_line(message), "details": details or {}})


def capture_stdout() -> BinaryIO:
    """Take over fd 1 for the protocol and point everything else at stderr.

    Returns a binary handle to the real stdout. After this, ``print`` and any
    C/C++ code writing to fd 1 end up on stderr, so nothing can corrupt the
    JSON-lines stream.
    """
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        real_fd = os.dup(1)
        os.dup2(2, 1)
        out = os.fdopen(real_fd, "wb", buffering=0)
    except OSError:  # pragma: no cover - exotic platforms: fall back to the Python-level stream
        out = sys.__stdout__.buffer  # type: ignore[union-attr]
    sys.stdout = sys.stderr
    return out
