"""Entry point: ``python -m sphana_bridge <command> --request '<json>'``."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from typing import Any, Callable

from sphana_bridge.protocol import (
    BadRequest,
    BridgeError,
    Emitter,
    capture_stdout,
    is_proto_size_error,
    one_line,
)

# Errors of the machine, not of the input or of sphana: the TypeScript side reports them as
# environment problems (exit 4) naming the folder, whatever exception wrapped them.
SYSTEM_ERRNOS = {"ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS"}


def system_error_details(e: BaseException) -> dict[str, Any]:
    """``{"errno": "ENOSPC", "path": ...}`` when e or an exception it wraps is such an OSError, else {}."""
    import errno as errno_names

    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno is not None:
            name = errno_names.errorcode.get(cur.errno)
            if name in SYSTEM_ERRNOS:
                path = cur.filename if isinstance(cur.filename, str) else None
                return {"errno": name, "path": path}
        cur = cur.__cause__ or cur.__context__
    return {}


USAGE = "usage: python -m sphana_bridge <command> --request '<json object>'"


def check_keys(request: dict[str, Any], allowed: set[str], command: str) -> None:
    unknown = sorted(set(request) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown request field(s) for {command}: {', '.join(unknown)}",
            {"unknown": unknown, "allowed": sorted(allowed)},
        )


def parse_argv(argv: list[str]) -> tuple[str, dict[str, Any]]:
    if not argv:
        raise BadRequest("missing command; " + USAGE, {"argv": argv})
    command, rest = argv[0], argv[1:]
    raw: str | None = None
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--request":
            if i + 1 >= len(rest):
                raise BadRequest("--request needs a JSON value; " + USAGE, {"argv": argv})
            raw = rest[i + 1]
            i += 2
        elif arg.startswith("--request="):
            raw = arg[len("--request=") :]
            i += 1
        else:
            raise BadRequest(f"unexpected argument {arg!r}; " + USAGE, {"argv": argv})
    if raw is None:
        request: Any = {}
    else:
        try:
            request = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadRequest(f"request is not valid JSON: {e}", {"position": e.pos}) from None
    if not isinstance(request, dict):
        raise BadRequest("request must be a JSON object", {"type": type(request).__name__})
    return command, request


# command -> (module, function). Modules are imported only when their command runs, so
# `versions` / `quantize` never pay for (or depend on) torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "versions": ("sphana_bridge.versions", "run_versions"),
    "quantize": ("sphana_bridge.quantize", "run_quantize"),
    "synthesize": ("sphana_bridge.synthetic", "run_synthesize"),
    "synthetic-tokenizer": ("sphana_bridge.synthetic", "run_synthetic_tokenizer"),
    "export": ("sphana_bridge.export_model", "run_export"),
    "gguf-info": ("sphana_bridge.gguf_source", "run_gguf_info"),
    "gguf-to-hf": ("sphana_bridge.gguf_source", "run_gguf_to_hf"),
    "reference-generate": ("sphana_bridge.reference", "run_reference_generate"),
    "optimize": ("sphana_bridge.optimize", "run_optimize"),
}


def accepted_keys() -> dict[str, dict[str, Any]]:
    """Each command's request fields, as its own check reports them: a probe request with one
    unknown field makes every run_* function raise BadRequest listing what it allows (nothing else
    runs first). ``nested`` lists the fields of the object-valued ones. The contract test
    (test/python/bridge-contract.test.ts) compares this with the TypeScript request types."""
    from sphana_bridge.parity import PARITY_KEYS

    nested_fields = {"parity": sorted(PARITY_KEYS)}
    probe = "__sphana_probe__"
    out: dict[str, dict[str, Any]] = {}
    for command in COMMANDS:
        try:
            with open(os.devnull, "wb") as sink:
                _resolve(command)({probe: True}, Emitter(sink))
        except BadRequest as e:
            allowed = e.details.get("allowed")
            if e.details.get("unknown") != [probe] or not isinstance(allowed, list):
                raise RuntimeError(f"{command}: the probe request was not refused by its key check: {e.message}") from e
        else:
            raise RuntimeError(f"{command}: accepted a request with an unknown field")
        out[command] = {"keys": sorted(allowed), "nested": {k: v for k, v in nested_fields.items() if k in allowed}}
    return out


def _resolve(command: str) -> Callable[[dict[str, Any], Emitter], dict[str, Any]]:
    if command not in COMMANDS:
        raise BadRequest(
            f"unknown command {command!r}; expected one of {', '.join(sorted(COMMANDS))}",
            {"command": command},
        )
    module_name, func = COMMANDS[command]
    module = importlib.import_module(module_name)
    return getattr(module, func)


def _setup_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.simplefilter("default")


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"terminated by signal {signum}")


# Set by sphana's client, which keeps our stdin open as a pipe for as long as it lives.
WATCH_PARENT_ENV = "SPHANA_BRIDGE_WATCH_STDIN"
# After the parent is gone: how long the main thread gets to clean up (staging) before a hard exit.
PARENT_GONE_GRACE_S = 10.0


def watch_parent(grace_s: float = PARENT_GONE_GRACE_S) -> bool:
    """Exit when the parent dies: its end of our stdin pipe closes, read() returns EOF. Then
    SIGTERM ourselves (KeyboardInterrupt in the main thread runs every cleanup) and, should
    the main thread be stuck in native code, exit hard after `grace_s`. Only when the client
    asked for it (a stdin that is /dev/null or a terminal would end or hang at once)."""
    if os.environ.get(WATCH_PARENT_ENV) != "1":
        return False
    import threading

    def run() -> None:
        try:
            while os.read(0, 65536):
                pass  # the client never writes; anything it does write is ignored
        except OSError:
            pass
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except OSError:
            pass
        time.sleep(grace_s)
        os._exit(143)

    threading.Thread(target=run, name="sphana-parent-watch", daemon=True).start()
    return True


def main(argv: list[str] | None = None) -> int:
    out = capture_stdout()
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread / platform without SIGTERM
        pass
    watch_parent()
    emitter = Emitter(out)
    _setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, request = parse_argv(argv)
        handler = _resolve(command)
        data = handler(request, emitter)
        emitter.result(data)
        return 0
    except BridgeError as e:
        if e.error_class in ("Internal", "QuantizationError"):
            traceback.print_exc(file=sys.stderr)
        emitter.error(e.error_class, e.message, {**e.details, **system_error_details(e)})
        return 1
    except MemoryError as e:
        traceback.print_exc(file=sys.stderr)
        emitter.error("OutOfMemory", f"out of memory: {one_line(str(e)) or 'MemoryError'}", {})
        return 1
    except BaseException as e:  # noqa: BLE001 - the protocol must always end with one line
        traceback.print_exc(file=sys.stderr)
        if is_proto_size_error(e):
            emitter.error("ProtoLimitExceeded", one_line(str(e)), {"exception": type(e).__name__})
        else:
            emitter.error("Internal", f"{type(e).__name__}: {one_line(str(e))}", {"exception": type(e).__name__, **system_error_details(e)})
        return 1
    finally:
        try:
            out.flush()
            out.close()
        except Exception:
            pass
