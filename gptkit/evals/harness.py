"""gptkit as an lm-evaluation-harness model: `simple_evaluate(model=GptkitLM(...))`, `gptkit eval
--tasks`, or lm-eval's own command line with gptkit registered (`python -m gptkit.evals.harness
run --model gptkit --model_args pretrained=DIR --tasks ...`; lm-eval 0.4 has no plugin hook, so a
bare `lm_eval --model gptkit` cannot see a model registered outside lm-eval).

Tokenization follows lm-eval's TemplateLM exactly (trailing context spaces move to the
continuation, an empty context becomes the end-of-text token), so scores match lm-eval's `hf`
model on the same weights; the scoring is gptkit's batched `loglikelihood`, which runs a context
shared by several continuations once.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval's own models first: it loads them only into an empty registry)
import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from ..errors import GptkitError
from .loglik import loglikelihood


class _HFTokenizer:
    """transformers' tokenizer behind gptkit's encode/decode/eot_id, for families whose tokenizer
    gptkit's own class cannot represent (SentencePiece-style Llama, Qwen)."""

    FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")

    def __init__(self, directory: str) -> None:
        from pathlib import Path

        from transformers import AutoTokenizer
        if not any((Path(directory) / f).is_file() for f in self.FILES):  # else transformers builds an empty one
            raise OSError(f"no tokenizer files ({', '.join(self.FILES)})")
        self.hf = AutoTokenizer.from_pretrained(directory)
        eot = self.hf.eos_token_id if self.hf.eos_token_id is not None else self.hf.bos_token_id
        if eot is None:
            raise GptkitError(f"{directory}: the tokenizer has no end-of-text or start token for empty contexts")
        self.eot_id = int(eot)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids))


def model_tokenizer(model: Any, source: str) -> Any:
    """The model's own tokenizer, else transformers' for its directory, else an error saying why."""
    if getattr(model, "tokenizer", None) is not None:
        return model.tokenizer
    try:
        return _HFTokenizer(source)
    except (OSError, ValueError, ImportError) as e:
        why = getattr(model, "tokenizer_error", None) or e
        raise GptkitError(f"{source}: no tokenizer to turn the tasks' text into ids ({why})") from None


def _device(name: str | None) -> str:
    """lm-eval's command line passes device=cuda:0 unless told otherwise: on a machine without
    CUDA that means the CPU, as for lm-eval's own `hf` model."""
    if name is None or (str(name).startswith("cuda") and not torch.cuda.is_available()):
        return "auto"
    return name


@register_model("gptkit")
class GptkitLM(TemplateLM):
    """A model gptkit loads (a run directory, a Hugging Face directory of a family gptkit knows, a
    Hub id) scored by gptkit. model_args: pretrained, batch_size, dtype, device (default: CUDA if
    there is one, else the CPU)."""

    def __init__(self, pretrained: str | None = None, batch_size: int | str = 32, dtype: str = "auto",
                 device: str | None = None, model: Any = None, tokenizer: Any = None, **_: Any) -> None:
        super().__init__()
        from ..device import autocast_dtype
        from ..hf import load_model
        if model is None:
            if pretrained is None:
                raise GptkitError("GptkitLM needs pretrained=DIR (or model=)")
            model = load_model(pretrained, device=_device(device))
        self.model = model.eval()
        self.tok = tokenizer if tokenizer is not None else model_tokenizer(model, str(pretrained))
        self.amp = autocast_dtype(dtype, self.model.device)
        bs = 32 if str(batch_size).startswith("auto") else int(batch_size)
        if bs < 1:
            raise GptkitError(f"batch_size must be >= 1, got {bs}")
        self.batch_size = bs

    # ------------------------------------------------------------------ what lm-eval asks of a model
    @property
    def eot_token_id(self) -> int:
        return int(self.tok.eot_id)

    @property
    def max_length(self) -> int:
        return int(self.model.config.n_positions)

    @property
    def tokenizer_name(self) -> str:
        return type(self.tok).__name__

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **_: Any) -> list[int]:
        return list(self.tok.encode(string))

    def _loglikelihood_tokens(self, requests: list, disable_tqdm: bool = False, **_: Any) -> list[tuple[float, bool]]:
        pairs = [(ctx, cont) for _, ctx, cont in requests]
        results = loglikelihood(self.model, pairs, batch_size=self.batch_size, amp=self.amp,
                                progress=not disable_tqdm)
        out = []
        for (key, _, _), r in zip(requests, results):
            answer = (r.logprob, r.is_greedy)
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
            out.append(answer)
        return out

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        """Each document's total log-likelihood over disjoint windows of the full context (lm-eval's
        windows, so perplexity tasks match the `hf` model)."""
        windows, owner = [], []
        for i, (string,) in enumerate(req.args for req in requests):
            for ctx, cont in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, list(ctx), list(cont)))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)):
            totals[i] += lp
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, as gen_kwargs say) continuations cut at the first stop string; the
        prompt keeps its last max_length - max_gen_toks tokens, as lm-eval's `hf` model does."""
        from ..generate import generate_text
        out = []
        for req in requests:
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", 256))
            do_sample = bool(kwargs.pop("do_sample", False))
            temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
            ids = self.tok_encode(context)[-max(self.max_length - max_new, 1):] or [self.eot_token_id]
            max_new = min(max_new, self.max_length - len(ids))
            sampling = {"do_sample": True, "temperature": temperature} if do_sample and temperature > 0 else {}
            with torch.no_grad():
                g = generate_text(self.model, self.tok, [ids], max_new_tokens=max_new, stop=until or None, **sampling)
            text = g[0]["text"]
            self.cache_hook.add_partial("generate_until", req.args, text)
            out.append(text)
        return out



def main() -> None:
    """lm-eval's own command line, with gptkit registered as `--model gptkit`."""
    from lm_eval.__main__ import cli_evaluate
    cli_evaluate()


if __name__ == "__main__":
    main()
