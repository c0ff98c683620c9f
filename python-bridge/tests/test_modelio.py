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


def test_ir_single_file_writer_matches_ir_save(tmp_path):
    """save_ir_single_file writes the message ir.save writes, for every kind of tensor the export
    holds (torch-backed fp32 and bf16, numpy, packed int4, an external file, a small inline one),
    and leaves the model as it was."""
    import onnx_ir as ir
    import torch
    from torch.onnx._internal.exporter._core import TorchTensor

    from sphana_bridge.modelio import save_ir_single_file

    g = torch.Generator().manual_seed(0)
    payload = np.arange(500, dtype=np.float32) / 7
    (tmp_path / "ext.bin").write_bytes(b"\0" * 16 + payload.tobytes())
    tensors = {
        "torch_fp32": TorchTensor(torch.randn(300, 7, generator=g), name="torch_fp32"),
        "torch_bf16": TorchTensor(torch.randn(600, 3, generator=g).to(torch.bfloat16), name="torch_bf16"),
        "small": ir.tensor(np.arange(3, dtype=np.int64), name="small"),
        "external": ir.ExternalTensor("ext.bin", 16, payload.nbytes, ir.DataType.FLOAT, shape=ir.Shape([500]), name="external", base_dir=str(tmp_path)),
        "int4": ir.PackedTensor(np.arange(1054, dtype=np.int64).astype(np.uint8), ir.DataType.INT4, shape=ir.Shape([2107]), name="int4"),
        "fp16": ir.tensor((np.arange(1600, dtype=np.float32) / 3).astype(np.float16).reshape(40, 40), name="fp16"),
    }
    x = ir.Value(name="x", shape=ir.Shape([4]), type=ir.TensorType(ir.DataType.FLOAT))
    values = [ir.Value(name=k, const_value=t) for k, t in tensors.items()]
    model = ir.Model(ir.Graph([x], [x], nodes=[], initializers=values, opset_imports={"": 18}, name="g"), ir_version=10)
    model.metadata_props["sphana.test"] = "1"
    ir.save(model, str(tmp_path / "ref.onnx"))
    seen = []
    written = save_ir_single_file(model, str(tmp_path / "out.onnx"), progress=lambda done, total: seen.append((done, total)))
    assert written == (tmp_path / "out.onnx").stat().st_size
    assert [v.const_value for v in values] == list(tensors.values())  # the model is unchanged
    total = sum(t.nbytes for t in tensors.values() if t.nbytes >= 1024)
    assert seen[-1] == (total, total) and len(seen) == 5  # every payload but the 24-byte one streamed

    ref, out = onnx.load(str(tmp_path / "ref.onnx")), onnx.load(str(tmp_path / "out.onnx"))
    for t in ref.graph.initializer:
        t.ClearField("data_location")  # ir.save writes DEFAULT explicitly for the tensor it read from a file
    assert ref.SerializeToString(deterministic=True) == out.SerializeToString(deterministic=True)
    got = {t.name: t.raw_data for t in out.graph.initializer}
    assert got["external"] == payload.tobytes()
    assert got["torch_bf16"] == tensors["torch_bf16"].tobytes() and len(got["int4"]) == 1054
