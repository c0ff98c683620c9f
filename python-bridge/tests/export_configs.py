"""Tiny configs for the export tests (shapes of the real presets, sizes of a unit test)."""

from __future__ import annotations

BASE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=512,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
)

TINY = {
    # Llama-3.2: tied embeddings, rope_scaling llama3, GQA 4:2.
    "llama": dict(
        BASE,
        model_type="llama",
        architectures=["LlamaForCausalLM"],
        tie_word_embeddings=True,
        rope_theta=500000.0,
        rope_scaling=dict(
            rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64
        ),
    ),
    # Gemma: head_dim (24) != hidden / heads (16), one KV head, sqrt(hidden) embedding scale, tied.
    "gemma": dict(
        BASE,
        model_type="gemma",
        architectures=["GemmaForCausalLM"],
        head_dim=24,
        num_key_value_heads=1,
        hidden_activation="gelu_pytorch_tanh",
    ),
    # Gemma-2: sliding window 8 (the parity prompt goes past it), small soft caps so they bite.
    "gemma2": dict(
        BASE,
        model_type="gemma2",
        architectures=["Gemma2ForCausalLM"],
        num_hidden_layers=3,
        sliding_window=8,
        attn_logit_softcapping=2.0,
        final_logit_softcapping=3.0,
        query_pre_attn_scalar=16,
    ),
    # Qwen2: q/k/v bias, untied head.
    "qwen2": dict(BASE, model_type="qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=False),
    # SmolLM2-like: Llama with one KV head, head_dim implied (hidden / heads), tied.
    "smollm2": dict(
        {k: v for k, v in BASE.items() if k != "head_dim"},
        model_type="llama",
        architectures=["LlamaForCausalLM"],
        num_key_value_heads=1,
        tie_word_embeddings=True,
    ),
}

# Long enough to pass Gemma-2's window (8) in the prefill already; 4 decode steps more.
PROMPT = [1, 17, 301, 5, 88, 460, 23, 9, 140, 77, 250, 3, 499, 64]
DECODE_STEPS = 4
