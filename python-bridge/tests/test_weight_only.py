"""Weight-only quantization numerics: MatMulNBits blocks (8-bit default, 4-bit), the LM head and
the token embedding, byte for byte against onnxruntime's own quantizer and the fp32 weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import logits_metrics, quantize, session

L = 2
BODY = 7 * L
V, H = 512, 64  # tiny model vocab / hidden


def _attrs(n: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def _inits(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _source_weight(src: onnx.ModelProto, node_name: str, tied_table: str | None) -> np.ndarray:
    """The fp32 [K, N] weight of the source MatMul a MatMulNBits node replaced."""
    inits = {t.name: numpy_helper.to_array(t) for t in src.graph.initializer}
    base = node_name.rsplit("_Q", 1)[0]
    mm = next(n for n in src.graph.node if (n.name or n.output[0]) == base)
    w = mm.input[1]
    if w in inits:
        return inits[w]
    producer = {o: n for n in src.graph.node for o in n.output}
    tr = producer[w]
    assert tr.op_type == "Transpose" and tr.input[0] == tied_table
    return inits[tr.input[0]].T


def dequantize_mnb(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A MatMulNBits weight back to fp32 [K, N], and the step (scale) of each element."""
    a = _attrs(node)
    K, N, bits, bs = a["K"], a["N"], a["bits"], a["block_size"]
    packed = inits[node.input[1]].reshape(N, -1)
    scales = inits[node.input[2]].reshape(N, -1)
    kb = scales.shape[1]
    if bits == 8:
        q = packed.astype(np.float32).reshape(N, kb, bs)
    else:
        lo, hi = packed & 0x0F, packed >> 4
        q = np.stack([lo, hi], axis=-1).reshape(N, kb, bs).astype(np.float32)
    if len(node.input) > 3 and node.input[3]:
        zp = inits[node.input[3]]
        if zp.dtype == np.uint8 and bits == 4:
            z = np.stack([zp & 0x0F, zp >> 4], axis=-1).reshape(N, -1)[:, :kb].astype(np.float32)
        else:
            z = zp.reshape(N, kb).astype(np.float32)
    else:
        z = np.full((N, kb), 2 ** (bits - 1), np.float32)
    w = (q - z[:, :, None]) * scales[:, :, None]
    # ORT's symmetric kernel stores scale = (the block's value of largest magnitude) / -2^(bits-1): it may be
    # negative, and a value of the other sign and the same magnitude lands on +2^(bits-1), clipped to the
    # largest code. Round to nearest: the error is half a step, up to one step for a clipped (extreme) code.
    step = np.broadcast_to(np.abs(scales)[:, :, None], w.shape)
    clipped = (q == 0) | (q == 2**bits - 1)
    bound = np.where(clipped, step, step / 2)
    return w.reshape(N, kb * bs)[:, :K].T, bound.reshape(N, kb * bs)[:, :K].T


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_int8_blocks_within_half_a_step_head_included(models, tmp_path, tied):
    m = models["tied" if tied else "untied"]
    run = quantize(tmp_path, m["path"], "direct", "int8")
    out = run.data["files"][0]["path"]
    model = onnx.load(out)
    inits = _inits(out)
    src = onnx.load(str(m["path"]))
    mnb = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(mnb) == BODY + 1
    head = next(n for n in mnb if "logits" in n.output)
    assert _attrs(head)["N"] == V and _attrs(head)["K"] == H and _attrs(head)["bits"] == 8
    for n in mnb:
        a = _attrs(n)
        assert a["bits"] == 8 and a["block_size"] == 32 and a["accuracy_level"] == 4, (n.name, a)
        assert len(n.input) == 3  # symmetric: implicit zero point 128
        ref = _source_weight(src, n.name, "model.embed_tokens.weight")
        deq, bound = dequantize_mnb(n, inits)
        assert deq.shape == ref.shape
        err = np.abs(deq - ref)
        assert (err <= bound * (1 + 1e-5) + 1e-7).all(), (n.name, float((err - bound).max()))
        assert float(err.max()) > 0  # really quantized
        assert float(err.mean()) <= float(bound.mean()) / 2  # and mostly well inside the bound
    # the embedding: GatherBlockQuantized 8-bit over the same [V, kb, 32] blocks
    gbq = next(n for n in model.graph.node if n.op_type == "GatherBlockQuantized")
    assert _attrs(gbq)["bits"] == 8 and _attrs(gbq)["block_size"] == 32
    table = inits[gbq.input[0]]
    assert table.dtype == np.uint8 and table.shape == (V, H // 32, 32)
    emb = numpy_helper.to_array(next(t for t in src.graph.initializer if t.name == "model.embed_tokens.weight"))
    sc = inits[gbq.input[2]].reshape(V, -1)
    deq = ((table.astype(np.float32) - 128) * sc[:, :, None]).reshape(V, H)
    bound = np.repeat(np.abs(sc), 32, axis=1) * np.where(table.reshape(V, H) == 255, 1.0, 0.5)
    assert (np.abs(deq - emb) <= bound * (1 + 1e-5) + 1e-7).all()
    if tied:
        assert head.input[1] == gbq.input[0]  # one table, read by the Gather and the head
    else:
        assert head.input[1] != gbq.input[0]


def test_int8_bytes_equal_onnxruntime_quantizer(models, tmp_path):
    """Packed weights and scales equal onnxruntime's MatMulNBitsQuantizer (bits 8, block 32, symmetric)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    m = models["untied"]
    run = quantize(tmp_path, m["path"], "direct", "int8")
    mine = _inits(run.data["files"][0]["path"])
    cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=8, accuracy_level=4)
    q = MatMulNBitsQuantizer(onnx.load(str(m["path"])), algo_config=cfg)
    q.process()
    theirs = {t.name: numpy_helper.to_array(t) for t in q.model.model.graph.initializer}
    names = [k for k in theirs if k.endswith("_Q8")]
    assert len(names) == BODY + 1  # ORT quantizes the untied head too
    for k in names:
        base = k[: -len("_Q8")]
        np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)
        np.testing.assert_array_equal(mine[base + "_scales"], theirs[base + "_scales"], err_msg=k)


def test_int8_size_is_the_block_formula(models, tmp_path):
    """Every quantized weight costs K*N bytes + 4 bytes per block of 32: nothing else big is left."""
    m = models["tied"]
    run = quantize(tmp_path, m["path"], "direct", "int8")
    model = onnx.load(run.data["files"][0]["path"])
    src = onnx.load(str(m["path"]))
    float_w = sum(int(np.prod(t.dims)) for t in src.graph.initializer if len(t.dims) == 2)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q_bytes = sum(a.nbytes for a in inits.values() if a.dtype == np.uint8)
    s_bytes = sum(a.nbytes for k, a in inits.items() if k.endswith(("_scales", "_scales_2d")))
    assert q_bytes == float_w  # one byte per 2-D weight element (the tied table once)
    # scales: [N, K/32] f32 for every weight, the embedding's twice ([V,kb,1] for the Gather, [V,kb] for the head)
    assert s_bytes == (float_w // 32) * 4 + (V * H // 32) * 4
    assert not any(a.dtype == np.float32 and a.ndim == 2 and a.size >= H * H for a in inits.values())


def test_head_kept_at_higher_precision(models, tmp_path):
    m = models["tied"]
    run = quantize(tmp_path, m["path"], "direct", "int8", headAccuracyLevel=0)
    model = onnx.load(run.data["files"][0]["path"])
    levels = {n.output[0]: _attrs(n).get("accuracy_level", 0) for n in model.graph.node if n.op_type == "MatMulNBits"}
    assert levels.pop("logits") == 0
    assert set(levels.values()) == {4}
    assert run.data["head"] == {"outputs": ["logits"], "tied": True, "bits": 8, "accuracyLevel": 0, "quantized": True}
    assert run.data["settings"]["headAccuracyLevel"] == 0 and run.data["settings"]["accuracyLevel"] == 4
    low = quantize(tmp_path, m["path"], "direct", "int8", name="l0", accuracyLevel=0)
    model0 = onnx.load(low.data["files"][0]["path"])
    assert all("accuracy_level" not in _attrs(n) for n in model0.graph.node if n.op_type == "MatMulNBits")
    # level 0 (float activations) is the closer to fp32 on the same weights
    out4 = session(run.data["files"][0]["path"]).run(["logits"], m["feeds"])[0]
    out0 = session(low.data["files"][0]["path"]).run(["logits"], m["feeds"])[0]
    assert np.abs(out0 - m["ref"]).mean() <= np.abs(out4 - m["ref"]).mean()


@pytest.mark.parametrize(
    "extra,bits_zp",
    [
        ({}, (4, True)),
        ({"symmetric": True}, (4, False)),
        ({"blockSize": 64}, (4, True)),
        ({"blockSize": 128}, (4, True)),
        ({"algorithm": "hqq"}, (4, True)),
        ({"algorithm": "rtn-float-zp"}, (4, False)),
        ({"algorithm": "rtn-float-zp", "blockSize": 64}, (4, False)),
    ],
    ids=["asym32", "sym32", "asym64", "asym128", "hqq32", "floatzp32", "floatzp64"],
)
def test_int4_variants(models, tmp_path, extra, bits_zp):
    m = models["untied"]
    run = quantize(tmp_path, m["path"], "direct", "int4", **extra)
    path = run.data["files"][0]["path"]
    model = onnx.load(path)
    inits = _inits(path)
    src = onnx.load(str(m["path"]))
    bs = extra.get("blockSize", 32)
    mnb = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(mnb) == BODY + 1
    for n in mnb:
        a = _attrs(n)
        is_head = "logits" in n.output
        assert a["bits"] == (8 if is_head else 4), (n.name, a)  # mixed precision: the head at 8 bits
        assert a["block_size"] == bs
        if not is_head:
            assert (len(n.input) > 3) == bits_zp[1]
            if extra.get("algorithm") == "hqq":  # float zero points, one per block
                assert inits[n.input[3]].dtype == np.float32 and inits[n.input[3]].size == inits[n.input[2]].size
            deq, bound = dequantize_mnb(n, inits)
            if extra.get("algorithm") == "rtn-float-zp":
                # symmetric codes + Add(MatMul(block sums of x, offsets [kb, N])): W = s(q - 8) + O
                add = next(c for c in model.graph.node if c.op_type == "Add" and n.output[0] in c.input)
                mm = next(c for c in model.graph.node if c.op_type == "MatMul" and c.output[0] in add.input)
                off = inits[mm.input[1]]
                assert off.dtype == np.float32 and off.shape == (deq.shape[0] // bs, deq.shape[1])
                deq = deq + np.repeat(off, bs, 0)
            ref = _source_weight(src, n.name, None)
            err = np.abs(deq - ref)
            if extra.get("algorithm") != "hqq":
                assert (err <= bound * (1 + 1e-4) + 1e-6).all(), n.name  # round to nearest
            else:  # HQQ moves the zero point off the grid to cut the error it measures (|W - Ŵ|^p)
                assert float(err.mean()) <= float(bound.mean())
    out = session(path).run(["logits"], m["feeds"])[0]
    met = logits_metrics(m["ref"], out)
    assert met["cos_mean"] >= 0.98, met
    assert run.data["settings"]["bits"] == 4 and run.data["settings"]["blockSize"] == bs
    assert run.data["settings"]["algorithm"] == extra.get("algorithm", "rtn")  # the manifest names the quantizer
    assert run.data["floatConstMatMuls"] == []  # rtn-float-zp's block-offset MatMuls are part of its 4-bit weights


def test_fused_matmul_tied_head_is_quantized(models, tmp_path):
    """onnxruntime's fusions turn the tied head into FusedMatMul(x, E, transB=1): quantized on the shared table."""
    m = models["tied"]
    src = onnx.load(str(m["path"]))
    g = src.graph
    head = next(n for n in g.node if "logits" in n.output)
    tr = next(n for n in g.node if n.output[0] == head.input[1])
    fused = helper.make_node("FusedMatMul", [head.input[0], tr.input[0]], list(head.output), name="lm_head.Fused",
                             domain="com.microsoft", transB=1, alpha=1.0)
    nodes = [fused if n is head else n for n in g.node if n is not tr]
    del g.node[:]
    g.node.extend(nodes)
    src.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    p = tmp_path / "fused.onnx"
    onnx.save(src, str(p))
    ref = session(p).run(["logits"], m["feeds"])[0]
    np.testing.assert_allclose(ref, m["ref"], atol=1e-4)
    run = quantize(tmp_path, p, "direct", "int8")
    out = run.data["files"][0]["path"]
    model = onnx.load(out)
    assert not any(n.op_type == "FusedMatMul" for n in model.graph.node)
    assert run.data["quantizedOps"] == {"com.microsoft.GatherBlockQuantized": 1, "com.microsoft.MatMulNBits": BODY + 1}
    assert run.data["floatConstMatMuls"] == []
    met = logits_metrics(ref, session(out).run(["logits"], m["feeds"])[0])
    assert met["top1"] >= 0.95 and met["cos_mean"] >= 0.999, met
