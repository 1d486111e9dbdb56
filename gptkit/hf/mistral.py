"""The Mistral family (MistralForCausalLM): Llama's tensors without any biases, and a sliding window.

Mistral attends within `sliding_window` tokens in every layer (4096 where config.json names none).
gptkit attends over the whole context, which is the same function exactly when the window is at
least the context: a shorter window is refused by name, never computed approximately.
"""
from __future__ import annotations

from .llama import LlamaLike

FAMILY = LlamaLike("mistral", "MistralForCausalLM", "Mistral", biases="none", window="sliding_window",
                   defaults=dict(max_position_embeddings=4096 * 32, rms_norm_eps=1e-6, sliding_window=4096,
                                 tie_word_embeddings=False))
