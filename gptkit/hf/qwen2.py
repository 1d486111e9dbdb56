"""The Qwen2 family (Qwen2ForCausalLM, Qwen2.5): Llama's tensors with biases on the query, key and
value projections (always; none on o_proj or the MLP: our `qkv_bias` without `bias`). Its sliding
window is off unless `use_sliding_window` says otherwise, which is refused (see llama.py).
"""
from __future__ import annotations

from .llama import LlamaLike

FAMILY = LlamaLike("qwen2", "Qwen2ForCausalLM", "Qwen2", biases="qkv", window="use_sliding_window",
                   defaults=dict(max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False))
