"""The GGUF scan: a hand-built file (every field under the test's control) is accepted with the
right facts, gguf.GGUFReader agrees with it, and every hostile variant is refused with a typed
one-line error before anything is allocated."""

from __future__ import annotations

import os
import random
import struct
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest

from conftest import run_bridge
from sphana_bridge.gguf_source import MAX_ARRAY_ITEMS, MAX_TENSORS, GgufInvalid, cross_check, scan_gguf


U32, F32, STR, ARR, U64 = 4, 6, 8, 9, 10
T_F32, T_Q8_0 = 0, 8


def s(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv_bytes(key: str, vtype: int, value) -> bytes:
    out = s(key) + struct.pack("<I", vtype)
    if vtype == U32:
        return out + struct.pack("<I", value)
    if vtype == F32:
        return out + struct.pack("<f", value)
    if vtype == STR:
        return out + s(value)
    if vtype == ARR:
        itype, items = value
        body = struct.pack("<IQ", itype, len(items))
        for it in items:
            body += s(it) if itype == STR else struct.pack("<I", it)
        return out + body
    raise AssertionError(vtype)


def build(path: Path, *, kvs=None, tensors=None, tensor_count=None, kv_count=None, magic=b"GGUF", version=3, alignment=32, extra_kv: bytes = b"") -> Path:
    """A GGUF written field by field. tensors: [(name, dims, type, payload bytes)] laid out in order."""
    vocab = [f"t{i}" for i in range(8)]
    kvs = kvs if kvs is not None else [
        ("general.architecture", STR, "llama"),
        ("general.name", STR, "tiny test"),
        ("general.file_type", U32, 7),
        ("llama.block_count", U32, 1),
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.tokens", ARR, (STR, vocab)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
    ]
    rng = np.random.default_rng(0)
    if tensors is None:
        f32 = rng.standard_normal((2, 32)).astype(np.float32)
        q8 = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        tensors = [("a.weight", [32, 2], T_F32, f32.tobytes()), ("b.weight", [64, 4], T_Q8_0, q8.tobytes())]
    header = magic + struct.pack("<I", version)
    header += struct.pack("<QQ", len(tensors) if tensor_count is None else tensor_count, (len(kvs) if kv_count is None else kv_count))
    for k in kvs:
        header += kv_bytes(*k)
    header += extra_kv
    data = b""
    infos = b""
    for name, dims, ttype, payload, *offset in tensors:
        off = offset[0] if offset else len(data)
        infos += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, off)
        data += payload + b"\0" * (-len(payload) % alignment)
    body = header + infos
    body += b"\0" * (-len(body) % alignment)
    path.write_bytes(body + data)
    return path


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    return build(tmp_path / "good.gguf")


def test_good_file_facts_agree_with_gguf_reader(good: Path):
    facts = scan_gguf(str(good))
    assert facts["architecture"] == "llama" and facts["version"] == 3
    assert facts["tensorTypes"] == {"F32": 1, "Q8_0": 1}
    assert facts["fileTypeName"] == "MOSTLY_Q8_0"
    assert (facts["bosTokenId"], facts["eosTokenId"], facts["vocabSize"]) == (1, 2, 8)
    assert facts["parameters"] == 2 * 32 + 4 * 64
    reader = gguf.GGUFReader(str(good))
    assert facts["dataOffset"] == reader.data_offset
    assert [t.name for t in reader.tensors] == ["a.weight", "b.weight"]
    assert facts["bytes"] == good.stat().st_size
    # The Q8_0 payload dequantizes to what was written.
    q = reader.tensors[1]
    assert q.n_bytes == 4 * 64 // 32 * 34


def test_file_written_by_gguf_writer_is_accepted(tmp_path: Path):
    path = tmp_path / "w.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_token_list(["a", "b", "c"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_tensor("x", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    facts = scan_gguf(str(path))
    assert facts["tensorTypes"] == {"F32": 1} and facts["vocabSize"] == 3 and facts["eosTokenId"] == 1


def invalid(path: Path, match: str) -> GgufInvalid:
    with pytest.raises(GgufInvalid, match=match) as e:
        scan_gguf(str(path))
    assert e.value.details["code"] == "E_GGUF_INVALID"
    assert "\n" not in e.value.message
    return e.value


def test_not_a_gguf(tmp_path: Path):
    (tmp_path / "x.gguf").write_bytes(b"\x08\x01" + os.urandom(200))
    invalid(tmp_path / "x.gguf", "not a GGUF file")
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF")
    invalid(tmp_path / "tiny.gguf", "at least 24")
    invalid(build(tmp_path / "v1.gguf", version=1), "version 1")


def test_truncated_at_every_header_offset_and_in_the_data(good: Path, tmp_path: Path):
    blob = good.read_bytes()
    reader = gguf.GGUFReader(str(good))
    reader_data_offset = reader.data_offset
    last_byte = max(t.data_offset + t.n_bytes for t in reader.tensors)  # the file ends with alignment padding
    assert last_byte < len(blob)
    for cut in list(range(24, reader_data_offset, 7)) + [reader_data_offset + 5, last_byte - 1]:
        p = tmp_path / "cut.gguf"
        p.write_bytes(blob[:cut])
        invalid(p, "truncated|absurd")


def test_tensor_extent_beyond_the_file(tmp_path: Path):
    p = build(tmp_path / "far.gguf", tensors=[("a.weight", [32, 2], T_F32, np.zeros(64, np.float32).tobytes(), 1 << 40)])
    e = invalid(p, "truncated: tensor 'a.weight'")
    assert e.details["tensor"] == "a.weight"
    # The reader would map it anyway and fail later, or not at all for a tensor nobody reads.
    p = build(tmp_path / "dims.gguf", tensors=[("a.weight", [32, 1 << 30], T_F32, np.zeros(64, np.float32).tobytes())])
    invalid(p, "truncated: tensor 'a.weight'")


def test_absurd_counts_are_refused_before_allocating(tmp_path: Path):
    tracemalloc.start()
    try:
        invalid(build(tmp_path / "t.gguf", tensor_count=1 << 60), "absurd tensor count")
        invalid(build(tmp_path / "t2.gguf", tensor_count=MAX_TENSORS + 1), "absurd tensor count")
        invalid(build(tmp_path / "k.gguf", kv_count=1 << 62), "absurd metadata count")
        # A string array claiming 2^40 entries, a uint32 array longer than the file.
        big = s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARR, STR, 1 << 40)
        invalid(build(tmp_path / "a.gguf", kvs=[("general.architecture", STR, "llama")], extra_kv=big, kv_count=2), "absurd array length")
        big = s("x") + struct.pack("<IIQ", ARR, U32, 1 << 30)
        invalid(build(tmp_path / "b.gguf", kvs=[("general.architecture", STR, "llama")], extra_kv=big, kv_count=2), "absurd array length")
        # Valid for the file's size but beyond what any model needs: the reader would build one
        # numpy object per item (about 1 KB each) before noticing anything.
        many = s("x") + struct.pack("<IIQ", ARR, 0, MAX_ARRAY_ITEMS + 1) + b"\0" * (MAX_ARRAY_ITEMS + 1)
        invalid(build(tmp_path / "c.gguf", kvs=[("general.architecture", STR, "llama")], extra_kv=many, kv_count=2), "absurd array length")
        # Each array within its cap, too many items in all.
        three = b"".join(s(f"x{i}") + struct.pack("<IIQ", ARR, 0, 800_000) + b"\0" * 800_000 for i in range(3))
        invalid(build(tmp_path / "t3.gguf", kvs=[("general.architecture", STR, "llama")], extra_kv=three, kv_count=4), "in total")
        # A string claiming 2^63 bytes.
        huge = s("general.name")[:-0 or None] + struct.pack("<I", STR) + struct.pack("<Q", 1 << 63)
        invalid(build(tmp_path / "s.gguf", kvs=[("general.architecture", STR, "llama")], extra_kv=huge, kv_count=2), "claims")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # the 2 MiB array file is the largest thing read


def test_bad_tensor_infos(tmp_path: Path):
    pay = np.zeros(64, np.float32).tobytes()
    invalid(build(tmp_path / "d.gguf", tensors=[("a", [1] * 5, T_F32, pay)]), "5 dimensions")
    invalid(build(tmp_path / "z.gguf", tensors=[("a", [32, 0], T_F32, pay)]), "empty dimension")
    invalid(build(tmp_path / "u.gguf", tensors=[("a", [32, 2], 99, pay)]), "unknown type 99")
    invalid(build(tmp_path / "b.gguf", tensors=[("a", [48, 2], T_Q8_0, pay)]), "not a multiple")
    invalid(build(tmp_path / "al.gguf", tensors=[("a", [32, 2], T_F32, pay, 4)]), "not aligned")
    invalid(build(tmp_path / "ov.gguf", tensors=[("a", [32, 2], T_F32, pay, 0), ("b", [32, 2], T_F32, pay, 0)]), "overlaps")
    invalid(build(tmp_path / "dup.gguf", tensors=[("a", [32, 2], T_F32, pay), ("a", [32, 2], T_F32, pay)]), "duplicate tensor")
    # 2^64 wrap-around: numpy's uint64 product of these dims is small, the real one is not.
    invalid(build(tmp_path / "wrap.gguf", tensors=[("a", [1 << 32, 1 << 32, 2], T_F32, pay)]), "elements")
    invalid(build(tmp_path / "na.gguf", kvs=[("general.name", STR, "x")]), "general.architecture")
    invalid(build(tmp_path / "dk.gguf", kvs=[("general.architecture", STR, "llama"), ("general.architecture", STR, "llama")]), "duplicate metadata key")
    invalid(build(tmp_path / "ut.gguf", extra_kv=s("k") + struct.pack("<I", 77), kv_count=9), "unknown value type 77")


def test_random_corruption_is_refused_or_readable(good: Path, tmp_path: Path):
    """Property: whatever the scan accepts, gguf.GGUFReader reads completely (every tensor's bytes)."""
    blob = bytearray(good.read_bytes())
    header_end = gguf.GGUFReader(str(good)).data_offset
    rng = random.Random(1)
    accepted = refused = 0
    for _ in range(300):
        b = bytearray(blob)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(4, header_end)] = rng.randrange(256)
        p = tmp_path / "f.gguf"
        p.write_bytes(bytes(b))
        try:
            facts = scan_gguf(str(p))
        except GgufInvalid:
            refused += 1
            continue
        accepted += 1
        reader = gguf.GGUFReader(str(p))
        assert len(reader.tensors) == facts["tensorCount"]
        for t in reader.tensors:
            assert t.data.nbytes == t.n_bytes
    assert refused > 50 and accepted > 20, (accepted, refused)


def test_bridge_reports_a_typed_one_line_error(tmp_path: Path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    run = run_bridge("gguf-info", request={"gguf": str(bad)})
    assert run.error["class"] == "InputError" and run.error["details"]["code"] == "E_GGUF_INVALID"
    assert "not a GGUF file" in run.error["message"]
    run = run_bridge("gguf-to-hf", request={"gguf": str(bad), "outDir": str(tmp_path)})
    assert run.error["details"]["code"] == "E_GGUF_INVALID"
    run = run_bridge("gguf-info", request={"gguf": str(tmp_path / "missing.gguf")})
    assert run.error["class"] == "InputError" and run.error["details"]["code"] == "E_FILE_NOT_FOUND"
    good = build(tmp_path / "g.gguf")
    assert run_bridge("gguf-info", request={"gguf": str(good)}).data["tensorTypes"] == {"F32": 1, "Q8_0": 1}


def hf_folder(tmp: Path, *, bos=1, eos=2, gen_eos=2, tok_bos="<s>", tok_eos="</s>", vocab=8) -> Path:
    import json

    d = tmp / "hf"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos, "vocab_size": vocab}))
    (d / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": gen_eos}))
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": tok_bos, "eos_token": tok_eos}))
    words = {f"w{i}": i for i in range(3, vocab)}
    (d / "tokenizer.json").write_text(json.dumps({
        "model": {"vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, **words}},
        "added_tokens": [{"id": 1, "content": "<s>"}, {"id": 2, "content": "</s>"}],
    }))
    return d


def test_cross_check_agrees_and_names_every_disagreement(tmp_path: Path):
    from sphana_bridge.gguf_source import GgufMismatch

    facts = {"bosTokenId": 1, "eosTokenId": 2, "vocabSize": 8}
    assert cross_check(str(hf_folder(tmp_path)), facts)["vocabSize"] == 8
    assert cross_check(str(hf_folder(tmp_path, gen_eos=[2, 5])), facts)["eosTokenId"] == 2  # an EOS list that includes it
    for kwargs, expected in [
        ({"bos": 0}, "BOS id 0 in config.json, the GGUF says 1"),
        ({"gen_eos": [5]}, "EOS id [5] in generation_config.json, the GGUF says 2"),
        ({"tok_eos": "<s>"}, "EOS id 1 in tokenizer_config.json, the GGUF says 2"),
        ({"vocab": 9}, "tokenizer.json has 9 tokens, the GGUF's tokenizer.ggml.tokens has 8"),
    ]:
        with pytest.raises(GgufMismatch, match=expected.replace("[", r"\[").replace("]", r"\]")):
            cross_check(str(hf_folder(tmp_path, **kwargs)), facts)
    # A GGUF without token ids: ids that a config class filled in by default are a disagreement.
    with pytest.raises(GgufMismatch, match="BOS id 1 in config.json, the GGUF says None"):
        cross_check(str(hf_folder(tmp_path)), {"bosTokenId": None, "eosTokenId": 2, "vocabSize": 8})


# --------------------------------------------------------------------------------------
# gguf-to-hf on a tiny GGUF written like llama.cpp writes a Llama (fixtures/tiny_gguf.py)
# --------------------------------------------------------------------------------------


def test_gguf_to_hf_restores_the_original_model(tmp_path: Path):
    import json

    import torch
    import tiny_gguf
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sphana_bridge.gguf_source import gguf_to_hf

    src = tmp_path / "tiny.gguf"
    original = tiny_gguf.write(str(src))
    out = tmp_path / "hf"
    out.mkdir()
    steps = []
    result = gguf_to_hf(str(src), str(out), lambda step, fraction, message: steps.append(step))
    assert steps == ["validate", "hash", "load", "write", "check"]
    assert result["architectures"] == ["LlamaForCausalLM"]
    assert result["gguf"]["tensorTypes"] == {"Q8_0": 15, "F32": 5}
    assert result["gguf"]["fileTypeName"] == "MOSTLY_Q8_0"
    assert result["parameters"] == result["gguf"]["parameters"] == sum(p.numel() for p in original.parameters())
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (config["num_key_value_heads"], config["head_dim"], config["vocab_size"]) == (2, 16, len(tiny_gguf.tokens()))

    # Weights: F32 tensors exactly, Q8_0 ones within half a quantization step, q/k un-permuted.
    converted = load_file(str(out / "model.safetensors"))
    assert "lm_head.weight" not in converted  # tied
    reference = original.state_dict()
    for name, w in converted.items():
        ref = reference[name]
        if name.endswith("norm.weight"):
            assert torch.equal(w, ref), name
        else:
            step = ref.abs().max() / 127
            assert (w - ref).abs().max() <= step, name
    q = reference["model.layers.0.self_attn.q_proj.weight"]
    assert (torch.from_numpy(tiny_gguf.permute(q.numpy(), 4)) - q).abs().max() > 10 * q.abs().max() / 127  # the check has teeth

    # The converted folder loads as an ordinary HF model and predicts like the original.
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 200, 33, 261, 9, 100, 41]])
    with torch.no_grad():
        a, b = original(ids).logits, model(ids).logits
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    # The file's tokenizer: its merges apply (" the" is one token), its specials keep their ids.
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok(" the").input_ids == [len(tiny_gguf.tokens()) - 1]
    assert tok.convert_ids_to_tokens([1, 2]) == ["<|im_start|>", "<|im_end|>"]


def test_gguf_to_hf_refuses_a_file_without_tensors_its_architecture_needs(tmp_path: Path):
    import tiny_gguf

    from sphana_bridge.gguf_source import gguf_to_hf

    src = tmp_path / "q3.gguf"
    tiny_gguf.write(str(src), arch="qwen3", drop_qk_norms=True)
    out = tmp_path / "hf"
    out.mkdir()
    with pytest.raises(GgufInvalid, match=r"4 tensor\(s\) that Qwen3ForCausalLM needs are not in the file: model.layers.0.self_attn.k_norm.weight"):
        gguf_to_hf(str(src), str(out), lambda *a: None)
