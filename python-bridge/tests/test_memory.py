"""Peak RSS of the streaming strategies stays far below 1.5x the fp32 model."""

from __future__ import annotations

import pytest

from conftest import quantize, tiny_llm


@pytest.fixture(scope="module")
def big_tied(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    cfg = tiny_llm.TinyLlmConfig(tied=True, vocab=32768, hidden=1024, layers=2, heads=16, kv_heads=4, head_dim=64,
                                 intermediate=2048)
    path = d / "big.onnx"
    tiny_llm.save_tiny_llm(cfg, str(path))
    return path, path.stat().st_size


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_embedding_split_peak_rss(big_tied, tmp_path, precision):
    path, fp32_bytes = big_tied
    assert fp32_bytes > 150 << 20
    run = quantize(tmp_path, path, "embedding-split", precision)
    peak = run.data["peakRssBytes"]
    ratio = peak / fp32_bytes
    print(f"embedding-split {precision}: peak RSS {peak >> 20} MiB for a {fp32_bytes >> 20} MiB fp32 model "
          f"({ratio:.2f}x, interpreter and libraries included)")
    assert ratio <= 1.0, ratio  # the budget is 1.5x; the streaming engine should use far less
