"""The Qwen3 family (Qwen3ForCausalLM): Llama's tensors plus QK-norm (an RMSNorm of each head's
queries and keys, before RoPE), no biases, and heads of their own width (`head_dim`, 128 where
config.json names none, so often n_head * head_dim != hidden_size: our `head_size`).
"""
from __future__ import annotations

from .llama import LlamaLike

FAMILY = LlamaLike("qwen3", "Qwen3ForCausalLM", "Qwen3", biases="attention", window="use_sliding_window", qk_norm=True,
                   defaults=dict(max_position_embeddings=32768, rms_norm_eps=1e-6, head_dim=128,
                                 tie_word_embeddings=False))
