"""GenerationConfig: the decoding options (names and defaults as transformers').
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import OptionError


def _early_stopping(s: str) -> bool | str:
    """--early-stopping true | false | never."""
    return {"true": True, "false": False, "never": "never"}[s]


def _schema_file(path: str) -> Any:
    """--json-schema FILE: the schema read from the file (a JSON object)."""
    import json
    from pathlib import Path

    from ..errors import GptkitError
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GptkitError(f"--json-schema {path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GptkitError(f"--json-schema {path}: not a JSON file ({e})") from None


def _opt(value: Any, text: str, /, **cli: Any) -> Any:
    return field(default=value, metadata={"help": text, **({"cli": cli} if cli else {})})


@dataclass
class GenerationConfig:
    """The decoding options; names and defaults as transformers' GenerationConfig.

    The one source of truth for them: `gptkit generate`'s flags and their --help are built from
    these fields (gptkit/cli/args.py); "cli" metadata holds where the command line differs.
    """
    max_new_tokens: int = _opt(20, "tokens to generate at most, per sequence", default=100)
    do_sample: bool = _opt(False, "sample; otherwise decode greedily, or by beam search with num_beams > 1",
                           default=None, default_text="sample, unless --num-beams > 1")
    temperature: float = _opt(1.0, "divide the logits by this before sampling (> 0)")
    top_k: int | None = _opt(50, "sample from the k most likely tokens only (0: off)")
    top_p: float | None = _opt(1.0, "sample from the smallest set of tokens whose probability reaches p (1: off)")
    min_p: float | None = _opt(None, "drop tokens less likely than min_p x the most likely one's probability")
    repetition_penalty: float = _opt(1.0, "divide the scores of tokens already in the sequence by this (1: off)")
    no_repeat_ngram_size: int = _opt(0, "never repeat an n-gram of this many tokens (0: off)")
    num_beams: int = _opt(1, "beams of beam search (1: no beam search)")
    length_penalty: float = _opt(1.0, "beam search: a finished beam scores sum(log p) / length ** this")
    early_stopping: bool | str = _opt(False, "beam search: stop at num_beams finished hypotheses (true), when no "
                                      "beam can improve (false), or never (never)", parse=_early_stopping,
                                      choices=["false", "true", "never"], default="false")
    num_return_sequences: int = _opt(1, "sequences returned per prompt", flags=["-n"])
    eos_token_id: int | list[int] | None = _opt(None, "end-of-text token id(s) that end a sequence (repeatable)",
                                                type=int, append=True, metavar="ID", default_text="the model's")
    pad_token_id: int | None = _opt(None, "the id that fills a sequence after it ends", metavar="ID",
                                    default_text="the first eos id")
    stop: Sequence[str] | str | None = _opt(None, "a stop string, cut from the output (repeatable)", append=True)
    seed: int | None = _opt(None, "seed of sampling, for reproducible output", default_text="torch's global RNG")
    json_schema: Any = _opt(None, "constrain the output to JSON that validates against this JSON schema (a dict, "
                            "or its JSON text; on the command line a file)", parse=_schema_file, metavar="FILE")
    regex: str | None = _opt(None, "constrain the output to text this regular expression matches whole", metavar="RE")
    speculative: Any = _opt(None, "speculative decoding: ngram (prompt lookup: drafts copied from the prompt and "
                            "output) or MODEL (a smaller model with the same tokenizer drafts; a directory, Hub id "
                            "or, in Python, a loaded model); greedy output is unchanged, sampling keeps its "
                            "distribution", metavar="ngram|MODEL", default_text="off")
    num_speculative_tokens: int = _opt(8, "speculative decoding: draft tokens the model checks per forward pass")
    context: str = _opt("error", "a prompt + max_new_tokens longer than the model's context: an error, or keep "
                        "the prompt's last tokens, with a warning (truncate)", choices=["error", "truncate"])

    def validate(self) -> None:
        def bad(option: str, msg: str) -> None:
            raise OptionError(option, msg)
        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "length_penalty"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v)):
                bad(name, f"must be a finite number, got {v!r}")
        if not isinstance(self.max_new_tokens, numbers.Integral) or self.max_new_tokens < 0:
            bad("max_new_tokens", f"must be an integer >= 0, got {self.max_new_tokens!r}")
        if not isinstance(self.do_sample, bool):
            bad("do_sample", f"must be True or False, got {self.do_sample!r}")
        if self.do_sample and not self.temperature > 0:
            bad("temperature", f"must be > 0 when sampling, got {self.temperature}")
        if self.top_k is not None and (not isinstance(self.top_k, numbers.Integral) or self.top_k < 0):
            bad("top_k", f"must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            bad("min_p", f"must be in [0, 1], got {self.min_p}")
        if not self.repetition_penalty > 0:
            bad("repetition_penalty", f"must be > 0, got {self.repetition_penalty}")
        if not isinstance(self.no_repeat_ngram_size, numbers.Integral) or self.no_repeat_ngram_size < 0:
            bad("no_repeat_ngram_size", f"must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        if not isinstance(self.num_beams, numbers.Integral) or self.num_beams < 1:
            bad("num_beams", f"must be an integer >= 1, got {self.num_beams!r}")
        if self.early_stopping not in (True, False, "never"):
            bad("early_stopping", f"must be True, False or 'never', got {self.early_stopping!r}")
        if not isinstance(self.num_return_sequences, numbers.Integral) or self.num_return_sequences < 1:
            bad("num_return_sequences", f"must be an integer >= 1, got {self.num_return_sequences!r}")
        if self.num_return_sequences > 1 and self.num_beams == 1 and not self.do_sample:
            bad("num_return_sequences", f"{self.num_return_sequences} needs do_sample=True or num_beams > 1 "
                "(--do-sample, --num-beams): greedy decoding would return the same sequence every time")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            bad("num_return_sequences", f"({self.num_return_sequences}) must be <= num_beams ({self.num_beams})")
        if self.context not in ("error", "truncate"):
            bad("context", f"must be 'error' or 'truncate', got {self.context!r}")
        if any(not isinstance(s, str) or not s for s in self.stops):
            bad("stop", "strings must be non-empty strings")
        if self.json_schema is not None and self.regex is not None:
            bad("json_schema", "and regex cannot be combined: give one constraint")
        if (self.json_schema is not None or self.regex is not None) and self.num_beams > 1:
            bad("num_beams", "must be 1 with json_schema or regex (constrained beam search is not supported)")
        if self.regex is not None and (not isinstance(self.regex, str) or not self.regex):
            bad("regex", f"must be a non-empty string, got {self.regex!r}")
        if self.speculative is not None:
            self._check_speculative()
        eos = self.eos_token_id if isinstance(self.eos_token_id, (list, tuple)) else [self.eos_token_id]
        for e in eos:
            if e is not None and (not isinstance(e, numbers.Integral) or e < 0):
                bad("eos_token_id", f"must be a token id >= 0, got {e!r}")
        if self.pad_token_id is not None and (not isinstance(self.pad_token_id, numbers.Integral)
                                              or self.pad_token_id < 0):
            bad("pad_token_id", f"must be a token id >= 0, got {self.pad_token_id!r}")
        if self.seed is not None and (not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**64):
            bad("seed", f"must be an integer in [0, 2**64), got {self.seed!r}")

    def _check_speculative(self) -> None:
        k = self.num_speculative_tokens
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise OptionError("num_speculative_tokens", f"must be an integer >= 1, got {k!r}")
        if isinstance(self.speculative, str) and not self.speculative:
            raise OptionError("speculative", "must be 'ngram' or a draft model, got ''")
        clash = [name for name, on in (("num_beams > 1", self.num_beams > 1),
                                       ("repetition_penalty", self.repetition_penalty != 1.0),
                                       ("no_repeat_ngram_size", bool(self.no_repeat_ngram_size)),
                                       ("json_schema / regex", self.json_schema is not None or self.regex is not None))
                 if on]
        if clash:
            raise OptionError("speculative", f"cannot be combined with {clash[0]} (speculative decoding is for "
                              "greedy and sampled decoding with temperature / top-k / top-p / min-p)")

    @property
    def grammar(self) -> Any:
        """The constraint as a gptkit.constrain.Grammar, or None."""
        if self.json_schema is None and self.regex is None:
            return None
        from ..constrain import Grammar
        return Grammar.regex(self.regex) if self.regex is not None else Grammar.json_schema(self.json_schema)

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def make_config(**kwargs: Any) -> GenerationConfig:
    names = {f.name for f in fields(GenerationConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unexpected generation option(s): {', '.join(unknown)}")
    cfg = GenerationConfig(**kwargs)
    cfg.validate()
    return cfg
