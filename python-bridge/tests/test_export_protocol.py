"""synthesize / synthetic-tokenizer / export through `python -m sphana_bridge` (JSON lines only on stdout)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import run_bridge  # noqa: E402
from export_configs import FACTS, PROMPT, TINY  # noqa: E402
from sphana_bridge import export_model as em  # noqa: E402


def test_synthesize_tokenizer_export_over_the_protocol(tmp_path):
    hf = tmp_path / "hf"
    run = run_bridge("synthesize", request={"config": TINY["smollm2"], "architecture": FACTS["smollm2"], "generationConfig": None, "seed": 7, "outDir": str(hf)})
    data = run.data
    assert set(data) == {"files", "parameters", "seconds"}
    assert [os.path.basename(f["path"]) for f in data["files"]] == ["config.json", "generation_config.json", "model.safetensors"]
    assert any(l["type"] == "progress" and l["step"] == "weights" for l in run.lines)

    run = run_bridge(
        "synthetic-tokenizer",
        request={
            "vocabSize": 512, "bosTokenId": 1, "eosTokenIds": [2], "padTokenId": None,
            "specialTokens": {"<|im_start|>": 1, "<|im_end|>": 2}, "outDir": str(hf), "modelType": "llama",
        },
    )
    assert run.data["vocabSize"] == 512 and run.data["specialTokens"] == {"<|im_start|>": 1, "<|im_end|>": 2}

    out = tmp_path / "onnx" / "llm_generator.onnx"
    request = {
        "modelDir": str(hf), "output": str(out), "architecture": FACTS["smollm2"], "opset": 18, "exporter": "dynamo", "protoLimitBytes": 2147483648,
        "parity": {"promptIds": PROMPT, "decodeSteps": 4, "atol": 1e-3},
    }
    run = run_bridge("export", request=request, timeout=300)
    data = run.data
    assert data["output"] == str(out) and os.path.isfile(out)
    assert data["parity"]["top1Agreement"] == 1.0 and data["parity"]["positions"] == len(PROMPT) + 4
    assert data["parity"]["atol"] == 1e-3
    assert set(data["seconds"]) == {"load", "export", "save", "parity"}
    assert [i["name"] for i in data["io"]["inputs"]][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert data["opset"] == 18 and data["exporter"].endswith("dynamo")
    steps = [l["step"] for l in run.lines if l["type"] == "progress"]
    for step in ("load", "trace", "save", "parity"):
        assert step in steps


def test_export_errors_over_the_protocol(tmp_path):
    llama = FACTS["llama"]
    run = run_bridge("export", request={"modelDir": str(tmp_path / "missing"), "output": str(tmp_path / "m.onnx"), "architecture": llama})
    assert run.error["class"] == "InputError"
    run = run_bridge("export", request={"modelDir": str(tmp_path / "missing"), "output": str(tmp_path / "m.onnx")})
    assert run.error["class"] == "BadRequest" and "architecture" in run.error["message"]
    run = run_bridge("export", request={"modelDir": str(tmp_path), "output": str(tmp_path / "m.txt")})
    assert run.error["class"] == "BadRequest"
    run = run_bridge("export", request={"modelDir": str(tmp_path), "output": str(tmp_path / "m.onnx"), "exporter": "tflite"})
    assert run.error["class"] == "BadRequest"
    run = run_bridge("synthesize", request={"config": {"model_type": "bert"}, "architecture": dict(llama, architecture="BertForMaskedLM"), "generationConfig": None, "seed": 1, "outDir": str(tmp_path)})
    assert run.error["class"] == "InputError"


def test_torch_export_failure_is_export_failed_with_the_real_first_line(tmp_path, monkeypatch):
    from sphana_bridge.synthetic import synthesize

    synthesize(TINY["llama"], FACTS["llama"], None, 1, str(tmp_path / "hf"))

    def boom(*args, **kwargs):
        try:
            raise ValueError("Unsupported FX nodes: {'call_function': ['aten.weird_op']}\nsecond line")
        except ValueError as inner:
            raise RuntimeError("[torch.onnx] banner\nFailed to convert the exported program") from inner

    monkeypatch.setattr(em, "export_dynamo", boom)
    out = tmp_path / "o" / "llm_generator.onnx"
    with pytest.raises(em.ExportFailed) as info:
        em.export_model(str(tmp_path / "hf"), str(out), FACTS["llama"])
    assert info.value.error_class == "ExportFailed"
    assert "ValueError: Unsupported FX nodes" in info.value.message and "second line" not in info.value.message
    assert os.listdir(out.parent) == []
