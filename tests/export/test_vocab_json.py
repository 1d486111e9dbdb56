"""A family's tokenizer.json into GGUF (gptkit/export/vocab_json.py): tiny tokenizers of each shape,
trained here with the `tokenizers` library (tests/family_tokenizers.py, edited to the published files'
settings), in tiny random transformers models; llama.cpp (where llama-cpp-python is installed) tokenizes
a prompt to transformers' and gptkit's ids and decodes gptkit's greedy tokens (f32). What llama.cpp
would tokenize otherwise is refused in one line, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from family_tokenizers import build, vocab_size

from gptkit.cli import main
from gptkit.errors import GptkitError
from gptkit.hf import load_model

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'gptkit[export]')")
transformers = pytest.importorskip("transformers")
from gptkit.export import export_gguf  # noqa: E402

PROMPT = "Hello world, it's 1,234.56 dollars; naïve café 日本語 😀\n  def f(x):\n\treturn x"
# case -> (family_tokenizers kind, transformers family, GGUF tokenizer model, pre-tokenizer, add_bos)
CASES = {
    "llama3": ("llama3", "Llama", "gpt2", "llama-bpe", True),
    "qwen2": ("qwen2", "Qwen2", "gpt2", "qwen2", False),
    "smollm2": ("smollm2", "Llama", "gpt2", "smollm", False),
    "gpt2-regex": ("smollm2", "Llama", "gpt2", "gpt-2", False),
    "llama2-sentencepiece": ("llama2", "Llama", "llama", None, True),
    "mistral-sentencepiece": ("mistral", "Mistral", "llama", None, True),
}


def _edit_json(path: Path, edit) -> None:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d, ensure_ascii=False))


def sentencepiece_merges(d: dict) -> None:
    """Merges as the converters from SentencePiece write them: every split of a piece into two pieces,
    ordered by the piece's id (so llama.cpp's score-ordered merging is BPE's)."""
    vocab = d["model"]["vocab"]
    merges = [(vocab[t], vocab[t[:k]], vocab[t[k:]], t[:k], t[k:]) for t in vocab for k in range(1, len(t))
              if t[:k] in vocab and t[k:] in vocab]
    d["model"]["merges"] = [[a, b] for *_, a, b in sorted(merges)]


def _edit(case: str, d: dict) -> None:
    if case == "llama3":  # as Llama-3's tokenizer.json: whole words in the vocabulary skip the merges
        d["model"]["ignore_merges"] = True
    if case == "smollm2":  # as SmolLM2's: single digits, then GPT-2's ByteLevel regex
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, d["pre_tokenizer"]]}
    if case.endswith("sentencepiece"):
        sentencepiece_merges(d)


def family_dir(directory: Path, case: str, edit=None) -> Path:
    kind, family = CASES[case][:2]
    build(kind, directory)
    _edit_json(directory / "tokenizer.json", lambda d: (_edit(case, d), edit and edit(d)))
    tok = transformers.AutoTokenizer.from_pretrained(directory)
    extra = dict(sliding_window=None) if family == "Mistral" else {}
    config = getattr(transformers, f"{family}Config")(
        vocab_size=vocab_size(directory), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=False, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, f"{family}ForCausalLM")(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        model.lm_head.weight.mul_(6)  # peaked next tokens: no near-ties for rounding to flip
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    src = family_dir(root / "model", request.param)
    out = root / "m.gguf"
    export_gguf(src, out, quantize="f32")
    return request.param, src, out


def fields(path) -> dict:
    return {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items()}


def test_the_tokenizer_keys_are_the_families(exported):
    case, src, out = exported
    _, _, model, pre, add_bos = CASES[case]
    f = fields(out)
    tok = transformers.AutoTokenizer.from_pretrained(src)
    assert f["tokenizer.ggml.model"] == model and f.get("tokenizer.ggml.pre") == pre
    assert f["tokenizer.ggml.add_bos_token"] is add_bos and f["tokenizer.ggml.add_eos_token"] is False
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    vocab = tok.get_vocab()
    assert len(tokens) == vocab_size(src) and all(tokens[i] == t for t, i in vocab.items())
    assert f["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    if tok.bos_token_id is not None:
        assert f["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    for t in tok.all_special_tokens:
        assert types[vocab[t]] in (gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN), t
    assert f["tokenizer.chat_template"] == tok.chat_template
    if model == "llama":
        assert f["tokenizer.ggml.add_space_prefix"] is True and "tokenizer.ggml.merges" not in f
        assert all(types[vocab[f"<0x{b:02X}>"]] == gguf.TokenType.BYTE for b in range(256))
        assert types[vocab["<unk>"]] == gguf.TokenType.UNKNOWN and f["tokenizer.ggml.unknown_token_id"] == 0
    else:
        assert len(f["tokenizer.ggml.merges"]) == len(json.loads((src / "tokenizer.json").read_text())["model"]["merges"])


def test_llama_cpp_tokenizes_and_decodes_as_transformers_and_gptkit(exported):
    """llama.cpp's own tokenizer on the GGUF: the ids of transformers' tokenizer(text) and of gptkit (its
    BOS included); then, f32, the same 16 greedy tokens as gptkit's generate and transformers'."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (benchmarks/bench_gguf.py "
                                    "installs it and runs this check)")
    case, src, out = exported
    tok = transformers.AutoTokenizer.from_pretrained(src)
    if case == "smollm2":  # transformers 5's GPT2Tokenizer drops tokenizer.json's Digits step (its known
        # regression: transformers#45701); the file's pipeline, which gptkit and llama.cpp's "smollm" run, is
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json"))
    want = tok(PROMPT).input_ids
    model = load_model(src)
    ours = [*model.tokenizer.prompt_prefix, *model.tokenizer.encode(PROMPT)]
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=128, n_threads=2, n_batch=128, verbose=False)
    theirs = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    assert ours == want and theirs == want
    with torch.no_grad():
        greedy = model.generate(torch.tensor([want]), max_new_tokens=16, do_sample=False)[0, len(want):].tolist()
        hf = transformers.AutoModelForCausalLM.from_pretrained(src).eval()
        ids = torch.tensor([want])
        hf_greedy = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                                pad_token_id=model.config.eos_token_id)[0, len(want):].tolist()
    cpp = []
    for t in llm.generate(want, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        cpp.append(int(t))
        if len(cpp) == 16:
            break
    assert greedy == hf_greedy[:len(greedy)] and cpp[:len(greedy)] == greedy


# ---------------------------------------------------------------------------- refused, nothing written

def _refused(tmp_path, capsys, case, edit, words):
    src = family_dir(tmp_path / "model", case, edit)
    out = tmp_path / "m.gguf"
    capsys.readouterr()  # transformers' saving progress
    assert main(["export", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _split_a_block(d: dict) -> None:
    """New pieces "ab", "bc", "abc", "abc" made by (ab, c) and, three ranks later, by (a, bc)."""
    vocab, merges = d["model"]["vocab"], d["model"]["merges"]
    n = len(vocab)
    vocab.update({"ab": n, "bc": n + 1, "abc": n + 2})
    merges += [["a", "b"], ["ab", "c"], ["b", "c"], ["a", "bc"]]


@pytest.mark.parametrize("case, edit, words", [
    ("qwen2", lambda d: d["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\s+|\w+"),
     "llama.cpp has no pre-tokenizer that splits text as this tokenizer.json's pre_tokenizer does"),
    ("llama3", lambda d: d["model"].update(ignore_merges=False), "ignore_merges is false, but llama.cpp's 'llama-bpe'"),
    ("qwen2", lambda d: d.update(normalizer={"type": "NFKC"}), "normalizer 'NFKC' is not computed by llama.cpp"),
    ("llama2-sentencepiece", _split_a_block, "the merges of 'abc' are not adjacent in rank"),
    ("llama2-sentencepiece", lambda d: d["model"]["merges"].pop(0), "but are no merge"),
])
def test_what_llama_cpp_would_tokenize_otherwise_is_refused(tmp_path, capsys, case, edit, words):
    _refused(tmp_path, capsys, case, edit, words)


def test_a_byte_fallback_tokenizer_without_every_byte_piece_is_refused(tmp_path, capsys):
    def drop(d):
        i = d["model"]["vocab"].pop("<0x41>")
        d["model"]["vocab"]["<0x41>x"] = i
    _refused(tmp_path, capsys, "mistral-sentencepiece", drop, "byte fallback without the piece <0x41>")


def test_a_family_tokenizer_is_no_longer_refused_by_plan_gguf(tmp_path):
    from gptkit.export.gguf import plan_gguf
    from gptkit.hf import hf_state
    src = family_dir(tmp_path / "model", "qwen2")
    model = load_model(src)
    hf_config, state = hf_state(model)
    plan = plan_gguf(hf_config, state, model.tokenizer, "f32")
    assert plan.vocab.pre == "qwen2" and plan.vocab.kind == "tokenizer.json"
    with pytest.raises(GptkitError, match="more than the model's vocab_size"):
        plan_gguf({**hf_config, "vocab_size": 10}, state, model.tokenizer, "f32")
