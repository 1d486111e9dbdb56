"""The tokenizers of the modern families (Llama, Mistral, Qwen2, Qwen3, SmolLM2): a Hugging Face
`tokenizer.json` run by the `tokenizers` library, the engine transformers' fast tokenizers use.

Ids equal transformers.AutoTokenizer's on the same directory: the pipeline is tokenizer.json's, with
what transformers changes on load applied the same way (`transformers_pipeline`); the special
tokens, BOS/EOS and the chat template come from tokenizer_config.json (and chat_template.jinja).

    encode(text)           plain text: a special token's spelling inside it is text (as gptkit's GPT-2
                           tokenizer treats "<|endoftext|>"; transformers' split_special_tokens=True)
    encode_special(text)   special tokens as themselves (a rendered chat template; transformers' default)
    prompt_prefix          the ids transformers puts before a text (Llama's BOS), for prompts
    token_bytes(ids)       each token's bytes as a continuation (SentencePiece's "▁" is a space)
    decode(ids)            transformers' decode
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gptkit.bytelevel import bytes_to_unicode
from gptkit.errors import GptkitError
from gptkit.files import write_text

GENERIC_MODEL_TYPES = ("mistral", "mixtral")  # transformers' AutoTokenizer ignores their tokenizer_class
MODEL_TYPES = ("BPE", "Unigram")  # what the families use; WordPiece/WordLevel are encoder models' vocabularies
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
EOT = "<|endoftext|>"
_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_U2B = {c: b for b, c in bytes_to_unicode().items()}
# transformers' clean_up_tokenization (tokenization_utils_base), applied where tokenizer_config asks
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read_files(directory: Path) -> dict[str, str]:
    files = {}
    for name in FILES:
        path = directory / name
        if path.is_file():
            try:
                files[name] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise GptkitError(f"{path}: unreadable ({e})") from None
    return files


def _json(text: str, where: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise GptkitError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise GptkitError(f"{where}: expected a JSON object")
    return d


def _has(node: Any, kind: str) -> bool:
    """Whether a pre-tokenizer or decoder (or a Sequence of them) is or holds a `kind` step."""
    if not isinstance(node, dict):
        return False
    steps = node.get("pretokenizers", node.get("decoders", []))
    return node.get("type") == kind or isinstance(steps, list) and any(_has(n, kind) for n in steps)


def _is_byte_level(d: dict[str, Any]) -> bool:
    """transformers' TokenizersBackend._tokenizer_json_has_byte_level: a ByteLevel pre-tokenizer or decoder."""
    return _has(d.get("pre_tokenizer"), "ByteLevel") or _has(d.get("decoder"), "ByteLevel")


def transformers_pipeline(hf: Any, d: dict[str, Any], config: dict[str, Any], model_type: str | None) -> None:
    """Apply what transformers 5 changes on load, in place.

    * tokenizer_class LlamaTokenizer(Fast) over a SentencePiece-style tokenizer.json (Llama-2, Mistral):
      transformers' LlamaTokenizer keeps the vocabulary and merges but builds its own pipeline, a
      Metaspace pre-tokenizer (prepend "first", or "always" with legacy=true, "never" with
      add_prefix_space=false) and the Replace/ByteFallback/Fuse(/Strip) decoder, with no normalizer;
      except for a model_type transformers maps to its generic backend (Mistral's, without mistral_common):
      it runs tokenizer.json as it is.
    * add_bos_token / add_eos_token named in tokenizer_config.json, or no post-processor: the
      post-processor is BOS? $A EOS?, as transformers' update_post_processor writes it."""
    from tokenizers import decoders, pre_tokenizers, processors
    cls = str(config.get("tokenizer_class") or "").removesuffix("Fast")
    if cls == "LlamaTokenizer" and not _is_byte_level(d) and model_type not in GENERIC_MODEL_TYPES:
        prefix = config.get("add_prefix_space")
        prefix = True if prefix is None else bool(prefix)
        scheme = ("first" if not config.get("legacy", False) else "always") if prefix else "never"
        hf.normalizer = None
        hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
        steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        hf.decoder = decoders.Sequence(steps + ([decoders.Strip(content=" ", left=1)] if prefix else []))
    if "add_bos_token" in config or "add_eos_token" in config or d.get("post_processor") is None:
        bos, eos = (_token_text(config.get(key)) if config.get(f"add_{key}") else None
                    for key in ("bos_token", "eos_token"))
        bos, eos = (t if t is not None and hf.token_to_id(t) is not None else None for t in (bos, eos))
        single = f"{(bos + ':0 ') if bos else ''}$A:0{(' ' + eos + ':0') if eos else ''}"
        pair = f"{single}{(' ' + bos + ':1') if bos else ''} $B:1{(' ' + eos + ':1') if eos else ''}"
        hf.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(t, hf.token_to_id(t)) for t in (bos, eos) if t])


class JsonTokenizer:
    """A tokenizer.json tokenizer behind gptkit's tokenizer interface (see the module docstring)."""

    kind = "tokenizer.json"

    def __init__(self, files: dict[str, str], where: str = "tokenizer.json", model_type: str | None = None) -> None:
        from tokenizers import Tokenizer as HFTokenizer
        if "tokenizer.json" not in files:
            raise GptkitError(f"{where}: no tokenizer.json")
        self.files, self.where, self.model_type = dict(files), where, model_type
        d = _json(files["tokenizer.json"], where)
        model = d.get("model") if isinstance(d.get("model"), dict) else {}
        if model.get("type") not in MODEL_TYPES:
            raise GptkitError(f"{where}: model type {model.get('type')!r} is not one gptkit reads (it reads "
                              f"{' and '.join(MODEL_TYPES)} tokenizers, the families' kinds)")
        config_where = str(Path(where).with_name("tokenizer_config.json"))
        config = _json(files["tokenizer_config.json"], config_where) if "tokenizer_config.json" in files else {}
        smap = _json(files["special_tokens_map.json"], where) if "special_tokens_map.json" in files else {}
        try:
            self._special = HFTokenizer.from_str(files["tokenizer.json"])
            self._plain = HFTokenizer.from_str(files["tokenizer.json"])
        except Exception as e:  # the tokenizers library's own parse error
            raise GptkitError(f"{where}: the tokenizers library cannot read it ({str(e).splitlines()[0]})") from None
        for hf in (self._special, self._plain):
            transformers_pipeline(hf, d, config, model_type)
        self._plain.encode_special_tokens = True
        self.byte_level = _is_byte_level(d)
        self.byte_fallback = _has(json.loads(self._special.decoder.__getstate__()) if self._special.decoder else None,
                                  "ByteFallback")  # its decoder turns <0xNN> into the byte
        self.cleanup = bool(config.get("clean_up_tokenization_spaces", False))
        self.bos_token = _token_text(config.get("bos_token")) or _token_text(smap.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token")) or _token_text(smap.get("eos_token"))
        self.eot_token = self.eos_token or self.bos_token
        if self.eot_token is None and self._special.token_to_id(EOT) is not None:
            self.eot_token = self.eos_token = EOT  # transformers' GPT-2 and Qwen2 classes default to it
        self.eot_id = self._special.token_to_id(self.eot_token) if self.eot_token else None
        if self.eot_id is None:
            raise GptkitError(f"{config_where}: names no eos_token or bos_token of the vocabulary; gptkit needs an "
                              "end-of-text token")
        added = self._special.get_added_tokens_decoder()
        self.special_ids = {t.content: i for i, t in sorted(added.items()) if t.special}
        self.special_ids.setdefault(self.eot_token, self.eot_id)
        self.specials = tuple(t for t in self.special_ids if t != self.eot_token)
        self._added = {i: t.content for i, t in added.items()}
        self.vocab_size = max(self._special.get_vocab_size(with_added_tokens=True), 1 + max(added, default=-1))
        self.chat_template = files.get("chat_template.jinja") or config_chat_template(config, config_where)
        self.prompt_prefix, self.prompt_suffix = self._affixes()
        self._table: list[bytes] | None = None

    @classmethod
    def load(cls, directory: str | os.PathLike) -> JsonTokenizer:
        """The tokenizer files of `directory`; config.json's model_type, where it has one, decides as in
        transformers which class's pipeline runs."""
        directory = Path(directory)
        try:
            model_type = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
            model_type = None
        return cls(_read_files(directory), str(directory / "tokenizer.json"), model_type)

    def __repr__(self) -> str:
        return f"JsonTokenizer(vocab_size={self.vocab_size}, eot={self.eot_token!r})"

    def __reduce__(self):
        return (JsonTokenizer, (self.files, self.where, self.model_type))

    def _affixes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The ids transformers' tokenizer(text) puts before the text's own (Llama's BOS; none for Qwen)
        and after them (an EOS where add_eos_token says so)."""
        probe = "a"
        plain = self._special.encode(probe, add_special_tokens=False).ids
        full = self._special.encode(probe, add_special_tokens=True).ids
        for start in range(len(full) - len(plain) + 1):
            if full[start:start + len(plain)] == plain:
                return tuple(full[:start]), tuple(full[start + len(plain):])
        return (), ()

    def pipeline(self) -> dict[str, Any]:
        """The tokenizer.json that runs (transformers' changes on load applied), as a JSON object."""
        return json.loads(self._special.to_str())

    @property
    def fingerprint(self) -> str:
        """A SHA-256 of the vocabulary and pipeline (tokenizer.json as the tokenizers library writes it)."""
        return hashlib.sha256(self._special.to_str().encode()).hexdigest()

    # -- encoding and decoding ---------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self._plain.encode(text, add_special_tokens=False).ids

    def encode_special(self, text: str) -> list[int]:
        return self._special.encode(text, add_special_tokens=False).ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.uint32)

    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        return [e.ids for e in self._plain.encode_batch(list(texts), add_special_tokens=False)]

    def _check(self, ids: Iterable[int]) -> list[int]:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise GptkitError(f"token id {bad[0]} is outside the tokenizer's vocabulary (size {self.vocab_size})")
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        text = self._special.decode(self._check(ids), skip_special_tokens=skip_special_tokens)
        if self.cleanup:
            for a, b in _CLEANUP:
                text = text.replace(a, b)
        return text

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        table = self._bytes_table()
        return [table[i] for i in self._check(ids)]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.token_bytes(ids))

    def _bytes_table(self) -> list[bytes]:
        """Each id's bytes: ByteLevel's alphabet mapped back, or SentencePiece's pieces ("▁" a space,
        <0xNN> the byte NN); an added token's are its text."""
        if self._table is None:
            table = []
            for i in range(self.vocab_size):
                piece = self._special.id_to_token(i) or ""
                if self.byte_fallback and (m := _BYTE.fullmatch(piece)):  # ByteFallback decodes it, added or not
                    table.append(bytes([int(m.group(1), 16)]))
                elif i in self._added:
                    table.append(self._added[i].encode())
                elif self.byte_level:
                    table.append(bytes(_U2B[c] for c in piece) if all(c in _U2B for c in piece) else piece.encode())
                else:
                    table.append(piece.replace("▁", " ").encode())
            self._table = table
        return self._table

    # -- files -------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """The tokenizer files as they were read (transformers loads them to the same tokenizer)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in self._files_to_save().items():
            write_text(directory / name, text)

    def _files_to_save(self) -> dict[str, str]:
        """As read, except a SentencePiece-style tokenizer.json declared LlamaTokenizer: which pipeline
        transformers runs on it depends on the model_type beside it (see transformers_pipeline), and a
        model may be saved in another family than it was read from (Mistral without a window is Llama).
        It is saved as the pipeline that ran, under the class that runs a tokenizer.json as it is."""
        files = dict(self.files)
        config = _json(files.get("tokenizer_config.json", "{}"), self.where)
        if str(config.get("tokenizer_class") or "").removesuffix("Fast") == "LlamaTokenizer" and not self.byte_level:
            files["tokenizer.json"] = self._special.to_str()
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
            files["tokenizer_config.json"] = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        return files


def config_chat_template(config: dict[str, Any], where: str) -> str | None:
    """The chat template of a tokenizer_config.json (its "default" when it names several), or None."""
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: gptkit keeps "default"
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    if template is not None and not isinstance(template, str):
        raise GptkitError(f"{where}: chat_template must be a string (a Jinja template)")
    return template
