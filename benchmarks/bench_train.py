"""Training throughput: gptkit vs Hugging Face transformers' GPT2LMHeadModel, same run, same
config, same batch, a full optimizer step each (forward, backward, AdamW).

    python benchmarks/bench_train.py [--n-layer 4 --n-embd 256 --batch-size 8 --block-size 256]

Prints tokens/s for transformers fp32, transformers bf16 autocast, gptkit fp32, gptkit bf16
autocast, and gptkit's default settings (what `gptkit train` does), then the ratios.
"""
from __future__ import annotations

import argparse
import time

import torch


def hf_model(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=args.vocab_size, n_positions=args.block_size, n_embd=args.n_embd,
                     n_layer=args.n_layer, n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg)


def gptkit_model(args: argparse.Namespace) -> torch.nn.Module:
    from gptkit.model import GPT, GPTConfig
    return GPT(GPTConfig(vocab_size=args.vocab_size, n_positions=args.block_size, n_embd=args.n_embd,
                         n_layer=args.n_layer, n_head=args.n_head))


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=50257)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=4, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    from gptkit.device import cpu_has_fast_bf16
    bf16 = torch.bfloat16 if cpu_has_fast_bf16() else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; GPT n_layer={args.n_layer} "
          f"n_embd={args.n_embd} vocab={args.vocab_size}, batch {args.batch_size} x {args.block_size} tokens; "
          f"bf16 {'available' if bf16 else 'not available: default is fp32'}")
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), generator=g),
                torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), generator=g))
               for _ in range(args.steps)]
    torch.manual_seed(0)
    cs = [Contender("transformers fp32", hf_model(args), hf_loss, None),
          Contender("transformers bf16 autocast", hf_model(args), hf_loss, torch.bfloat16),
          Contender("gptkit fp32", gptkit_model(args), gptkit_loss, None),
          Contender("gptkit bf16 autocast", gptkit_model(args), gptkit_loss, torch.bfloat16),
          Contender("gptkit default (gptkit train)", gptkit_model(args), gptkit_loss, bf16)]
    for c in cs:  # warm-up: first-touch allocations, oneDNN kernel selection
        for x, y in batches[: args.warmup]:
            c.step(x, y)
    # Interleaved rounds, best round per contender: a shared machine's noise hits all alike.
    for _ in range(args.rounds):
        for c in cs:
            c.timed_round(batches)
    tokens = args.batch_size * args.block_size
    r = {}
    for c, key in zip(cs, ("hf32", "hf16", "gk32", "gk16", "gkdef")):
        r[key] = tokens / c.best
        print(f"{c.name:<32} {r[key]:>10,.0f} tokens/s  ({c.best * 1000:7.1f} ms/step, last loss {c.loss:.3f})")
    best_hf = max(r["hf32"], r["hf16"])
    print(f"\nratios: gptkit fp32 / transformers fp32 = {r['gk32'] / r['hf32']:.2f}x; "
          f"gptkit bf16 / transformers bf16 = {r['gk16'] / r['hf16']:.2f}x; "
          f"gptkit default / best transformers = {r['gkdef'] / best_hf:.2f}x (goal >= 1.3x)")


if __name__ == "__main__":
    main()
