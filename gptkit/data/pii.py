"""Personal data and secrets found in text, replaced by typed placeholders.

Kinds, in the order they are looked for (a later kind never sees an earlier one's placeholder):

  PRIVATE_KEY  a PEM private-key block, BEGIN line to END line (an unterminated block to the end)
  SECRET       API keys and tokens of known shapes (AWS, GitHub, GitLab, Slack, Stripe, Google,
               OpenAI, Anthropic, Hugging Face, npm, JWTs) and the value of an assignment such as
               `api_key = "..."` / `password: ...` when that value looks random (>= 16 characters,
               letters and digits, >= 3.5 bits of entropy per character)
  EMAIL        local@domain.tld (the top-level domain must be letters: `pkg@1.2.3` is not one)
  CREDIT_CARD  13-19 digits, optionally grouped by spaces or dashes, with a card-network prefix
               (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) and a valid Luhn checksum
  IP_ADDRESS   IPv4 and IPv6 addresses that are globally routable (`ipaddress.is_global`), so
               127.0.0.1, 0.0.0.0, 10.x, 192.168.x, ::1 and documentation ranges stay; IPv4 written
               right after a version marker ("version 1.2.3.4", "v1.2.3.4", "==1.2.3.4") stays
  PHONE        +country numbers (8-15 digits, grouped) and North American (NXX) NXX-XXXX forms;
               bare digit runs, dates (2024-01-31), times and versions are not phone numbers

Each is replaced by `<KIND>` (e.g. `<EMAIL>`). `scan(text)` returns the new text and the
count per kind; the patterns are tested on code and prose without personal data too.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
from collections import Counter

KINDS = ("PRIVATE_KEY", "SECRET", "EMAIL", "CREDIT_CARD", "IP_ADDRESS", "PHONE")
MODES = ("redact", "drop", "keep")

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:.*?-----END \1-----|.*\Z)",
    re.S,
)

_KEY_SHAPES = [
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{22,255}",
    r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}",  # Stripe
    r"AIza[0-9A-Za-z_-]{35}",  # Google API key
    r"sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{32,}",  # OpenAI, Anthropic
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"npm_[A-Za-z0-9]{36}",
    r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # JWT
]
_SECRET = re.compile(r"(?<![A-Za-z0-9_-])(?:" + "|".join(_KEY_SHAPES) + r")(?![A-Za-z0-9_-])")
# `password = "..."`, `"api_key": "..."` (quoted value, any case) or `SECRET_TOKEN=...` (an
# environment-style upper-case name, unquoted value): the value is group "v".
_KEY_NAME = r"(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|passw(?:or)?d|passwd|pwd)"
_ASSIGNED = re.compile(
    rf"(?i:{_KEY_NAME})[\w-]*[\"']?\s*[:=]\s*[\"'](?P<v>[A-Za-z0-9+/_\-.~]{{16,}})[\"']"
    rf"|{_KEY_NAME.upper().replace('[_-]', '[_]')}[A-Z0-9_]*=(?P<w>[A-Za-z0-9+/_\-~]{{16,}})(?![\w.])"
)

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)

_CARD = re.compile(r"(?<![\d.-])\d(?:[ -]?\d){12,18}(?![\d])")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6011|65|64[4-9]|35(?:2[89]|[3-8])|3(?:0[0-5]|[689])|62")

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w/]|\.\w)")  # not a.b.c.d.e, not a /network
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:/])")
_VERSION_BEFORE = re.compile(r"(?i)(?:version|ver\.?|release|section|sections|rfc|§|v|[=<>~!]=|[<>]|@)\s*$")

_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}\d?"  # +44 20 7946 0958, +1 (555) 123-4567
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|\d{3}([ .-])\d{3}\1\d{4}"  # 555-123-4567, 555.123.4567
    r")(?![\w.-]?\d)"
)


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match) -> str | None:
    digits = re.sub(r"[ -]", "", m.group())
    if not 13 <= len(digits) <= 19 or not _CARD_PREFIX.match(digits) or not luhn_ok(digits):
        return None
    seps = set(re.findall(r"[ -]", m.group()))
    return "<CREDIT_CARD>" if len(seps) <= 1 else None  # "4111 1111-1111 1111" is not how cards are written


def _ipv4(m: re.Match, text: str) -> str | None:
    if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
        return None
    if sum(len(o) >= 2 for o in m.group().split(".")) < 2:  # 7.1.4.34, 8.2.4.44: section and version numbers
        return None
    return "<IP_ADDRESS>" if ipaddress.IPv4Address(m.group()).is_global else None


def _ipv6(m: re.Match, text: str) -> str | None:
    s = m.group()
    if s.count(":") < 2 or not any(c.isdigit() or c in "abcdefABCDEF" for c in s):
        return None
    try:
        addr = ipaddress.IPv6Address(s)
    except ValueError:
        return None
    if len(s) < 6:  # "a::b", "1::": too short to be anything but code
        return None
    return "<IP_ADDRESS>" if addr.is_global else None


def _phone(m: re.Match) -> str | None:
    s = m.group()
    digits = sum(c.isdigit() for c in s)
    if s.startswith("+"):  # no country code starts with 0; "+35236450.6", "+3.14159265" are decimals
        last = re.split(r"[ .()-]", s)[-1]
        return "<PHONE>" if 8 <= digits <= 15 and s[1] != "0" and len(last) >= 2 and s.count(".") != 1 else None
    if digits != 10 or s[0 if s[0] != "(" else 1] in "01":  # NANP area codes start with 2-9
        return None
    return "<PHONE>"


def _assigned(m: re.Match) -> str | None:
    g = "v" if m.group("v") is not None else "w"
    v = m.group(g)
    has_digit, has_alpha = any(c.isdigit() for c in v), any(c.isalpha() for c in v)
    if not (has_digit and has_alpha) or _entropy(v) < 3.5 or v.startswith("<"):
        return None
    return m.group()[: m.start(g) - m.start()] + "<SECRET>" + m.group()[m.end(g) - m.start() :]


# Every key shape starts with one of these; "gh" and "sk" stand for their families because one
# find() of a common two-letter prefix costs less than six of the longer ones.
_SECRET_PREFIXES = ("AKIA", "gh", "glpat-", "xox", "sk", "rk_", "AIza", "hf_", "npm_", "eyJ")
_VALUE = re.compile(r"[:=][ \t]*[\"']?[A-Za-z0-9+/_\-.~]{16,}")
_DIGITS = re.compile(r"\d[\d .:()+-]{5,}\d")  # where a card, an IPv4 address or a phone number may be
# Every IPv6 address holds a ":hex{0,4}:" (a leading ":" lets the regex engine skip ahead fast);
# the address starts at most 4 characters before the first one in its run and ends in that run.
_COLON_PAIR = re.compile(r":[0-9A-Fa-f]{0,4}:")
_HEX_RUN = re.compile(r"[0-9A-Fa-f:.]*")


def scan(text: str) -> tuple[str, dict[str, int]]:
    """(text with each finding replaced by its placeholder, count per kind found)."""
    found = find(text)
    if not found:
        return text, {}
    counts: dict[str, int] = {}
    out, pos = [], 0
    for start, end, replacement, kind in found:
        out += (text[pos:start], replacement)
        pos = end
        counts[kind] = counts.get(kind, 0) + 1
    out.append(text[pos:])
    return "".join(out), counts


def find(text: str) -> list[tuple[int, int, str, str]]:
    """Every finding as (start, end, placeholder, kind), in text order, never overlapping.

    Cheap scans find the few places worth a look (an "@", a run of digits, a known key prefix);
    the precise patterns run only there, so clean text costs about one pass per kind.
    """
    found: list[tuple[int, int, str, str]] = []  # (start, end, replacement, kind), sorted, never overlapping

    def add(start: int, end: int, replacement: str | None, kind: str) -> None:
        if replacement is None:
            return
        k = bisect.bisect_left(found, (start,))
        if (k < len(found) and found[k][0] < end) or (k > 0 and found[k - 1][1] > start):
            return  # an earlier kind already took (part of) this place
        found.insert(k, (start, end, replacement, kind))

    if "-----BEGIN" in text:
        for m in _PRIVATE_KEY.finditer(text):
            add(m.start(), m.end(), "<PRIVATE_KEY>", "PRIVATE_KEY")
    for prefix in _SECRET_PREFIXES:
        i = text.find(prefix)
        while i >= 0:
            m = _SECRET.match(text, i)
            if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_-")):
                add(m.start(), m.end(), "<SECRET>", "SECRET")
            i = text.find(prefix, i + 1)
    for v in _VALUE.finditer(text):
        for m in _ASSIGNED.finditer(text, max(0, v.start() - 48), v.end() + 1):
            g = "v" if m.group("v") is not None else "w"
            if m.start(g) > v.start() and _assigned(m) is not None:
                add(m.start(g), m.end(g), "<SECRET>", "SECRET")
    i = text.find("@")
    while i >= 0:
        for m in _EMAIL.finditer(text, max(0, i - 65), i + 256):
            if m.start() < i < m.end():
                add(m.start(), m.end(), "<EMAIL>", "EMAIL")
        i = text.find("@", i + 1)
    for d in _DIGITS.finditer(text):
        lo, hi = max(0, d.start() - 1), min(len(text), d.end() + 2)
        for m in _CARD.finditer(text, lo, hi):
            add(m.start(), m.end(), _card(m), "CREDIT_CARD")
        for m in _IPV4.finditer(text, lo, hi):
            add(m.start(), m.end(), _ipv4(m, text), "IP_ADDRESS")
        for m in _PHONE.finditer(text, lo, hi):
            add(m.start(), m.end(), _phone(m), "PHONE")
    if "::" in text or text.count(":") >= 7:
        covered = 0
        for c in _COLON_PAIR.finditer(text):
            if c.start() < covered:
                continue
            covered = _HEX_RUN.match(text, c.start()).end()
            for m in _IPV6.finditer(text, max(0, c.start() - 5), min(len(text), covered + 1)):
                add(m.start(), m.end(), _ipv6(m, text), "IP_ADDRESS")
    return found
