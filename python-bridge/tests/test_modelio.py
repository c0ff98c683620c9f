"""The lean reader/writer agree with onnx.load / onnx.save."""

from __future__ import annotations

import numpy as np
import onnx

from conftest import session, tiny_llm
from sphana_bridge.modelio import DataFileWriter, TensorReader, scan_model, set_external, write_single_file


def _arrays(model):
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}


def test_scan_single_file_matches_onnx_load(tmp_path):
    p = tmp_path / "m.onnx"
    tiny_llm.save_tiny_llm(tiny_llm.TinyLlmConfig(tied=True), str(p))
    ref = onnx.load(str(p))
    sc = scan_model(str(p))
    assert not sc.has_external_data and sc.external_files == []
    lazy = [t for t in sc.model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert lazy and all(not t.raw_data for t in lazy)  # big payloads were not read
    reader = TensorReader(sc)
    want = _arrays(ref)
    got = {t.name: reader.read_array(t) for t in sc.model.graph.initializer}
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(want[k], got[k])
    # structure identical apart from initializer payloads
    a, b = onnx.ModelProto(), onnx.ModelProto()
    a.CopyFrom(ref)
    b.CopyFrom(sc.model)
    a.graph.ClearField("initializer")
    b.graph.ClearField("initializer")
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def test_scan_external_data_and_single_file_writer(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    p = d / "m.onnx"
    cfg = tiny_llm.TinyLlmConfig()
    tiny_llm.save_tiny_llm(cfg, str(p), external_data=True)
    sc = scan_model(str(p))
    assert sc.has_external_data and sc.external_files == [str(p) + ".data"]
    reader = TensorReader(sc)
    want = _arrays(onnx.load(str(p)))
    # re-home every tensor into a new data file, then stream a single file out of it
    w = DataFileWriter(str(tmp_path / "x.onnx.data"))
    model = onnx.ModelProto()
    model.CopyFrom(sc.model)
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            n = reader.payload_len(t)
            off, length = w.append_chunks(reader.read_bytes_chunks(t, chunk=333), n)
            set_external(t, w.location, off, length)
    w.close()
    n = write_single_file(model, str(tmp_path / "x.onnx.data"), str(tmp_path / "x.onnx"))
    assert n == (tmp_path / "x.onnx").stat().st_size
    got = _arrays(onnx.load(str(tmp_path / "x.onnx")))
    for k in want:
        np.testing.assert_array_equal(want[k], got[k])
    f = tiny_llm.reference_inputs(cfg, batch=1, seq=5)
    np.testing.assert_allclose(session(tmp_path / "x.onnx").run(["logits"], f)[0],
                               session(p).run(["logits"], f)[0], atol=1e-6)
