"""gptkit's one inference engine: the KV cache, prefix caching, sampling, logits processors, stop
strings and incremental detokenising, behind model.generate, `gptkit generate`, summarize /
translate and `gptkit serve`.

    cache.py       KVCache: preallocated rows with per-row lengths (only the key/value heads)
    prefix.py      PrefixCache: prompt-prefix blocks reused across requests, LRU-bounded
    params.py      SamplingParams (one request's options), the LogitsProcessor protocol
    processors.py  repetition / presence / frequency penalties, logit bias, n-gram bans, warpers
    sampler.py     the one sampler: argmax, or per-row seeded inverse-CDF draws
    text.py        incremental detokenising and stop strings
    sequence.py    Seq (one row), Event and TokenInfo (what callers are told)
    core.py        Engine: admission (prefill), decode steps, finishing, retiring rows
"""
from __future__ import annotations

from .cache import KVCache
from .core import Engine, default_eos
from .params import LogitsProcessor, SamplingParams, from_generation_config
from .prefix import PrefixCache
from .sequence import Event, Seq, TokenInfo
from .text import TextStream, TokenText

__all__ = ["Engine", "Event", "KVCache", "LogitsProcessor", "PrefixCache", "SamplingParams", "Seq", "TextStream",
           "TokenInfo", "TokenText", "default_eos", "from_generation_config"]
