"""synthesize / synthetic-tokenizer: deterministic, loadable, meaningful random models."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_configs import FACTS, TINY  # noqa: E402
from sphana_bridge import synthetic  # noqa: E402
from sphana_bridge.protocol import InputError  # noqa: E402


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    cfg = TINY["llama"]
    a = synthetic.synthesize(cfg, FACTS["llama"], None, 11, str(tmp_path / "a"))
    b = synthetic.synthesize(cfg, FACTS["llama"], None, 11, str(tmp_path / "b"))
    c = synthetic.synthesize(cfg, FACTS["llama"], None, 12, str(tmp_path / "c"))
    for name in ("model.safetensors", "config.json", "generation_config.json"):
        assert sha256(str(tmp_path / "a" / name)) == sha256(str(tmp_path / "b" / name)), name
    assert sha256(str(tmp_path / "a" / "model.safetensors")) != sha256(str(tmp_path / "c" / "model.safetensors"))
    assert a["parameters"] == b["parameters"] == c["parameters"]
    assert [os.path.basename(f["path"]) for f in a["files"]] == ["config.json", "generation_config.json", "model.safetensors"]
    assert all(f["bytes"] == os.path.getsize(f["path"]) for f in a["files"])
    assert not [n for n in os.listdir(tmp_path / "a") if n.startswith(".")], "staging folder left behind"


@pytest.mark.parametrize("arch", ["llama", "gemma2", "qwen2", "gemma3", "phi3"])
def test_loads_as_a_normal_hf_folder_with_clear_top1(tmp_path, arch):
    import torch
    from transformers import AutoModelForCausalLM

    cfg = TINY[arch]
    res = synthetic.synthesize(cfg, FACTS[arch], {"bos_token_id": 1, "eos_token_id": [2], "do_sample": False}, 5, str(tmp_path))
    model, info = AutoModelForCausalLM.from_pretrained(
        str(tmp_path), local_files_only=True, output_loading_info=True, dtype=torch.float32
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert res["parameters"] == sum(p.numel() for p in model.parameters())
    if cfg.get("tie_word_embeddings", arch.startswith("gemma")):
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [2] and gen["do_sample"] is False
    # Logits far from uniform: spread ~1 and a real gap between top-1 and top-2 on average.
    with torch.inference_mode():
        logits = model(torch.tensor([[1, 5, 9, 100, 200, 300, 4, 8]])).logits[0]
    top2 = logits.topk(2, dim=-1).values
    assert logits.std().item() > 0.3
    assert (top2[:, 0] - top2[:, 1]).mean().item() > 0.05


def test_shards_with_an_index_above_the_shard_size(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg = TINY["llama"]
    synthetic.synthesize(cfg, FACTS["llama"], None, 3, str(tmp_path / "one"))
    monkeypatch.setattr(synthetic, "SHARD_MAX_BYTES", 150_000)
    res = synthetic.synthesize(cfg, FACTS["llama"], None, 3, str(tmp_path / "many"))
    names = [os.path.basename(f["path"]) for f in res["files"]]
    shards = [n for n in names if n.startswith("model-")]
    assert len(shards) >= 2 and "model.safetensors.index.json" in names and "model.safetensors" not in names
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "many" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_parameters"] == res["parameters"]
    single = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert set(index["weight_map"]) == set(single)
    for name, fname in index["weight_map"].items():
        assert torch.equal(load_file(str(tmp_path / "many" / fname))[name], single[name])
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "many"), local_files_only=True)
    assert torch.equal(model.model.embed_tokens.weight, single["model.embed_tokens.weight"])


def test_a_class_that_is_no_causal_lm_or_not_the_facts_class_is_an_input_error(tmp_path):
    gpt2 = dict(FACTS["llama"], architecture="GPT2LMHeadModel")
    with pytest.raises(InputError, match="has no causal-LM class 'GPT2LMHeadModel'"):
        synthetic.synthesize({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, gpt2, None, 0, str(tmp_path))
    with pytest.raises(InputError, match="do not start with 'LlamaForCausalLM'"):
        synthetic.synthesize(dict(TINY["llama"], architectures=["LlamaForSequenceClassification"]), FACTS["llama"], None, 0, str(tmp_path))
    with pytest.raises(InputError, match="model_type 'qwen2' is not 'llama'"):
        synthetic.synthesize(dict(TINY["llama"], model_type="qwen2"), FACTS["llama"], None, 0, str(tmp_path))
    assert not os.listdir(tmp_path)


def test_facts_that_disagree_with_the_model_are_a_bug_named_by_family(tmp_path):
    from sphana_bridge.protocol import BadRequest, Internal

    # Qwen2's config with Llama's bias facts: 3 biases per layer fewer than transformers builds.
    wrong = dict(FACTS["qwen2"], attentionBias="none", parameters=FACTS["qwen2"]["parameters"] - 2 * (64 + 2 * 32))
    with pytest.raises(Internal, match=r"family 'qwen2' disagree with transformers' Qwen2ForCausalLM: parameters 139584 \(facts\) vs 139840"):
        synthetic.synthesize(TINY["qwen2"], wrong, None, 0, str(tmp_path))
    with pytest.raises(Internal, match="layer_types full_attention,full_attention,full_attention \\(model\\) vs"):
        synthetic.synthesize(dict(TINY["gemma2"], layer_types=["full_attention"] * 3), FACTS["gemma2"], None, 0, str(tmp_path))
    with pytest.raises(BadRequest, match="missing field\\(s\\) \\['qkNorm'\\]"):
        synthetic.synthesize(TINY["llama"], {k: v for k, v in FACTS["llama"].items() if k != "qkNorm"}, None, 0, str(tmp_path))
    assert not os.listdir(tmp_path)


def test_synthetic_tokenizer_exact_vocab_special_ids_and_determinism(tmp_path):
    from transformers import AutoTokenizer

    special = {"<|begin_of_text|>": 990, "<|end_of_text|>": 991, "<|eot_id|>": 999}
    kwargs = dict(
        vocab_size=1000, bos_token_id=990, eos_token_ids=[991, 999], pad_token_id=None,
        special_tokens=special, model_type="llama",
    )
    a = synthetic.synthetic_tokenizer(out_dir=str(tmp_path / "a"), **kwargs)
    synthetic.synthetic_tokenizer(out_dir=str(tmp_path / "b"), **kwargs)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert sha256(str(tmp_path / "a" / name)) == sha256(str(tmp_path / "b" / name)), name
    assert a["vocabSize"] == 1000 and a["specialTokens"] == special and a["synthetic"] is True
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "a"), local_files_only=True)
    assert len(tok) == 1000
    assert tok.bos_token_id == 990 and tok.eos_token_id == 991
    assert tok.convert_tokens_to_ids("<|eot_id|>") == 999
    text = "The quick brown fox, 3.14 and émoji 🙂!"
    ids = tok(text)["input_ids"]
    assert ids[0] == 990 and max(ids) < 1000
    assert tok.decode(ids, skip_special_tokens=True) == text
    config = json.loads((tmp_path / "a" / "tokenizer_config.json").read_text())
    assert config["sphana_synthetic"] is True


def test_synthetic_tokenizer_gemma_layout_and_too_small_vocab(tmp_path):
    from transformers import AutoTokenizer

    res = synthetic.synthetic_tokenizer(
        512, 2, [1], 0, {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}, str(tmp_path / "g"), "gemma"
    )
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "g"), local_files_only=True)
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 2)
    assert len(tok) == 512 and res["unusedTokens"] + res["learnedTokens"] + 4 == 512
    with pytest.raises(InputError, match="byte-level BPE needs at least 256"):
        synthetic.synthetic_tokenizer(200, None, [0], None, {}, str(tmp_path / "x"), "llama")
