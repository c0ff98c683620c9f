"""export + the parity gate on tiny random models of every supported architecture."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_configs import DECODE_STEPS, FACTS, PROMPT, TINY  # noqa: E402
from sphana_bridge import export_model as em  # noqa: E402
from sphana_bridge import parity  # noqa: E402
from sphana_bridge.protocol import InputError  # noqa: E402
from sphana_bridge.synthetic import synthesize  # noqa: E402

ARCHS = sorted(TINY)
DIMS = {"batch_size", "sequence_length", "past_sequence_length", "total_sequence_length"}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {arch: synthesize(TINY[arch], FACTS[arch], None, 1234, str(root / arch)) and str(root / arch) for arch in ARCHS}


_EXPORTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def exported(hf_dirs, tmp_path_factory):
    """arch -> export result (dynamo, single file), exported once per module."""
    root = tmp_path_factory.mktemp("onnx")

    def get(arch: str) -> dict:
        if arch not in _EXPORTS:
            _EXPORTS[arch] = em.export_model(
                hf_dirs[arch], str(root / arch / "llm_generator.onnx"), FACTS[arch], prompt_ids=PROMPT, decode_steps=DECODE_STEPS
            )
        return _EXPORTS[arch]

    yield get
    _EXPORTS.clear()


def load_torch(model_dir: str):
    return em.load_model(model_dir)


@pytest.mark.parametrize("arch", ARCHS)
def test_export_passes_the_parity_gate(exported, arch):
    res = exported(arch)
    out_dir = os.path.dirname(res["output"])
    assert res["files"] == [{"path": res["output"], "bytes": os.path.getsize(res["output"])}]
    assert res["externalData"] is False
    assert sorted(os.listdir(out_dir)) == ["llm_generator.onnx"], "staging leftovers"
    p = res["parity"]
    assert p["positions"] == len(PROMPT) + DECODE_STEPS
    assert p["top1Agreement"] == 1.0
    assert p["maxAbsDiff"] <= 1e-4  # fp32 end to end; the default gate is 1e-3
    assert p["cachedVsFullMaxAbsDiff"] <= 1e-4
    assert p["atol"] == parity.DEFAULT_ATOL
    assert res["opset"] == 18 and res["exporter"].startswith("torch 2.") and res["exporter"].endswith(" dynamo")
    assert set(res["seconds"]) == {"load", "export", "save", "parity"}
    assert res["peakRssBytes"] > 0
    if FACTS[arch]["slidingWindow"] is not None:
        assert p["slidingWindow"] == 8 and p["exceedsSlidingWindow"] is True


@pytest.mark.parametrize("arch", ARCHS)
def test_graph_contract_names_dims_metadata(exported, arch):
    import onnx

    res = exported(arch)
    cfg = TINY[arch]
    layers, kv = cfg["num_hidden_layers"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    model = onnx.load(res["output"])
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(model.graph.input) + list(model.graph.output)
    }
    assert shapes["input_ids"] == ["batch_size", "sequence_length"]
    assert shapes["attention_mask"] == ["batch_size", "total_sequence_length"]
    assert shapes["position_ids"] == ["batch_size", "sequence_length"]
    assert shapes["logits"] == ["batch_size", "sequence_length", 512]
    for i in range(layers):
        for k in ("key", "value"):
            assert shapes[f"past_key_values.{i}.{k}"] == ["batch_size", kv, "past_sequence_length", hd]
            assert shapes[f"present.{i}.{k}"] == ["batch_size", kv, "total_sequence_length", hd]
    assert len(shapes) == 3 + 2 * layers + 1 + 2 * layers
    # No invented dim names anywhere on the interface.
    assert {d for s in shapes.values() for d in s if isinstance(d, str)} <= DIMS
    assert res["io"]["inputs"][0] == {"name": "input_ids", "dtype": "int64", "shape": ["batch_size", "sequence_length"]}

    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["sphana.model_type"] == cfg["model_type"]
    assert meta["sphana.num_layers"] == str(layers)
    assert meta["sphana.num_kv_heads"] == str(kv)
    assert meta["sphana.head_dim"] == str(hd)
    assert meta["sphana.hidden_size"] == "64"
    assert meta["sphana.num_attention_heads"] == "4"
    assert meta["sphana.vocab_size"] == "512"
    assert meta["sphana.max_position_embeddings"] == "256"
    assert meta["sphana.exporter"] == res["exporter"]
    tied = cfg.get("tie_word_embeddings", cfg["model_type"].startswith("gemma"))
    assert meta["sphana.tie_word_embeddings"] == ("true" if tied else "false")
    # The architecture facts the request carried.
    facts = FACTS[arch]
    assert meta["sphana.family"] == facts["family"] and meta["sphana.architecture"] == cfg["architectures"][0]
    assert meta["sphana.norm_offset"] == ("1" if arch.startswith("gemma") else "0")
    assert meta.get("sphana.embedding_scale") == ("8.0" if arch.startswith("gemma") else None)
    assert meta["sphana.attention_bias"] == ("true" if arch == "qwen2" else "false")
    assert meta["sphana.qk_norm"] == ("true" if facts["qkNorm"] else "false")
    if facts["slidingWindow"] is not None:
        assert meta["sphana.sliding_window"] == "8"
        assert meta["sphana.layer_types"] == ",".join(facts["layerTypes"])
    else:
        assert "sphana.sliding_window" not in meta
    if arch == "gemma2":
        assert meta["sphana.attn_logit_softcapping"] == "2.0"
        assert meta["sphana.final_logit_softcapping"] == "3.0"
        assert "sliding_attention" in meta["sphana.layer_types"]
    if arch == "llama":
        assert '"rope_type":"llama3"' in meta["sphana.rope_parameters"]

    # Tied: ONE [vocab, hidden] table, read by the embedding Gather and by the LM head.
    tables = [t for t in model.graph.initializer if sorted(t.dims) == [64, 512]]
    assert len(tables) == (1 if tied else 2)
    if tied:
        users = [n.op_type for n in model.graph.node if tables[0].name in n.input]
        assert "Gather" in users and any(u in ("Transpose", "MatMul", "Gemm") for u in users), users


def _longrope(arch: str) -> bool:
    return any((r.get("scaling") or {}).get("type", (r.get("scaling") or {}).get("rope_type")) == "longrope" for r in FACTS[arch]["rope"].values())


# Not LongRoPE: decoding one token at a time from position 0 crosses original_max_position_embeddings,
# and keys cached before it keep their short-factor rotation (PyTorch's own behaviour), so that run
# differs from a full-sequence one by design; test_export_gemma3_phi3.py tests LongRoPE on both sides.
SLIDING = [a for a in ARCHS if FACTS[a]["slidingWindow"] is not None and not _longrope(a)]


@pytest.mark.parametrize("arch", SLIDING)
def test_past_the_sliding_window_matches_pytorch_full_sequence(exported, hf_dirs, arch):
    """A full KV cache (present = past + new) with the window applied by the mask: prefill and
    decode beyond the window agree with PyTorch's own uncached full-sequence logits (Gemma 2:
    alternate layers slide; Mistral: every layer)."""
    import torch

    assert FACTS[arch]["slidingWindow"] == 8
    res = exported(arch)
    assert res["parity"]["slidingWindow"] == 8 and res["parity"]["exceedsSlidingWindow"] is True
    model = load_torch(hf_dirs[arch])
    decoder = parity.OnnxDecoder(parity.ort_session(res["output"]))
    expected, fed, torch_full = parity.torch_reference(model, PROMPT, DECODE_STEPS)
    cached = parity.onnx_cached(decoder, PROMPT, fed)
    assert cached.shape[0] == len(PROMPT) + DECODE_STEPS > 8
    assert np.abs(cached - torch_full).max() < 1e-4
    assert (cached.argmax(-1) == torch_full.argmax(-1)).all()
    # Decode one token at a time from a 1-token prefill: every step crosses more of the window.
    past = decoder.empty_past(1)
    rows = []
    seq = PROMPT + fed
    for i, tok in enumerate(seq):
        logits, past = decoder.run(np.array([[tok]]), past, i)
        rows.append(logits[0, -1])
    assert next(iter(past.values())).shape[2] == len(seq)
    assert np.abs(np.stack(rows) - torch_full).max() < 1e-4
    # The window really matters here (so the check above is not vacuous).
    model.config.sliding_window = 4096
    with torch.inference_mode():
        unwindowed = model(torch.tensor([seq]), use_cache=False).logits[0].numpy()
    assert np.abs(unwindowed - torch_full).max() > 0.05


def test_parity_gate_fails_on_a_perturbed_onnx_initializer(exported, hf_dirs, tmp_path):
    import onnx
    from onnx import numpy_helper

    res = exported("llama")
    model = onnx.load(res["output"])
    # A q/k/v or MLP weight (not the embedding): add noise of 1% of its scale.
    target = next(t for t in model.graph.initializer if len(t.dims) == 2 and sorted(t.dims) != [64, 512])
    arr = numpy_helper.to_array(target).copy()
    arr += np.random.default_rng(0).normal(0, 0.01 * float(arr.std()), arr.shape).astype(arr.dtype)
    target.CopyFrom(numpy_helper.from_array(arr, target.name))
    broken = str(tmp_path / "broken.onnx")
    onnx.save(model, broken)
    with pytest.raises(parity.ParityFailed) as info:
        parity.check_parity(load_torch(hf_dirs["llama"]), broken, PROMPT, DECODE_STEPS)
    err = info.value
    assert err.error_class == "ParityFailed"
    assert err.details["maxAbsDiff"] > parity.DEFAULT_ATOL
    assert err.details["atol"] == parity.DEFAULT_ATOL
    assert "firstTop1Mismatch" in err.details and "ONNX (cached) vs PyTorch" in err.message


def test_parity_gate_fails_when_the_torch_weights_change(exported, hf_dirs):
    import torch

    res = exported("qwen2")
    model = load_torch(hf_dirs["qwen2"])
    with torch.no_grad():
        model.model.layers[1].self_attn.k_proj.bias.add_(0.05)
    with pytest.raises(parity.ParityFailed, match="max \\|diff\\|"):
        parity.check_parity(model, res["output"], PROMPT, DECODE_STEPS)


def test_failed_parity_leaves_nothing_behind(hf_dirs, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    real_save = em.save_model

    def save_then_corrupt(model, path, external, emit):
        real_save(model, path, external, emit)
        proto = onnx.load(path)
        t = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
        arr = numpy_helper.to_array(t) * 1.05
        t.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), t.name))
        onnx.save(proto, path)

    monkeypatch.setattr(em, "save_model", save_then_corrupt)
    out = tmp_path / "out" / "llm_generator.onnx"
    with pytest.raises(parity.ParityFailed):
        em.export_model(hf_dirs["llama"], str(out), FACTS["llama"], exporter="torchscript", prompt_ids=PROMPT)
    assert os.listdir(tmp_path / "out") == []


def test_torchscript_exporter_with_external_data(hf_dirs, tmp_path):
    import onnx

    out = tmp_path / "ts" / "llm_generator.onnx"
    res = em.export_model(hf_dirs["gemma2"], str(out), FACTS["gemma2"], exporter="torchscript", proto_limit_bytes=1 << 20, prompt_ids=PROMPT)
    assert res["externalData"] is True
    assert sorted(os.listdir(out.parent)) == ["llm_generator.onnx", "llm_generator.onnx.data"]
    assert [os.path.basename(f["path"]) for f in res["files"]] == ["llm_generator.onnx", "llm_generator.onnx.data"]
    assert res["parity"]["top1Agreement"] == 1.0 and res["parity"]["exceedsSlidingWindow"] is True
    assert res["exporter"].endswith(" torchscript")
    proto = onnx.load(str(out), load_external_data=False)
    locations = {
        e.value for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data if e.key == "location"
    }
    assert locations == {"llm_generator.onnx.data"}
    tables = [t for t in proto.graph.initializer if sorted(t.dims) == [64, 512]]
    assert len(tables) == 1  # tied table kept shared by the TorchScript path too
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.output}
    assert shapes["present.0.key"] == ["batch_size", 2, "total_sequence_length", 16]


def test_input_errors(tmp_path, hf_dirs):
    with pytest.raises(InputError, match="model folder not found"):
        em.export_model(str(tmp_path / "nope"), str(tmp_path / "o.onnx"), FACTS["llama"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        em.export_model(str(tmp_path / "empty"), str(tmp_path / "o.onnx"), FACTS["llama"])
    other = tmp_path / "gpt2"
    shutil.copytree(hf_dirs["llama"], other)
    (other / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(InputError, match="architectures \\['GPT2LMHeadModel'\\] do not start with 'LlamaForCausalLM'"):
        em.export_model(str(other), str(tmp_path / "o.onnx"), FACTS["llama"])
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    shutil.copy(os.path.join(hf_dirs["llama"], "config.json"), noweights / "config.json")
    with pytest.raises(InputError, match="cannot load the model"):
        em.export_model(str(noweights), str(tmp_path / "o.onnx"), FACTS["llama"])
    assert not (tmp_path / "o.onnx").exists()


def test_trace_sizes_avoid_model_sizes_and_each_other():
    facts = {"num_kv_heads": 2, "head_dim": 3, "num_layers": 5, "vocab_size": 512, "hidden_size": 64}
    b, s, p = em.trace_sizes(facts, avoid=[8])
    assert len({b, s, p, s + p}) == 4
    assert not {b, s, p, s + p} & {0, 1, 2, 3, 5, 8, 512, 64}
