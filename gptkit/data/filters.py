"""Optional quality filters for `prepare` (all off by default).

  min_chars      drop documents shorter than this many characters (after PII redaction)
  max_non_text   drop documents whose fraction of non-text characters is above this: ASCII
                 punctuation, symbols and control characters other than tab/newline/CR count as
                 non-text; letters, digits, whitespace and every non-ASCII character count as text
                 (so base64 blobs, minified data and ASCII art go; prose and most code stay:
                 Python source is typically 0.15-0.30, English prose 0.03-0.06)
  languages      keep only documents whose language, as identified by py3langid (langid.py's
                 97-language naive Bayes model, numpy only) on their first 4,096 characters, is
                 one of these ISO 639-1 codes (e.g. "en,fr") with probability >= 0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GptkitError

LANGUAGE_CHARS = 4096
MIN_LANGUAGE_PROB = 0.5

_NON_TEXT = np.zeros(256, dtype=bool)
for _c in range(128):
    _NON_TEXT[_c] = not (chr(_c).isalnum() or chr(_c) in " \t\n\r")


@dataclass(frozen=True)
class Filters:
    min_chars: int = 0
    max_non_text: float = 1.0
    languages: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.min_chars, int) or self.min_chars < 0:
            raise GptkitError(f"--min-chars must be a non-negative integer, got {self.min_chars!r}")
        if not 0 <= self.max_non_text <= 1:
            raise GptkitError(f"--max-non-text must be a fraction in [0, 1], got {self.max_non_text!r}")
        if self.languages:
            known = set(_identifier().nb_classes)
            bad = [c for c in self.languages if c not in known]
            if bad:
                raise GptkitError(f"--languages: unknown language code(s) {', '.join(bad)} (ISO 639-1 codes such as en, fr, de)")

    @property
    def active(self) -> bool:
        return self.min_chars > 0 or self.max_non_text < 1 or bool(self.languages)

    def describe(self) -> dict:
        return {
            "min_chars": self.min_chars,
            "max_non_text": self.max_non_text,
            "languages": list(self.languages),
            "language_detector": "py3langid (first 4,096 characters, probability >= 0.5)" if self.languages else None,
        }


def parse_languages(value: str | None) -> tuple[str, ...]:
    return tuple(sorted({c.strip().lower() for c in (value or "").split(",") if c.strip()}))


def non_text_count(text: str) -> int:
    b = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    return int(np.count_nonzero(_NON_TEXT[b]))


_ident = None


def _identifier():
    global _ident
    if _ident is None:
        try:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError:
            raise GptkitError("--languages needs py3langid: pip install 'gptkit[data]'") from None
        _ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _ident


def language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the start of `text`."""
    lang, prob = _identifier().classify(text[:LANGUAGE_CHARS])
    return lang, float(prob)


def verdict(filters: Filters, chars: int, non_text: int, lang: tuple[str, float] | None) -> str | None:
    """The first filter a document fails ("min_chars", "max_non_text", "language"), or None."""
    if chars < filters.min_chars:
        return "min_chars"
    if filters.max_non_text < 1 and chars and non_text / chars > filters.max_non_text:
        return "max_non_text"
    if filters.languages and (lang is None or lang[0] not in filters.languages or lang[1] < MIN_LANGUAGE_PROB):
        return "language"
    return None
