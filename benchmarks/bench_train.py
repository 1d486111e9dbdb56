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


def measure(name: str, model: torch.nn.Module, loss_fn, amp: torch.dtype | None, args: argparse.Namespace,
            batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            loss = loss_fn(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for x, y in batches[: args.warmup]:
        step(x, y)
    t0 = time.perf_counter()
    for x, y in batches[args.warmup:]:
        loss = step(x, y)
    dt = time.perf_counter() - t0
    tps = args.steps * args.batch_size * args.block_size / dt
    print(f"{name:<34} {tps:>10,.0f} tokens/s  ({dt / args.steps * 1000:7.1f} ms/step, last loss {loss:.3f})",
          flush=True)
    return tps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=50257)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    from gptkit.device import cpu_has_fast_bf16
    bf16 = torch.bfloat16 if cpu_has_fast_bf16() else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; GPT n_layer={args.n_layer} "
          f"n_embd={args.n_embd} vocab={args.vocab_size}, batch {args.batch_size} x {args.block_size} tokens; "
          f"bf16 {'available' if bf16 else 'not available: default is fp32'}")
    g = torch.Generator().manual_seed(0)
    n = args.warmup + args.steps
    batches = [(torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), generator=g),
                torch.randint(0, args.vocab_size, (args.batch_size, args.block_size), generator=g))
               for _ in range(n)]
    r = {}
    torch.manual_seed(0)
    r["hf32"] = measure("transformers fp32", hf_model(args), hf_loss, None, args, batches)
    r["hf16"] = measure("transformers bf16 autocast", hf_model(args), hf_loss, torch.bfloat16, args, batches)
    r["gk32"] = measure("gptkit fp32", gptkit_model(args), gptkit_loss, None, args, batches)
    r["gk16"] = measure("gptkit bf16 autocast", gptkit_model(args), gptkit_loss, torch.bfloat16, args, batches)
    r["gkdef"] = measure("gptkit default (gptkit train)", gptkit_model(args), gptkit_loss, bf16, args, batches)
    best_hf = max(r["hf32"], r["hf16"])
    print(f"\nratios: gptkit fp32 / transformers fp32 = {r['gk32'] / r['hf32']:.2f}x; "
          f"gptkit bf16 / transformers bf16 = {r['gk16'] / r['hf16']:.2f}x; "
          f"gptkit default / best transformers = {r['gkdef'] / best_hf:.2f}x (goal >= 1.3x)")


if __name__ == "__main__":
    main()
