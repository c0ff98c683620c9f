"""The fixture builder makes a real decoder: KV cache, masks and tied heads work."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import REPO, session, tiny_llm


def _step_feeds(cfg, ids, mask, pos, past):
    f = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
    for li in range(cfg.layers):
        for kind in ("key", "value"):
            f[f"past_key_values.{li}.{kind}"] = past[f"present.{li}.{kind}"]
    return f


def _empty_past(cfg, batch):
    return {
        f"present.{li}.{kind}": np.zeros((batch, cfg.kv_heads, 0, cfg.head_dim), np.float32)
        for li in range(cfg.layers)
        for kind in ("key", "value")
    }


@pytest.mark.parametrize("tied", [True, False])
def test_kv_cache_prefill_plus_decode_equals_full_sequence(models, tied):
    m = models["tied" if tied else "untied"]
    cfg, feeds = m["cfg"], m["feeds"]
    sess = session(m["path"])
    names = [o.name for o in sess.get_outputs()]
    full = m["ref"]
    ids, mask, pos = feeds["input_ids"], feeds["attention_mask"], feeds["position_ids"]
    B, S = ids.shape
    P = 9
    out = dict(zip(names, sess.run(None, _step_feeds(cfg, ids[:, :P], mask[:, :P], pos[:, :P], _empty_past(cfg, B)))))
    np.testing.assert_allclose(out["logits"], full[:, :P], atol=1e-4)
    for t in range(P, S):
        out = dict(
            zip(names, sess.run(None, _step_feeds(cfg, ids[:, t : t + 1], mask[:, : t + 1], pos[:, t : t + 1], out)))
        )
        assert out["present.0.key"].shape == (B, cfg.kv_heads, t + 1, cfg.head_dim)
        np.testing.assert_allclose(out["logits"][:, -1], full[:, t], atol=1e-4)


def test_attention_mask_and_position_ids_matter(models):
    m = models["untied"]
    cfg, feeds = m["cfg"], dict(m["feeds"])
    sess = session(m["path"])
    base = m["ref"]
    masked = dict(feeds)
    mask = feeds["attention_mask"].copy()
    mask[:, :3] = 0  # left padding
    masked["attention_mask"] = mask
    lm = sess.run(["logits"], masked)[0]
    assert np.abs(lm[:, -1] - base[:, -1]).max() > 1e-3
    # RoPE is relative: a constant shift of all positions changes nothing ...
    shifted = dict(feeds)
    shifted["position_ids"] = feeds["position_ids"] + 5
    ls = sess.run(["logits"], shifted)[0]
    np.testing.assert_allclose(ls, base, atol=1e-4)
    # ... but scrambled positions do
    scrambled = dict(feeds)
    scrambled["position_ids"] = np.ascontiguousarray(feeds["position_ids"][:, ::-1])
    lsc = sess.run(["logits"], scrambled)[0]
    assert np.abs(lsc[:, -1] - base[:, -1]).max() > 1e-3
    # left-padded row == the unpadded suffix run on its own (positions restarted)
    row = {"input_ids": feeds["input_ids"][:1, 3:], "attention_mask": np.ones((1, 13), np.int64),
           "position_ids": np.arange(13, dtype=np.int64)[None]}
    for li in range(cfg.layers):
        for kind in ("key", "value"):
            row[f"past_key_values.{li}.{kind}"] = np.zeros((1, cfg.kv_heads, 0, cfg.head_dim), np.float32)
    padded = dict(masked)
    padded["position_ids"] = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    lp = sess.run(["logits"], padded)[0]
    lr = sess.run(["logits"], row)[0]
    np.testing.assert_allclose(lp[0, -1], lr[0, -1], atol=1e-4)


@pytest.mark.parametrize("tied", [True, False])
def test_structure_and_top1_margin(models, tied):
    m = models["tied" if tied else "untied"]
    model = onnx.load(str(m["path"]))
    cfg = m["cfg"]
    ins = {v.name: v for v in model.graph.input}
    outs = {v.name: v for v in model.graph.output}
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(ins["input_ids"]) == ["batch_size", "sequence_length"]
    assert dims(ins["attention_mask"]) == ["batch_size", "total_sequence_length"]
    assert dims(ins["position_ids"]) == ["batch_size", "sequence_length"]
    assert dims(ins["past_key_values.1.value"]) == ["batch_size", 2, "past_sequence_length", 16]
    assert dims(outs["logits"]) == ["batch_size", "sequence_length", cfg.vocab]
    assert dims(outs["present.0.key"]) == ["batch_size", 2, "total_sequence_length", 16]
    inits = {t.name for t in model.graph.initializer}
    head = next(n for n in model.graph.node if n.output[0] == "logits")
    if tied:
        tr = next(n for n in model.graph.node if n.output[0] == head.input[1])
        assert tr.op_type == "Transpose" and tr.input[0] == "model.embed_tokens.weight"
        assert "lm_head.weight" not in inits
    else:
        assert head.input[1] == "lm_head.weight"
    logits = m["ref"]
    srt = np.sort(logits, axis=-1)
    margin = (srt[..., -1] - srt[..., -2]) / logits.std(axis=-1)
    assert margin.min() > 0.5, margin.min()  # top-1 is never a near tie
    assert logits.std() > 0.5


def test_cli_and_min_bytes(tmp_path):
    out = tmp_path / "big.onnx"
    proc = subprocess.run(
        [sys.executable, str(REPO / "fixtures" / "tiny_llm.py"), str(out), "--tied", "--min-bytes", "3000000",
         "--external-data"],
        capture_output=True, text=True, check=True,
    )
    info = json.loads(proc.stdout)
    assert info["bytes"] > 3_000_000
    assert (tmp_path / "big.onnx.data").exists()
    model = onnx.load(str(out))  # loads the external data too
    assert sum(t.ByteSize() for t in model.graph.initializer) > 3_000_000
    cfg = tiny_llm.TinyLlmConfig(**{k: v for k, v in info["config"].items()})
    f = tiny_llm.reference_inputs(cfg, batch=1, seq=4)
    assert session(out).run(["logits"], f)[0].shape == (1, 4, cfg.vocab)
