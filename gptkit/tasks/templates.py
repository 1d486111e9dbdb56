"""Prompt templates: a task's source -> the prompt a GPT continues with the target.

A template is a Python format string (no Jinja) with these placeholders:

    {source}        the example's source text (required: a template without it is refused)
    {source_lang}   --source-lang, e.g. "English"
    {target_lang}   --target-lang, e.g. "German"
    {examples}      the k-shot examples, each rendered by the same template (without examples)
                    followed by its target, then a blank line

Literal braces are written {{ and }}. The target follows the prompt after `target_prefix`
(a space by default: BPE tokenizers attach the space to the next word, so a prompt should end
without one), and generation stops at end-of-text or at one of `stop` (default: end of line).

Built-in templates:

    summarize   "{source}\\nTL;DR:"                                   (GPT-2 paper, section 3.6)
    translate   "{examples}{source_lang}: {source}\\n{target_lang}:"   (k-shot pairs as in GPT-2's
                                                                      "english = french" prompts)

A user template is a file: plain text (the prompt format string; one final newline is dropped)
or JSON {"prompt": ..., "target_prefix": " ", "stop": ["\\n"]}.
"""
from __future__ import annotations

import json
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from gptkit.errors import GptkitError

from .data import Example

FIELDS = ("source", "source_lang", "target_lang", "examples")
SHOT_SEPARATOR = "\n\n"
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
             "pt": "Portuguese", "nl": "Dutch", "sv": "Swedish", "ru": "Russian", "pl": "Polish",
             "ja": "Japanese", "zh": "Chinese", "cs": "Czech", "da": "Danish", "fi": "Finnish"}


@dataclass(frozen=True)
class Template:
    prompt: str
    name: str = "custom"
    target_prefix: str = " "
    stop: tuple[str, ...] = ("\n",)
    source_lang: str | None = None
    target_lang: str | None = None
    fields: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", check_format(self.prompt, self.name))
        for lang in ("source_lang", "target_lang"):
            if lang in self.fields and not getattr(self, lang):
                raise GptkitError(f"template {self.name!r} uses {{{lang}}}: give --{lang.replace('_', '-')}")

    def render(self, source: str, shots: Sequence[Example] = ()) -> str:
        """The prompt for one source (k-shot examples first where the template has {examples})."""
        examples = "".join(self._fill(s.source, "") + self.target_prefix + (s.target or "") + SHOT_SEPARATOR
                           for s in shots) if shots and "examples" in self.fields else ""
        return self._fill(source, examples)

    def render_pair(self, source: str, target: str) -> tuple[str, str]:
        """(prompt, completion) for fine-tuning: the model learns the completion only."""
        return self.render(source), self.target_prefix + target

    def _fill(self, source: str, examples: str) -> str:
        return self.prompt.format(source=source, examples=examples, source_lang=self.source_lang or "",
                                  target_lang=self.target_lang or "")

    def with_langs(self, source_lang: str | None, target_lang: str | None) -> Template:
        return replace(self, source_lang=language_name(source_lang) if source_lang else self.source_lang,
                       target_lang=language_name(target_lang) if target_lang else self.target_lang)


def check_format(prompt: str, name: str = "template") -> tuple[str, ...]:
    """The placeholders of a prompt format string; refuses unknown ones, attribute or index
    access, malformed braces, and a template without {source}."""
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as e:
        raise GptkitError(f"template {name!r} is not a valid format string ({e}); write literal braces as {{{{ }}}}") from None
    used = []
    for _, fname, spec, conv in parsed:
        if fname is None:
            continue
        if fname not in FIELDS:
            raise GptkitError(f"template {name!r} has an unknown placeholder {{{fname}}} (known: "
                              f"{', '.join('{' + f + '}' for f in FIELDS)}; literal braces are {{{{ }}}})")
        if spec or conv:
            raise GptkitError(f"template {name!r}: placeholder {{{fname}}} takes no format spec or conversion")
        used.append(fname)
    if "source" not in used:
        raise GptkitError(f"template {name!r} has no {{source}} placeholder: the prompt would not contain the input")
    return tuple(dict.fromkeys(used))


BUILTIN = {
    "summarize": dict(prompt="{source}\nTL;DR:", target_prefix=" ", stop=("\n",)),
    "translate": dict(prompt="{examples}{source_lang}: {source}\n{target_lang}:", target_prefix=" ", stop=("\n",)),
}


def language_name(code: str) -> str:
    return LANGUAGES.get(code.lower(), code)


def builtin(task: str, source_lang: str | None = None, target_lang: str | None = None) -> Template:
    if task not in BUILTIN:
        raise GptkitError(f"unknown task {task!r} (built-in: {', '.join(BUILTIN)}; or --template FILE)")
    if task == "translate":
        if not target_lang:
            raise GptkitError("translate needs --target-lang (e.g. --target-lang German)")
        source_lang = source_lang or "English"
    return Template(name=task, source_lang=language_name(source_lang) if source_lang else None,
                    target_lang=language_name(target_lang) if target_lang else None, **BUILTIN[task])


def load_template(path: str | Path, source_lang: str | None = None, target_lang: str | None = None) -> Template:
    """A user template from a file (see the module doc)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GptkitError(f"--template {path}: no such file") from None
    except IsADirectoryError:
        raise GptkitError(f"--template {path}: a directory, not a template file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GptkitError(f"--template {path}: cannot read it ({e})") from None
    kw: dict = {}
    if path.suffix.lower() == ".json":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise GptkitError(f"--template {path}: not JSON ({e.msg}, line {e.lineno})") from None
        except RecursionError:
            raise GptkitError(f"--template {path}: the JSON is nested too deeply") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("prompt"), str):
            raise GptkitError(f"--template {path}: expected a JSON object with a \"prompt\" string")
        unknown = sorted(set(spec) - {"prompt", "target_prefix", "stop"})
        if unknown:
            raise GptkitError(f"--template {path}: unknown key(s) {', '.join(unknown)} (prompt, target_prefix, stop)")
        prompt = spec["prompt"]
        if "target_prefix" in spec:
            kw["target_prefix"] = str(spec["target_prefix"])
        if "stop" in spec:
            stop = spec["stop"]
            stop = [stop] if isinstance(stop, str) else stop
            if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
                raise GptkitError(f"--template {path}: \"stop\" must be a list of non-empty strings")
            kw["stop"] = tuple(stop)
    else:
        prompt = text[:-1] if text.endswith("\n") else text
    if "target_prefix" not in kw:
        kw["target_prefix"] = "" if prompt[-1:].isspace() or not prompt else " "
    return Template(prompt=prompt, name=str(path), source_lang=language_name(source_lang) if source_lang else None,
                    target_lang=language_name(target_lang) if target_lang else None, **kw)


def select_shots(pool: Sequence[Example], k: int, seed: int = 0, exclude: Sequence[str] = ()) -> list[Example]:
    """k examples drawn (seeded) from `pool`, which must be the training split: the same shots
    for every prompt, none whose source is in `exclude`."""
    if k < 0:
        raise GptkitError(f"--shots must be >= 0, got {k}")
    if k == 0:
        return []
    avoid = set(exclude)
    candidates = [e for e in pool if e.target and e.source not in avoid]
    if len(candidates) < k:
        raise GptkitError(f"--shots {k}: the training split has only {len(candidates)} usable examples")
    return random.Random(seed).sample(candidates, k)
