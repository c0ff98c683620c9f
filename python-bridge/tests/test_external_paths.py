"""Defence in depth: the bridge validates every external-data location itself (issue 10, item 2).

A crafted model points one tensor outside its folder. The bridge must refuse it with a typed
error (InputError, details.code E_UNSAFE_EXTERNAL_DATA) before opening the outside file, and
no byte of that file may reach an output. onnx's own loader is the reference: it refuses the
same locations.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from conftest import quantize, tiny_llm
from sphana_bridge import external_paths
from sphana_bridge.modelio import scan_model
from sphana_bridge.protocol import InputError

HIJACKED = "model.norm.weight"  # kept verbatim (fp32) by quantization: old code copied its bytes


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _field(no: int, data: bytes) -> bytes:
    return _varint((no << 3) | 2) + _varint(len(data)) + data


def _secret(n: int) -> bytes:
    # finite, distinctive float32 values
    return np.array([1.7390 + i * 1e-3 for i in range(n // 4)], dtype="<f4").tobytes()


def _crafted(tmp: Path, how: str) -> tuple[Path, bytes]:
    """A tiny LLM in tmp/model/, with HIJACKED pointing at tmp/secret.bin in the way `how` says."""
    folder = tmp / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    tiny_llm.save_tiny_llm(tiny_llm.TinyLlmConfig(), str(path))
    m = onnx.load(str(path))
    t = next(t for t in m.graph.initializer if t.name == HIJACKED)
    nbytes = len(t.raw_data) or 4 * int(np.prod(t.dims))
    secret = _secret(nbytes)
    (tmp / "secret.bin").write_bytes(secret)
    location = {
        "parent": "../secret.bin",
        "absolute": str(tmp / "secret.bin"),
        "backslash": "..\\secret.bin",
        "symlink": "link.bin",
        "first_graph": "../secret.bin",
        "enum": "../secret.bin",
    }[how]
    if how == "symlink":
        os.symlink("../secret.bin", folder / "link.bin")
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    if how == "first_graph":
        # The hijacked tensor travels in a first `graph` copy; protobuf merges both copies.
        tensor_bytes = t.SerializeToString()
        m.graph.initializer.remove(t)
        data = _field(7, _field(5, tensor_bytes)) + m.SerializeToString()
    elif how == "enum":
        # data_location EXTERNAL, then 9 (undeclared in the closed enum): protobuf keeps EXTERNAL.
        tensor_bytes = t.SerializeToString() + _varint(14 << 3) + _varint(9)
        m.graph.initializer.remove(t)
        data = m.SerializeToString() + _field(7, _field(5, tensor_bytes))
        assert onnx.load_from_string(data).graph.initializer[-1].data_location == TensorProto.EXTERNAL
    else:
        data = m.SerializeToString()
    path.write_bytes(data)
    return path, secret


CASES = ["parent", "absolute", "backslash", "symlink", "first_graph", "enum"]


@pytest.mark.parametrize("how", CASES)
def test_scan_refuses_and_never_opens_the_outside_file(tmp_path, monkeypatch, how):
    path, _ = _crafted(tmp_path, how)
    secret = os.path.realpath(tmp_path / "secret.bin")
    opened: list[str] = []
    real_open, real_os_open, real_fromfile = builtins.open, os.open, np.fromfile

    def spy(fn):
        def wrapped(file, *a, **k):
            if isinstance(file, (str, bytes, os.PathLike)):
                opened.append(os.path.realpath(file))
            return fn(file, *a, **k)
        return wrapped

    monkeypatch.setattr(builtins, "open", spy(real_open))
    monkeypatch.setattr(os, "open", spy(real_os_open))
    monkeypatch.setattr(np, "fromfile", spy(real_fromfile))
    with pytest.raises(InputError) as info:
        scan_model(str(path))
    monkeypatch.undo()
    assert info.value.details["code"] == "E_UNSAFE_EXTERNAL_DATA", info.value.message
    assert info.value.details["tensor"] == HIJACKED
    assert secret not in opened
    assert "\n" not in info.value.message


@pytest.mark.parametrize("how", CASES)
def test_onnx_itself_refuses_the_same_location(tmp_path, how):
    """The reference: onnx.load with external data refuses every case too (on POSIX '..\\x' is
    one odd file name for onnx, which then is missing; sphana refuses it outright)."""
    path, _ = _crafted(tmp_path, how)
    with pytest.raises(Exception):
        onnx.load(str(path))


def test_quantize_refuses_and_no_outside_byte_reaches_the_output(tmp_path):
    path, secret = _crafted(tmp_path, "first_graph")
    run = quantize(tmp_path, path, "external-data", "int8", name="out")
    assert run.error["class"] == "InputError"
    assert run.error["details"]["code"] == "E_UNSAFE_EXTERNAL_DATA"
    out = tmp_path / "out"
    leftovers = [p for p in out.rglob("*")]
    assert leftovers == [], leftovers  # nothing written, no staging left
    # and nothing anywhere under tmp (other than the secret itself) carries its bytes
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.name != "secret.bin":
            assert secret[:64] not in p.read_bytes(), p


def test_a_clean_external_data_model_still_scans(tmp_path):
    path = tmp_path / "clean" / "m.onnx"
    tiny_llm.save_tiny_llm(tiny_llm.TinyLlmConfig(), str(path), external_data=True)
    sc = scan_model(str(path))
    assert sc.has_external_data and sc.external_files == [str(path) + ".data"]


@pytest.mark.parametrize("location,reason", [
    ("", "empty location"), ("a\0b", "NUL"), ("/etc/passwd", "absolute"), ("C:x", "absolute"),
    ("\\\\server\\share", "absolute"), ("a/../../b", "'..'"), ("..", "'..'"),
])
def test_location_strings(tmp_path, location, reason):
    with pytest.raises(InputError) as info:
        external_paths.resolve_location(str(tmp_path), location, "t")
    assert reason in info.value.details["reason"]


def test_a_directory_is_not_a_data_file(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError) as info:
        external_paths.resolve_location(str(tmp_path), "sub", "t")
    assert info.value.details["reason"] == "not a regular file"
