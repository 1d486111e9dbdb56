"""The engine's core: logits through output_logits (soft-capping applies), rows of different
lengths decoded together as each alone, logits processors, finishing."""
from __future__ import annotations

import torch

from gptkit.engine import Engine, SamplingParams, Seq, TokenText
from gptkit.model import GPT, GPTConfig
from gptkit.tokenizer import bytes_tokenizer


def model(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=257, n_positions=128, n_embd=32, n_layer=2, n_head=4, eos_token_id=256)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


def run(m, prompts, params, tok=None, **engine_kw) -> list[Seq]:
    eng = Engine(m, tok, max_rows=len(prompts), max_length=m.config.n_positions, **engine_kw)
    seqs = [Seq(p, params, TokenText(tok) if tok else None, index=i) for i, p in enumerate(prompts)]
    with torch.no_grad():
        eng.run([[s] for s in seqs])
    return seqs


def test_logprobs_are_the_soft_capped_models():
    m = model(logit_softcap=2.0, position_embedding="rope", n_kv_head=2, norm="rmsnorm")
    tok = bytes_tokenizer()
    prompt = list(b"hello there")
    (s,) = run(m, [prompt], SamplingParams(max_tokens=6, temperature=0, logprobs=1, eos_token_ids=()), tok)
    seen = []
    eng_infos = []

    def emit(ev):
        eng_infos.extend(ev.tokens)
    eng = Engine(m, tok, max_rows=1)
    seq = Seq(prompt, SamplingParams(max_tokens=6, temperature=0, logprobs=1, eos_token_ids=()), TokenText(tok),
              emit=emit)
    with torch.no_grad():
        eng.run([[seq]])
        full = torch.log_softmax(m(torch.tensor([prompt + seq.out])).float(), -1)[0]
    assert seq.out == s.out and len(eng_infos) == 6
    for i, info in enumerate(eng_infos):
        ref = full[len(prompt) - 1 + i]
        seen.append(info.token)
        assert info.token == int(ref.argmax())
        assert abs(info.logprob - float(ref[info.token])) < 1e-4
        assert float(ref.max()) <= 0 and m.config.logit_softcap is not None


def test_rows_of_different_lengths_decode_as_each_alone():
    m = model()
    prompts = [list(range(5, 5 + n)) for n in (3, 17, 9, 30)]
    params = SamplingParams(max_tokens=12, temperature=0, eos_token_ids=())
    together = run(m, prompts, params)
    for p, s in zip(prompts, together):
        (alone,) = run(m, [p], params)
        assert alone.out == s.out
        with torch.no_grad():  # and each is greedy decoding of the full forward pass
            x = torch.tensor([p + s.out])
            assert m(x)[0, len(p) - 1:-1].argmax(-1).tolist() == s.out


def test_a_logits_processor_constrains_and_ends_a_sequence():
    m = model()

    class OnlyEven:
        def __init__(self):
            self.accepted = []

        def __call__(self, out, scores):
            bad = torch.ones_like(scores, dtype=torch.bool)
            bad[::2] = False
            return scores.masked_fill(bad, float("-inf"))

        def accept(self, t):
            self.accepted.append(t)

        def is_finished(self):
            return len(self.accepted) == 5

    for temperature in (0, 1.0):
        params = SamplingParams(max_tokens=20, temperature=temperature, seed=3, logits_processors=(OnlyEven,),
                                eos_token_ids=())
        (s,) = run(m, [[1, 2, 3]], params)
        assert len(s.out) == 5 and all(t % 2 == 0 for t in s.out) and s.finish_reason == "stop"
        assert s.processors[0].accepted == s.out


def test_stop_strings_and_eos_finish_with_their_reasons():
    m = model()
    tok = bytes_tokenizer()
    free = run(m, [list(b"abc")], SamplingParams(max_tokens=30, temperature=0, eos_token_ids=()), tok)[0]
    text = tok.decode(free.out)
    needle = text[10:12]
    (s,) = run(m, [list(b"abc")], SamplingParams(max_tokens=30, temperature=0, stop=(needle,), eos_token_ids=()), tok)
    assert s.finish_reason == "stop" and s.text.text == text[:text.index(needle)]
    (e,) = run(m, [list(b"abc")], SamplingParams(max_tokens=30, temperature=0, eos_token_ids=(free.out[4],)), tok)
    assert e.finish_reason == "stop" and e.out == free.out[:free.out.index(free.out[4]) + 1]
    assert free.finish_reason == "length" and len(free.out) == 30
