"""Structured output: the per-token cost of three constrained-decoding libraries on gptkit's
tokenizers, and what the JSON-schema constraint costs gptkit's own generate.

    python benchmarks/bench_constrain.py                 # about 1 minute on 2 cores
    python benchmarks/bench_constrain.py --seeds 200     # the validity figure (200 seeds per tokenizer)

Part 1, the libraries side by side (llguidance, xgrammar, outlines-core), for each tokenizer
(GPT-2's 50,257 ids, a 4,096-id BPE trained here on the standard library, bytes): compile time,
then, driving each library with the same random logits over --seeds seeds, the time per generated
token of computing the mask, applying it to the logits and consuming the sampled token, and the
share of outputs that parse and validate (jsonschema) against the schema.

Part 2, gptkit generate with a tiny random model (4 layers x 128): tokens/s without a constraint
and with `json_schema=`, and the overhead per token; validity of the constrained outputs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "kind": {"enum": ["cat", "dog", "bird"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "kind", "tags", "ok"],
    "additionalProperties": False,
}
MAX_TOKENS = 300


def tokenizers() -> dict:
    import sysconfig

    from gptkit.tokenizer import bytes_tokenizer, gpt2_tokenizer, train_bpe
    lib = Path(sysconfig.get_paths()["stdlib"])
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(lib.glob("*.py"))[:60]]
    return {"gpt2": gpt2_tokenizer(), "bpe-4096": train_bpe(texts, 4096), "bytes": bytes_tokenizer()}


def unpack(bits: torch.Tensor, V: int) -> torch.Tensor:
    from gptkit.constrain import unpack_bitmask
    return unpack_bitmask(bits, V)


class Unconstrained:
    """The same loop with no library: what the others' times are measured against."""
    name = "none"

    def __init__(self, tok, schema):
        pass

    def start(self):
        pass

    def mask(self, logits):
        return logits

    def consume(self, t):
        return False


class LLGuidance:
    name = "llguidance"

    def __init__(self, tok, schema):
        from gptkit.constrain import Grammar, GrammarConstraint, compile_grammar
        self.compiled = compile_grammar(Grammar.json_schema(schema), tok)
        self.make = lambda: GrammarConstraint(self.compiled, 1)

    def start(self):
        self.c = self.make()

    def mask(self, logits):
        return self.c.mask(logits)

    def consume(self, t):
        self.c.advance([t])
        return self.c.matchers[0].is_stopped()


class XGrammar:
    name = "xgrammar"

    def __init__(self, tok, schema):
        import xgrammar as xgr
        self.xgr, self.eot = xgr, tok.eot_id
        vocab = tok.token_bytes(range(tok.vocab_size))
        vocab[tok.eot_id] = b""  # a special token: never text
        info = xgr.TokenizerInfo(vocab, xgr.VocabType.RAW, vocab_size=tok.vocab_size, stop_token_ids=[tok.eot_id])
        self.compiled = xgr.GrammarCompiler(info, max_threads=1).compile_json_schema(json.dumps(schema),
                                                                                     any_whitespace=False)
        self.bits = xgr.allocate_token_bitmask(1, tok.vocab_size)

    def start(self):
        self.m = self.xgr.GrammarMatcher(self.compiled)

    def mask(self, logits):
        self.m.fill_next_token_bitmask(self.bits)
        logits = logits.clone()
        self.xgr.apply_token_bitmask_inplace(logits, self.bits)
        return logits

    def consume(self, t):
        if not self.m.accept_token(t):
            raise RuntimeError("xgrammar refused its own token")
        return self.m.is_terminated()


class OutlinesCore:
    name = "outlines-core"

    def __init__(self, tok, schema):
        import outlines_core as oc
        from outlines_core.json_schema import build_regex_from_schema
        self.oc, self.V, self.eot = oc, tok.vocab_size, tok.eot_id
        table: dict[bytes, list[int]] = {}
        for i, b in enumerate(tok.token_bytes(range(tok.eot_id))):
            table.setdefault(b, []).append(i)
        self.index = oc.Index(build_regex_from_schema(json.dumps(schema)), oc.Vocabulary(tok.eot_id, table))
        self.bits = torch.zeros(1, (self.V + 31) // 32, dtype=torch.int32)

    def start(self):
        self.g = self.oc.Guide(self.index)

    def mask(self, logits):
        self.g.write_mask_into(self.bits.data_ptr(), self.bits.numel(), self.bits.element_size())
        return logits.masked_fill(~unpack(self.bits, self.V), float("-inf"))

    def consume(self, t):
        if t == self.eot:
            return True
        self.g.advance(t)
        return self.g.is_finished()


def valid(text: str, schema: dict) -> bool:
    import jsonschema
    try:
        jsonschema.validate(json.loads(text), schema)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


def drive(lib, tok, seeds: int) -> dict:
    """Random logits through the library's mask; time per token of mask + sample + consume."""
    per_token, ok, lengths = [], 0, []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        lib.start()
        out, spent = [], 0.0
        for _ in range(MAX_TOKENS):
            logits = torch.randn(1, tok.vocab_size, generator=g) * 3
            t0 = time.perf_counter()
            scores = lib.mask(logits)
            t = int(torch.multinomial(scores.softmax(-1), 1, generator=g))
            done = lib.consume(t)
            spent += time.perf_counter() - t0
            if t == tok.eot_id:
                break
            out.append(t)
            if done:
                break
        per_token.append(spent / max(len(out), 1))
        lengths.append(len(out))
        ok += valid(tok.decode(out), SCHEMA)
    return {"ms_per_token": 1000 * statistics.median(per_token), "valid": ok / seeds,
            "tokens": statistics.mean(lengths)}


def part1(toks: dict, seeds: int) -> list[dict]:
    rows = []
    for kind, tok in toks.items():
        base = drive(Unconstrained(tok, SCHEMA), tok, seeds)["ms_per_token"]  # sampling alone
        for cls in (LLGuidance, XGrammar, OutlinesCore):
            t0 = time.perf_counter()
            lib = cls(tok, SCHEMA)
            compile_s = time.perf_counter() - t0
            r = {"tokenizer": kind, "library": cls.name, "compile_ms": 1000 * compile_s, **drive(lib, tok, seeds)}
            r["overhead_ms_per_token"] = r["ms_per_token"] - base
            rows.append(r)
            print(f"{kind:9s} {cls.name:13s} compile {r['compile_ms']:8.1f} ms   +{r['overhead_ms_per_token']:.3f} "
                  f"ms/token over sampling alone ({base:.3f})   valid {100 * r['valid']:5.1f} %   "
                  f"{r['tokens']:.0f} tokens/output", flush=True)
    return rows


def timed(model, tok, seeds: int, **kw) -> tuple[float, list[str]]:
    """tokens/s of generate_text over `seeds` seeds (end-of-text counted), and the texts."""
    n, t0, texts = 0, time.perf_counter(), []
    for seed in range(seeds):
        r = generate_text_(model, tok, seed, **kw)
        n += len(r["token_ids"]) + (r["finish_reason"] == "eos")
        texts.append(r["text"])
    return n / (time.perf_counter() - t0), texts


def generate_text_(model, tok, seed: int, **kw) -> dict:
    from gptkit.generate import generate_text
    kw = {"max_new_tokens": MAX_TOKENS, **kw}
    return generate_text(model, tok, "", seed=seed, do_sample=True, top_k=0, **kw)[0]


def part2(toks: dict, seeds: int) -> list[dict]:
    from gptkit.model import GPT, GPTConfig
    rows = []
    for kind, tok in toks.items():
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_positions=512, n_embd=128, n_layer=4, n_head=4)).eval()
        generate_text_(model, tok, 0, json_schema=SCHEMA)  # the tokenizer's one-time setup, outside the timing
        constrained, texts = timed(model, tok, seeds, json_schema=SCHEMA)
        # plain rows as long as the constrained ones were on average (no end-of-text): same attention cost
        length = round(sum(len(tok.encode(t)) for t in texts) / len(texts)) + 1
        plain, _ = timed(model, tok, min(seeds, 50), max_new_tokens=length, eos_token_id=[])
        ok = sum(valid(t, SCHEMA) for t in texts)
        r = {"tokenizer": kind, "plain_tok_s": plain, "json_schema_tok_s": constrained,
             "overhead_ms_per_token": 1000 * (1 / constrained - 1 / plain), "valid": ok / seeds}
        rows.append(r)
        print(f"{kind:9s} generate: {plain:7.0f} tok/s plain, {constrained:7.0f} tok/s with json_schema "
              f"({constrained / plain:.2f}x; +{r['overhead_ms_per_token']:.3f} ms/token); valid {ok}/{seeds}",
              flush=True)
    return rows


def install_rivals() -> None:
    """xgrammar and outlines-core, which gptkit does not depend on: installed here (xgrammar without
    its dependencies, which would pull another torch and triton; apache-tvm-ffi is what it needs)."""
    import importlib.util
    import subprocess
    wanted = {"xgrammar": ["--no-deps", "xgrammar", "apache-tvm-ffi"], "outlines_core": ["outlines-core"]}
    for module, args in wanted.items():
        if importlib.util.find_spec(module) is None:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--parts", default="1,2")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    toks = tokenizers()
    out = {}
    if "1" in args.parts.split(","):
        install_rivals()
        out["libraries"] = part1(toks, args.seeds)
    if "2" in args.parts.split(","):
        out["generate"] = part2(toks, args.seeds)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
