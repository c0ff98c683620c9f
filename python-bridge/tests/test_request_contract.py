"""Each command's accepted request fields come from its own key check; the shared vocabulary's defaults are the ones applied."""

from __future__ import annotations

import pytest

from conftest import run_bridge
from sphana_bridge.cli import COMMANDS, accepted_keys
from sphana_bridge.quantize import parse_request
from sphana_bridge.vocabulary import QUANT_DEFAULTS, shared_vocabulary


def test_every_command_reports_its_fields():
    keys = accepted_keys()
    assert sorted(keys) == sorted(COMMANDS)
    assert keys["versions"] == {"keys": [], "nested": {}}
    assert keys["gguf-to-hf"]["keys"] == ["gguf", "outDir"]
    assert "int8Engine" in keys["quantize"]["keys"] and len(keys["quantize"]["keys"]) == 19
    assert keys["export"]["nested"] == {"parity": ["atol", "decodeSteps", "promptIds", "rtol"]}


@pytest.mark.parametrize("command", ["quantize", "gguf-to-hf", "reference-generate"])
def test_the_reported_fields_are_the_enforced_ones(command):
    """A real bridge run refuses an unknown field and lists exactly what accepted_keys() reports."""
    run = run_bridge(command, request={"noSuchField": 1})
    assert run.final["type"] == "error" and run.final["class"] == "BadRequest"
    assert run.final["details"]["unknown"] == ["noSuchField"]
    assert run.final["details"]["allowed"] == accepted_keys()[command]["keys"]


def test_quantize_defaults_are_the_vocabulary_defaults(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    req = parse_request({"input": str(model), "output": str(tmp_path / "o.onnx"), "strategy": "direct", "precision": "int8"})
    assert req.int8_engine == QUANT_DEFAULTS["int8Engine"] == "streaming"
    assert (req.int8_scheme, req.accuracy_level, req.block_size, req.embedding_bits, req.symmetric, req.algorithm, req.per_channel) == (
        QUANT_DEFAULTS["int8Scheme"], QUANT_DEFAULTS["accuracyLevel"], QUANT_DEFAULTS["blockSize"], QUANT_DEFAULTS["embeddingBits"],
        QUANT_DEFAULTS["symmetric"], QUANT_DEFAULTS["algorithm"], QUANT_DEFAULTS["perChannel"],
    )
    assert shared_vocabulary()["quantDefaults"] == QUANT_DEFAULTS


def test_the_int4_algorithm_is_validated(tmp_path):
    """rtn-float-zp is accepted; an unknown algorithm, or rtn-float-zp with symmetric (its zero
    points are floats), is a one-line BadRequest naming the field."""
    from sphana_bridge.protocol import BadRequest

    base = {"input": str(tmp_path / "m.onnx"), "output": str(tmp_path / "o.onnx"), "strategy": "direct", "precision": "int4"}
    assert parse_request({**base, "algorithm": "rtn-float-zp"}).algorithm == "rtn-float-zp"
    with pytest.raises(BadRequest, match="algorithm must be one of rtn, rtn-float-zp, hqq"):
        parse_request({**base, "algorithm": "gptq"})
    with pytest.raises(BadRequest, match="symmetric does not apply to algorithm rtn-float-zp") as e:
        parse_request({**base, "algorithm": "rtn-float-zp", "symmetric": True})
    assert e.value.details == {"field": "symmetric"}
