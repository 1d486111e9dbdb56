"""Training throughput: gptkit vs Hugging Face transformers' GPT2LMHeadModel on the same weights,
the same batches, a full optimizer step each (forward, backward, AdamW), at three shapes:

  small     4 layers, 256 wide, GPT-2's 50,257-token vocabulary, batch 8 x 256 (where gptkit's
            fused output layer helps most: the vocabulary dominates the FLOPs)
  make-run  the `make run` model: preset mini (4 layers, 256 wide) with its 4,096-token BPE
            vocabulary, batch 16 x 256
  gpt2      GPT-2 124M (12 layers, 768 wide, 50,257 tokens), batch 1 x 1024

    python benchmarks/bench_train.py [--shapes small make-run gpt2] [--rounds 2]

Per shape: first both models' losses on the same weights and batch (they must agree), then
tokens/s of transformers fp32 and bf16 autocast, gptkit fp32 and bf16 autocast (interleaved
rounds, best round each: a shared machine's noise hits all alike), each with its achieved
GFLOPS (6N + attention FLOPs per token, PaLM's count) as a fraction of this machine's matmul peak
at the dtype used, measured in the same run; and which precision `gptkit train --dtype auto`
picks for the shape (it times both on the model at hand).
"""
from __future__ import annotations

import argparse
import time

import torch

SHAPES = {
    "small": dict(n_layer=4, n_head=4, n_embd=256, vocab_size=50257, batch_size=8, block_size=256),
    "make-run": dict(n_layer=4, n_head=4, n_embd=256, vocab_size=4096, batch_size=16, block_size=256),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, batch_size=1, block_size=1024),
}


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """This machine's best FLOP/s on an n x n x n matmul in `dtype` (all threads)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    best = float("inf")
    for _ in range(reps + 1):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def models(s: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A random transformers GPT-2 and gptkit's GPT holding the same weights (via gptkit's converter)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gptkit.hf import load_state_into
    from gptkit.hf.gpt2 import from_hf
    from gptkit.model import GPT, GPTConfig
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=s["vocab_size"], n_positions=s["block_size"], n_embd=s["n_embd"],
                                    n_layer=s["n_layer"], n_head=s["n_head"], resid_pdrop=0.0, embd_pdrop=0.0,
                                    attn_pdrop=0.0, bos_token_id=s["vocab_size"] - 1,
                                    eos_token_id=s["vocab_size"] - 1))
    gk = GPT(GPTConfig(vocab_size=s["vocab_size"], n_positions=s["block_size"], n_embd=s["n_embd"],
                       n_layer=s["n_layer"], n_head=s["n_head"]))
    sd = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    load_state_into(gk, from_hf(sd, gk.config, "transformers"), "transformers", assign=False)
    return hf, gk


def hf_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x).logits
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def gptkit_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x, targets=y)


class Contender:
    """One model + AdamW, stepped on the shared batches; keeps its best round's time."""

    def __init__(self, name: str, model: torch.nn.Module, loss_fn, amp: torch.dtype | None) -> None:
        self.name, self.model, self.loss_fn, self.amp = name, model.train(), loss_fn, amp
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
        self.best = float("inf")
        self.loss = float("nan")

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=self.amp or torch.bfloat16, enabled=self.amp is not None):
            loss = self.loss_fn(self.model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.loss = loss.item()

    def timed_round(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        t0 = time.perf_counter()
        for x, y in batches:
            self.step(x, y)
        self.best = min(self.best, (time.perf_counter() - t0) / len(batches))


def run_shape(name: str, s: dict, args: argparse.Namespace, peaks: dict) -> None:
    import copy

    from gptkit.train.speed import flops_per_token, measured_step_seconds
    print(f"\n== {name}: {s['n_layer']} layers, {s['n_embd']} wide, vocab {s['vocab_size']:,}, "
          f"batch {s['batch_size']} x {s['block_size']}")
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, s["vocab_size"], (s["batch_size"], s["block_size"]), generator=g),
                torch.randint(0, s["vocab_size"], (s["batch_size"], s["block_size"]), generator=g))
               for _ in range(args.steps)]
    torch.manual_seed(0)
    hf, gk = models(s)
    with torch.no_grad():
        a, b = hf_loss(hf.eval(), *batches[0]).item(), gptkit_loss(gk.eval(), *batches[0]).item()
    agree = abs(a - b) < 1e-4
    print(f"same weights, same batch: loss transformers {a:.6f}, gptkit {b:.6f} "
          f"(|diff| {abs(a - b):.1e}: {'agree' if agree else 'DISAGREE'})")
    if not agree:
        raise SystemExit("the two models do not compute the same loss on the same weights")
    fpt = flops_per_token(gk, s["block_size"])
    x, y = batches[0]
    fp32_s, bf16_s = measured_step_seconds(gk.train(), x, y, [None, torch.bfloat16])
    pick = "bfloat16" if bf16_s < fp32_s else "float32"
    cs = [Contender("transformers fp32", copy.deepcopy(hf), hf_loss, None),
          Contender("transformers bf16 autocast", copy.deepcopy(hf), hf_loss, torch.bfloat16),
          Contender("gptkit fp32", copy.deepcopy(gk), gptkit_loss, None),
          Contender("gptkit bf16 autocast", gk, gptkit_loss, torch.bfloat16)]
    del hf
    for c in cs:  # warm-up: first-touch allocations, oneDNN kernel selection
        for xb, yb in batches[: args.warmup]:
            c.step(xb, yb)
    for _ in range(args.rounds):
        for c in cs:
            c.timed_round(batches)
    tokens = s["batch_size"] * s["block_size"]
    r = {}
    for c in cs:
        tps = tokens / c.best
        r[c.name] = tps
        peak = peaks[c.amp or torch.float32]
        print(f"{c.name:<28} {tps:>9,.0f} tokens/s ({c.best * 1000:7.1f} ms/step), {fpt * tps / 1e9:6.1f} GFLOPS = "
              f"{fpt * tps / peak:5.1%} of the {'bf16' if c.amp else 'fp32'} matmul peak; last loss {c.loss:.4f}")
    default = r["gptkit bf16 autocast" if pick == "bfloat16" else "gptkit fp32"]
    best_hf = max(r["transformers fp32"], r["transformers bf16 autocast"])
    print(f"gptkit train --dtype auto picks {pick} here (measured {fp32_s * 1e3:.0f} ms fp32, {bf16_s * 1e3:.0f} ms "
          f"bf16 per forward+backward); ratios: fp32 {r['gptkit fp32'] / r['transformers fp32']:.2f}x, "
          f"bf16 {r['gptkit bf16 autocast'] / r['transformers bf16 autocast']:.2f}x, "
          f"gptkit default / best transformers {default / best_hf:.2f}x")
    del cs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--steps", type=int, default=2, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best counts")
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    peaks = {dt: matmul_peak(dt) for dt in (torch.float32, torch.bfloat16)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak (2048^3, best of 5): "
          f"fp32 {peaks[torch.float32] / 1e9:.0f} GFLOPS, bf16 {peaks[torch.bfloat16] / 1e9:.0f} GFLOPS")
    for name in args.shapes:
        run_shape(name, SHAPES[name], args, peaks)


if __name__ == "__main__":
    main()
