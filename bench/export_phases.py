#!/usr/bin/env python3
"""Where the export step's time goes, phase by phase, without cProfile's overhead.

    PYTHONPATH=python-bridge python bench/export_phases.py HF_DIR --layers 2,8 [--out DIR]
    PYTHONPATH=python-bridge python bench/export_phases.py HF_DIR --compare stamped,full,stamped [--out DIR]

For each layer count, a random-weight copy of HF_DIR's architecture with that many layers (all
other sizes real) is exported by the bridge's own export_model, with timers wrapped around
torch.onnx's phases: capture (torch.export), decompositions, translation to ONNX, onnxscript's
optimize; plus the bridge's own load / PyTorch reference / save / parity. Prints one JSON line
per layer count; a linear fit (fixed + per-layer seconds) tells what stamping one traced layer
per layer type would save.

``--compare`` exports HF_DIR itself (real weights, all layers) once per listed mode, each in its own
fresh Python process (as the CLI's bridge runs an export), in the order given so the modes
alternate: ``stamped`` (the default export: one layer per layer type traced, stamped per layer) or
``full`` (every layer traced) or ``fused`` (the default export since --optimize ort: the fused template
layer stamped per layer, stamp.stamp_fused). One JSON line per run: phases, the bridge's seconds, peak RSS of that
process, and the stamp record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict

timers: dict[str, float] = defaultdict(float)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def facts_for(cfg: dict) -> dict:
    """The config's architecture facts, from TypeScript's family files (run `npx tsc -p .` first)."""
    import subprocess

    script = (
        f"import {{ factsFor }} from {json.dumps(os.path.join(ROOT, 'dist/src/models/index.js'))};"
        "let s = ''; process.stdin.on('data', (d) => (s += d)).on('end', () => process.stdout.write(JSON.stringify(factsFor(JSON.parse(s)))));"
    )
    r = subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(cfg), capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def wrap(owner, name: str, label: str) -> None:
    original = getattr(owner, name)

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            timers[label] += time.perf_counter() - t

    setattr(owner, name, timed)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("--layers", default="2,8")
    ap.add_argument("--out")
    ap.add_argument("--compare", help="comma-separated modes: stamped, full, fused")
    ap.add_argument("--one", choices=["stamped", "full", "fused"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.compare:
        return compare(a)
    import torch
    from torch.onnx._internal.exporter import _capture_strategies, _core, _onnx_program

    from sphana_bridge import export_model as em
    from sphana_bridge import parity
    from sphana_bridge.synthetic import synthesize

    torch.set_num_threads(2)
    wrap(_capture_strategies.CaptureStrategy, "__call__", "capture (torch.export)")
    wrap(_core, "_prepare_exported_program_for_export", "decompositions")
    wrap(_core, "_exported_program_to_onnx_program", "translation to ONNX")
    wrap(_onnx_program.ONNXProgram, "optimize", "onnxscript optimize")
    wrap(em, "save_model", "save")
    wrap(em, "load_model", "load")
    wrap(parity, "torch_reference", "PyTorch reference")
    wrap(em, "check_parity", "parity (onnxruntime)")
    from sphana_bridge import stamp

    wrap(stamp, "analyse", "stamp: analyse template")
    wrap(stamp, "stamp", "stamp: copy layers")
    from sphana_bridge import optimize as opt

    wrap(opt, "fuse", "fuse (optimize_for_ort)")
    if a.one:
        root = a.out or tempfile.mkdtemp(prefix="export-phases-")
        t = time.perf_counter()
        with open(os.path.join(a.hf_dir, "config.json")) as f:
            facts = facts_for(json.load(f))
        r = em.export_model(a.hf_dir, os.path.join(root, a.one, "llm_generator.onnx"), facts, stamp_layers=a.one != "full",
                            optimize="ort" if a.one == "fused" else "none")
        total = time.perf_counter() - t
        print(json.dumps({"mode": a.one, "total": round(total, 2), "phases": {k: round(v, 2) for k, v in timers.items()},
                          "bridgeSeconds": r["seconds"], "peakRssBytes": r["peakRssBytes"], "stamp": r.get("stamp"),
                          "optimize": {k: v for k, v in (r.get("optimize") or {}).items() if k != "parity"} or None,
                          "parity": {k: r["parity"][k] for k in ("maxAbsDiff", "top1Agreement", "positions")},
                          "bytes": sum(f["bytes"] for f in r["files"]), "loadavg": os.getloadavg()}), flush=True)
        return 0
    with open(os.path.join(a.hf_dir, "config.json")) as f:
        base = json.load(f)
    root = a.out or tempfile.mkdtemp(prefix="export-phases-")
    for n in [int(x) for x in a.layers.split(",")]:
        timers.clear()
        cfg = {k: v for k, v in base.items() if not k.startswith("_") and k not in ("transformers_version", "dtype")}
        cfg["num_hidden_layers"] = n
        hf = os.path.join(root, f"hf-{n}")
        facts = facts_for(cfg)
        synthesize(cfg, facts, None, 0, hf)
        t = time.perf_counter()
        r = em.export_model(hf, os.path.join(root, f"onnx-{n}", "llm_generator.onnx"), facts)
        total = time.perf_counter() - t
        print(json.dumps({"layers": n, "total": round(total, 2), "phases": {k: round(v, 2) for k, v in timers.items()},
                          "bridgeSeconds": r["seconds"], "peakRssBytes": r["peakRssBytes"]}), flush=True)
    return 0


def compare(a) -> int:
    import subprocess

    root = a.out or tempfile.mkdtemp(prefix="export-compare-")
    for n, mode in enumerate(a.compare.split(",")):
        before = os.getloadavg()
        cmd = [sys.executable, os.path.abspath(__file__), a.hf_dir, "--one", mode, "--out", os.path.join(root, f"run{n}")]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        wall = time.perf_counter() - t
        line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith("{")), None)
        if proc.returncode != 0 or line is None:
            print(json.dumps({"mode": mode, "failed": proc.returncode, "stderr": proc.stderr[-2000:]}), flush=True)
            continue
        r = json.loads(line)
        r.update(run=n, processWall=round(wall, 2), loadavgBefore=before)
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
