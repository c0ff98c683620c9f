"""The JSON-lines protocol: error classes, stdout hygiene, fail-fast, cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

from conftest import BRIDGE_DIR, run_bridge, tiny_llm


def test_versions():
    run = run_bridge("versions")
    assert run.data["python"].count(".") == 2
    import onnxruntime

    from sphana_bridge.versions import pinned_packages

    packages = run.data["packages"]
    # Every pinned package is reported, in requirements.txt order, with its installed version.
    assert list(packages) == pinned_packages()
    assert len(packages) >= 12
    assert {k: packages[k] for k in ("onnx", "onnxruntime", "numpy")} == {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
    assert packages["torch"].split("+")[0] == "2.13.0"
    assert "missing" not in packages.values()
    assert run.lines == [run.final]  # no progress for versions


def test_bad_requests(tmp_path):
    cases = [
        ((), None),
        (("quantize",), "{not json"),
        (("quantize",), "[1, 2]"),
        (("frobnicate",), "{}"),
        (("quantize", "--bogus"), None),
        (("versions",), '{"unexpected": 1}'),
    ]
    good = {"input": str(tmp_path / "a.onnx"), "output": str(tmp_path / "o.onnx"), "strategy": "direct",
            "precision": "int8"}
    for bad in (
        {k: v for k, v in good.items() if k != "strategy"},
        {**good, "strategy": "auto"},
        {**good, "precision": "fp8"},
        {**good, "perChannel": "yes"},
        {**good, "protoLimitBytes": -1},
        {**good, "blockSize": 48},
        {**good, "embeddingBits": 2},
        {**good, "output": str(tmp_path / "missing-dir" / "o.onnx")},
        {**good, "output": str(tmp_path / "o.txt")},
        {**good, "extra": True},
    ):
        cases.append((("quantize",), json.dumps(bad)))
    for args, req in cases:
        run = run_bridge(*args, request=req)
        assert run.error["class"] == "BadRequest", (args, req, run.final)
    assert os.listdir(tmp_path) == []


def test_input_errors(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    text = tmp_path / "text.onnx"
    text.write_text("definitely not a protobuf\n" * 50)
    cfg = tiny_llm.TinyLlmConfig()
    good = tmp_path / "good.onnx"
    tiny_llm.save_tiny_llm(cfg, str(good))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:-5000])
    ext_dir = tmp_path / "ext"
    ext_dir.mkdir()
    ext = ext_dir / "m.onnx"
    tiny_llm.save_tiny_llm(cfg, str(ext), external_data=True)
    os.remove(str(ext) + ".data")
    for inp in (tmp_path / "missing.onnx", tmp_path, garbage, empty, text, truncated, ext):
        for strategy in ("direct", "embedding-split"):
            run = run_bridge("quantize", request={"input": str(inp), "output": str(out / "m.onnx"),
                                                  "strategy": strategy, "precision": "int8"})
            assert run.error["class"] == "InputError", (inp, run.final)
    assert os.listdir(out) == []


def test_direct_fails_fast_on_lowered_proto_limit(models, tmp_path):
    for precision in ("int8", "int4"):
        out = tmp_path / precision
        out.mkdir()
        t0 = time.monotonic()
        run = run_bridge("quantize", request={"input": str(models["tied"]["path"]), "output": str(out / "m.onnx"),
                                              "strategy": "direct", "precision": precision,
                                              "protoLimitBytes": 100_000})
        elapsed = time.monotonic() - t0
        err = run.error
        assert err["class"] == "ProtoLimitExceeded"
        det = err["details"]
        assert det["limitBytes"] == 100_000 and det["estimatedBytes"] > 100_000
        assert det["reason"] in ("input-too-large", "output-too-large")
        assert str(det["estimatedBytes"]) in err["message"] and "100000" in err["message"]
        assert not any(l["step"] == "quantize" for l in run.lines if l["type"] == "progress")
        assert elapsed < 10
        assert os.listdir(out) == []


def test_direct_on_external_data_input_is_proto_limit(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    src = d / "m.onnx"
    tiny_llm.save_tiny_llm(tiny_llm.TinyLlmConfig(), str(src), external_data=True)
    out = tmp_path / "out"
    out.mkdir()
    run = run_bridge("quantize", request={"input": str(src), "output": str(out / "q.onnx"), "strategy": "direct",
                                          "precision": "int8"})
    assert run.error["class"] == "ProtoLimitExceeded"
    assert run.error["details"]["reason"] == "input-external-data"
    # the other strategies accept it
    for strategy in ("external-data", "embedding-split"):
        run = run_bridge("quantize", request={"input": str(src), "output": str(out / f"{strategy}.onnx"),
                                              "strategy": strategy, "precision": "int8"})
        assert run.ok
    assert sorted(os.listdir(d)) == ["m.onnx", "m.onnx.data"]  # nothing written beside the input
    assert os.stat(str(src) + ".data").st_nlink == 1


def test_direct_output_bigger_than_estimate_still_rejected(tmp_path):
    """protoLimitBytes between the real output size and the estimate is the 'did exceed' path."""
    from sphana_bridge.engine import Engine, EngineOptions
    from sphana_bridge.modelio import scan_model
    from sphana_bridge.protocol import ProtoLimitExceeded

    src = tmp_path / "m.onnx"
    tiny_llm.save_tiny_llm(tiny_llm.TinyLlmConfig(), str(src))
    eng = Engine(scan_model(str(src)), EngineOptions(precision="int4", output_mode="single", proto_limit=1000),
                 lambda *a: None)
    model = eng.plan()
    try:
        eng.execute(model, str(tmp_path / "x.data"), str(tmp_path / "x.onnx"))
    except ProtoLimitExceeded as e:
        assert e.details["actualBytes"] > 1000
    else:
        raise AssertionError("expected ProtoLimitExceeded")


def test_quantization_error_cleans_up(tmp_path):
    # a model without a token embedding: embedding-split cannot work
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 64], np.random.default_rng(0).standard_normal(4096).astype(np.float32).tobytes(), raw=True)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    src = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("caller's file")
    run = run_bridge("quantize", request={"input": str(src), "output": str(out / "q.onnx"),
                                          "strategy": "embedding-split", "precision": "int8"})
    assert run.error["class"] == "QuantizationError"
    assert "embedding" in run.error["message"]
    assert os.listdir(out) == ["keep.txt"]
    # while the same model quantizes fine without the split
    run = run_bridge("quantize", request={"input": str(src), "output": str(out / "q.onnx"),
                                          "strategy": "direct", "precision": "int8"})
    assert run.data["quantizedOps"] == {"com.microsoft.MatMulNBits": 1}
    assert any("token embedding" in n or "LM head" in n for n in run.data["notes"]), run.data["notes"]


def _run_noisy(request: dict) -> subprocess.CompletedProcess:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from sphana_bridge import cli;"
        "cli.COMMANDS['noisy'] = ('noisy_command', 'run');"
        "sys.exit(cli.main(['noisy', '--request', sys.argv[2]]))"
    )
    env = dict(os.environ, PYTHONPATH=str(BRIDGE_DIR))
    return subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__), json.dumps(request)],
                          capture_output=True, text=True, env=env)


def test_stdout_carries_only_protocol_lines():
    for fail, rc in ((False, 0), (True, 1)):
        proc = _run_noisy({"fail": fail})
        assert proc.returncode == rc
        lines = proc.stdout.splitlines()
        objs = [json.loads(l) for l in lines]
        assert [o["type"] for o in objs] == ["progress", "error" if fail else "result"], proc.stdout
        assert objs[0]["message"] == "multi line message"
        for noise in ("print() noise", "sys.stdout noise", "sys.__stdout__ noise", "fd 1 noise", "libc puts noise"):
            assert noise in proc.stderr, noise
        if fail:
            assert objs[1]["class"] == "Internal" and "\n" not in objs[1]["message"]


def test_proto_size_errors_are_recognised():
    from google.protobuf.message import EncodeError

    from sphana_bridge.protocol import is_proto_size_error

    assert is_proto_size_error(ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB: 2147483700"))
    assert is_proto_size_error(EncodeError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB"))
    assert is_proto_size_error(ValueError(
        "The proto size is larger than the 2 GB limit. Please use save_as_external_data to save tensors separately "
        "from the model file."))
    assert is_proto_size_error(ValueError("This protobuf of onnx model is too large (>2GiB). Call check_model with model path instead."))
    try:
        try:
            raise ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB")
        except ValueError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert is_proto_size_error(outer)
    assert not is_proto_size_error(ValueError("shape mismatch"))
    assert not is_proto_size_error(KeyError("2GB"))


def test_real_protobuf_overflow_is_classified(tmp_path, monkeypatch):
    """Simulate the serializer failing the way protobuf does for >2 GB: ProtoLimitExceeded, no files left."""
    import onnx as onnx_mod

    from sphana_bridge import quantize as q
    from sphana_bridge.protocol import Emitter, ProtoLimitExceeded

    src = tmp_path / "m.onnx"
    tiny_llm.save_tiny_llm(tiny_llm.TinyLlmConfig(), str(src))
    out = tmp_path / "out"
    out.mkdir()

    def boom(*a, **k):
        raise ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB: 2147483700")

    monkeypatch.setattr(onnx_mod, "save_model", boom)
    lines = []

    class Sink:
        def write(self, b):
            lines.append(b)

        def flush(self):
            pass

    try:
        q.run_quantize({"input": str(src), "output": str(out / "q.onnx"), "strategy": "direct", "precision": "int8",
                        "int8Scheme": "dynamic", "int8Engine": "ort"}, Emitter(Sink()))
    except ProtoLimitExceeded as e:
        assert "2GB" in e.message
    else:
        raise AssertionError("expected ProtoLimitExceeded")
    assert os.listdir(out) == []


def test_embedding_with_unknown_consumer_is_a_quantization_error(tmp_path):
    cfg = tiny_llm.TinyLlmConfig(tied=True)
    model = tiny_llm.build_tiny_llm(cfg)
    # something else also reads the table: the split cannot know how to rewrite it
    model.graph.node.append(helper.make_node("ReduceSum", ["model.embed_tokens.weight"], ["table_sum"], keepdims=0,
                                             name="odd_consumer"))
    model.graph.output.append(helper.make_tensor_value_info("table_sum", TensorProto.FLOAT, []))
    src = tmp_path / "odd.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "out"
    out.mkdir()
    run = run_bridge("quantize", request={"input": str(src), "output": str(out / "q.onnx"),
                                          "strategy": "embedding-split", "precision": "int8"})
    assert run.error["class"] == "QuantizationError"
    assert "odd_consumer" in run.error["message"] and "ReduceSum" in run.error["message"]
    assert os.listdir(out) == []


def test_disk_full_inside_a_command_reports_its_errno(tmp_path):
    """A real ENOSPC (writing to /dev/full), raw or wrapped in a BridgeError, carries errno and path
    so that the TypeScript side reports an environment error (exit 4) instead of a bug."""
    (tmp_path / "diskfull_command.py").write_text(
        "from sphana_bridge.protocol import BridgeError\n"
        "def run(request, emitter):\n"
        "    try:\n"
        "        with open('/dev/full', 'wb', buffering=0) as f:\n"
        "            f.write(b'x' * 4096)\n"
        "    except OSError as e:\n"
        "        if request['wrap']:\n"
        "            raise BridgeError('saving failed') from e\n"
        "        raise\n"
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from sphana_bridge import cli;"
        "cli.COMMANDS['diskfull'] = ('diskfull_command', 'run');"
        "sys.exit(cli.main(['diskfull', '--request', sys.argv[2]]))"
    )
    env = dict(os.environ, PYTHONPATH=str(BRIDGE_DIR))
    for wrap in (False, True):
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), json.dumps({"wrap": wrap})],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 1, proc.stderr
        (line,) = [json.loads(l) for l in proc.stdout.splitlines()]
        assert line["type"] == "error"
        assert line["details"]["errno"] == "ENOSPC", line
        assert line["details"]["path"] is None, line  # a failed write() names no file; TypeScript then says "the output folder"
        if wrap:
            assert line["message"] == "saving failed"
        else:
            assert line["class"] == "Internal" and line["message"].startswith("OSError: [Errno 28]")
