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
    # Gemma 3 text: q/k RMSNorm (1 + w), two sliding layers then a global one (the real 5:1 pattern cut to
    # 2:1), window 8 (the parity prompt passes it), rope theta 10k local / 1M global, one KV head,
    # head_dim (32) != hidden / heads (16), query_pre_attn_scalar, tied, sqrt(hidden) embedding scale.
    "gemma3": dict(
        BASE,
        model_type="gemma3_text",
        architectures=["Gemma3ForCausalLM"],
        num_hidden_layers=3,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_theta=1000000.0,
        rope_local_base_freq=10000.0,
        hidden_activation="gelu_pytorch_tanh",
    ),
    # Phi-3 mini: fused qkv_proj and gate_up_proj, MHA (kv heads = heads), sliding window on every layer
    # (2047 in the real 4k config; 8 here), untied head.
    "phi3": dict(
        {k: v for k, v in BASE.items() if k != "head_dim"},
        model_type="phi3",
        architectures=["Phi3ForCausalLM"],
        num_key_value_heads=4,
        sliding_window=8,
        tie_word_embeddings=False,
        hidden_act="silu",
        pad_token_id=0,
        original_max_position_embeddings=256,
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

# Phi-3 128k-style LongRoPE, scaled down: switches from the short to the long factors past 8 positions.
PHI3_LONGROPE = dict(
    TINY["phi3"],
    original_max_position_embeddings=8,
    rope_scaling=dict(
        type="longrope",
        short_factor=[1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0, 4.0],
        long_factor=[1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 14.0, 20.0],
    ),
)
