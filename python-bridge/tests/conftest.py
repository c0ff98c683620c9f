"""Shared helpers: tiny LLM fixtures, running the bridge as a subprocess, logits metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BRIDGE_DIR = Path(__file__).resolve().parents[1]
REPO = BRIDGE_DIR.parent
sys.path.insert(0, str(BRIDGE_DIR))
sys.path.insert(0, str(REPO / "fixtures"))

import tiny_llm  # noqa: E402

PROTOCOL_TYPES = {"progress", "result", "error"}


class BridgeRun:
    def __init__(self, proc: subprocess.CompletedProcess, lines: list[dict]):
        self.proc = proc
        self.returncode = proc.returncode
        self.lines = lines
        self.stderr = proc.stderr
        terminal = [l for l in lines if l["type"] in ("result", "error")]
        assert len(terminal) == 1, f"expected exactly one result/error line, got {terminal}\nstderr:\n{proc.stderr}"
        assert lines[-1] is terminal[0], "the result/error line must be the last line"
        self.final = terminal[0]

    @property
    def ok(self) -> bool:
        return self.final["type"] == "result"

    @property
    def data(self) -> dict:
        assert self.ok, f"bridge failed: {self.final}\nstderr:\n{self.stderr}"
        return self.final["data"]

    @property
    def error(self) -> dict:
        assert not self.ok, f"expected an error, got {self.final}"
        return self.final


def run_bridge(*args: str, request: dict | str | None = None, cwd: str | None = None, timeout: float = 120) -> BridgeRun:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(BRIDGE_DIR)
    cmd = [sys.executable, "-m", "sphana_bridge", *args]
    if request is not None:
        cmd += ["--request", request if isinstance(request, str) else json.dumps(request)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd or "/", timeout=timeout)
    lines = []
    for raw in proc.stdout.splitlines():
        obj = json.loads(raw)  # every stdout line must be JSON ...
        assert isinstance(obj, dict) and obj.get("type") in PROTOCOL_TYPES, raw  # ... and a protocol object
        if obj["type"] == "progress":
            assert set(obj) == {"type", "step", "fraction", "message"}, obj
            assert obj["fraction"] is None or 0.0 <= obj["fraction"] <= 1.0
        lines.append(obj)
    run = BridgeRun(proc, lines)
    assert run.returncode == (0 if run.ok else 1), (run.returncode, run.final)
    if not run.ok:
        assert set(run.final) == {"type", "class", "message", "details"}
        assert "\n" not in run.final["message"]
    return run


def quantize(tmp: Path, model: Path, strategy: str, precision: str, name: str | None = None, **extra) -> BridgeRun:
    out_dir = tmp / (name or f"{model.stem}.{strategy}.{precision}")
    out_dir.mkdir(parents=True, exist_ok=True)
    req = {
        "input": str(model),
        "output": str(out_dir / f"m.{precision}.onnx"),
        "strategy": strategy,
        "precision": precision,
        **extra,
    }
    return run_bridge("quantize", request=req)


def session(path: str | Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def logits_metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    r = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    o = out.reshape(-1, out.shape[-1]).astype(np.float64)
    cos = (r * o).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(o, axis=-1))
    return {
        "top1": float((r.argmax(-1) == o.argmax(-1)).mean()),
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "max_abs": float(np.abs(r - o).max()),
    }


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict:
    """Tiny tied / untied LLMs plus fp32 reference logits on a fixed input."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for tied in (True, False):
        cfg = tiny_llm.TinyLlmConfig(tied=tied)
        path = d / ("tied.onnx" if tied else "untied.onnx")
        tiny_llm.save_tiny_llm(cfg, str(path))
        feeds = tiny_llm.reference_inputs(cfg, batch=4, seq=16)
        ref = session(path).run(["logits"], feeds)[0]
        out["tied" if tied else "untied"] = {"path": path, "cfg": cfg, "feeds": feeds, "ref": ref}
    return out


# numbers collected by the strategy tests, printed at the end of the session
RESULTS: list[tuple] = []


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.section("logits agreement vs fp32 (4x16 tokens)")
    for row in sorted(RESULTS):
        terminalreporter.write_line(
            "{:<8} {:<16} {:<6} {:<10} top1={:.4f} cos_mean={:.5f} cos_min={:.5f} ops={}".format(*row)
        )
