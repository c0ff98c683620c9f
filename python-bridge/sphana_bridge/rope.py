"""Rotary embeddings whose frequencies depend on the sequence length, made traceable.

transformers' LongRoPE (Phi-3 128k, Phi-3.5, Phi-4-mini: ``rope_type: longrope``) picks its
inverse frequencies per forward call in Python: the ``long_factor`` ones when
``max(position_ids) + 1 > original_max_position_embeddings``, the ``short_factor`` ones
otherwise. torch.export cannot trace that branch (GuardOnDataDependentSymNode on
``if seq_len > original_max_position_embeddings``) and a tracer would bake in one side.

``make_traceable(model)`` swaps the forward of every such rotary module for one that
computes both tables and selects with ``torch.where`` on the same condition, so the ONNX
graph keeps HF's per-call choice. Everything else (``attention_scaling``, the
``cat(freqs, freqs)`` layout, fp32) is HF's. This only changes how the choice is expressed;
the parity gate compares the exported graph with the unpatched HF model.

Note what HF's choice implies for a KV cache: keys cached while the sequence was short keep
their short-factor rotation when decoding crosses ``original_max_position_embeddings``, so a
cached run and a full-sequence run of the same tokens differ once a sequence crosses it
(PyTorch's own generate behaves so). Runs that stay on one side agree.
"""

from __future__ import annotations

import types
from typing import Any

from sphana_bridge.protocol import InputError


def _longrope_modules(model) -> list[Any]:
    found = []
    for module in model.modules():
        rope_type = getattr(module, "rope_type", None)
        if isinstance(rope_type, dict) and "longrope" in rope_type.values():
            raise InputError(
                "LongRoPE on per-layer-type rotary embeddings is not supported; export a model whose rope_parameters "
                "use longrope for all layers, or none",
                {"rope_type": rope_type},
            )
        if rope_type == "longrope" and hasattr(module, "original_inv_freq"):
            found.append(module)
    return found


def make_traceable(model) -> list[str]:
    """Patch LongRoPE rotary modules in place; returns what was patched (for notes)."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    patched = []
    for module in _longrope_modules(model):
        params = module.config.rope_parameters
        original = int(params["original_max_position_embeddings"])
        short_inv = module.original_inv_freq.detach().clone().float()
        long_inv, _ = ROPE_INIT_FUNCTIONS["longrope"](module.config, short_inv.device, seq_len=original + 1)
        long_inv = long_inv.float()
        if tuple(long_inv.shape) != tuple(short_inv.shape):
            raise InputError("LongRoPE long and short factors give different rotary sizes", {})
        module.register_buffer("sphana_short_inv_freq", short_inv, persistent=False)
        module.register_buffer("sphana_long_inv_freq", long_inv, persistent=False)
        module.sphana_original_max = original

        def forward(self, x, position_ids, layer_type=None):
            seq_len = position_ids.max() + 1
            inv = torch.where(seq_len > self.sphana_original_max, self.sphana_long_inv_freq, self.sphana_short_inv_freq)
            inv = inv[None, :, None].expand(position_ids.shape[0], -1, 1).to(torch.float32)
            freqs = (inv @ position_ids[:, None, :].to(torch.float32)).transpose(1, 2)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos = emb.cos() * self.attention_scaling
            sin = emb.sin() * self.attention_scaling
            return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)

        module.forward = types.MethodType(forward, module)
        patched.append(f"longrope: short/long factors selected in-graph at {original} positions")
    return patched
