"""TrainConfig: every training option, with its help text (the CLI's one source of truth).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import GptkitError
from ..model import PRESETS


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _choice(default: Any, choices: tuple[str, ...], help: str) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "cli": {"choices": choices}})


@dataclass
class TrainConfig:
    # data and output
    data: str | None = _opt(None, "a prepared data directory; None: the embedded stdlib corpus")
    out: str = _opt("runs/stdlib", "the run directory to write (model, checkpoints/, metrics.jsonl, loss.png)")
    preset: str = _opt("mini", "model size: tiny, mini, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl; or a "
                               "budget recipe, cpu-4min, cpu-10min or gpu-1h (model, optimizer, schedule and time budget "
                               "tuned together; any flag overrides its part)")
    init_from: str | None = _opt(None, "a model directory or Hub id to continue training from")
    # model overrides (None = the preset's value)
    n_layer: int | None = _opt(None, "transformer blocks (none: the preset's)")
    n_head: int | None = _opt(None, "attention heads per block (none: the preset's)")
    n_embd: int | None = _opt(None, "model width, in channels (none: the preset's)")
    n_positions: int | None = _opt(None, "the model's context length, in tokens (none: the preset's)")
    dropout: float = _opt(0.0, "dropout probability on attention, residual and embeddings")
    bias: bool = _opt(True, "biases in Linear and LayerNorm layers (GPT-2 has them)")
    position_embedding: str = _choice("learned", ("learned", "rope"),
                                      "learned (GPT-2) or rope (rotary, as Llama; needs --norm rmsnorm --mlp swiglu to be saved)")
    rope_theta: float = _opt(10000.0, "rotary embedding base")
    norm: str = _choice("layernorm", ("layernorm", "rmsnorm"), "LayerNorm (GPT-2) or RMSNorm")
    mlp: str = _choice("gelu", ("gelu", "relu2", "swiglu"),
                       "gelu (GPT-2), relu2 (ReLU squared) or swiglu (gated, 8/3 x n_embd wide)")
    qk_norm: bool = _opt(False, "RMSNorm of each head's queries and keys (saved as Qwen3; needs --no-bias)")
    tie_embeddings: bool = _opt(True, "the output layer is the token embedding (GPT-2); --no-tie-embeddings unties it")
    zero_init: bool = _opt(False, "start the output projections (and an untied output layer) at zero")
    logit_softcap: float | None = _opt(None, "cap logits at c * tanh(logits / c) (no transformers layout has it "
                                             "with these models: refused at save, so before training)")
    block_size: int = _opt(256, "training sequence length in tokens, <= the model's n_positions")
    # optimisation
    batch_size: int = _opt(16, "sequences per micro-batch, per rank")
    grad_accum: int = _opt(1, "micro-batches accumulated per optimizer step")
    max_iters: int = _opt(600, "optimizer steps in total")
    max_minutes: float | None = _opt(None, "stop (with an eval and a checkpoint) after this many minutes of wall time")
    lr: float | None = _opt(None, "peak learning rate (none: the preset's, 1e-4 with --init-from)")
    min_lr: float | None = _opt(None, "final learning rate of the cosine decay (none: lr / 10)")
    warmup_iters: int = _opt(30, "steps of linear learning-rate warm-up")
    lr_decay_iters: int | None = _opt(None, "step at which the cosine decay reaches min_lr (none: max_iters)")
    schedule: str = _choice("cosine", ("cosine", "wsd", "constant"),
                            "lr schedule: cosine, or wsd (warm-up, stable, linear decay over --cooldown)")
    cooldown: float = _opt(0.2, "wsd: fraction of the budget (steps or minutes) spent decaying to min_lr")
    extend: str = _choice("auto", ("auto", "keep", "stretch", "rewarm"),
                          "--resume with another budget: keep the old lr horizon, stretch it over the new one, "
                          "or rewarm (auto: stretch a wsd run still before its decay, else keep)")
    optimizer: str = _choice("adamw", ("adamw", "muon"), "adamw, or muon (Muon for the hidden matrices, AdamW for "
                             "embeddings, norms, biases and the output layer)")
    muon_lr: float | None = _opt(None, "Muon's peak lr with Keller Jordan's scaling (none: --lr, scaled to AdamW's "
                                       "update size)")
    weight_decay: float = _opt(0.1, "AdamW weight decay of the weight matrices")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.95, "AdamW beta2")
    grad_clip: float = _opt(1.0, "clip the global gradient norm to this (0: off)")
    # evaluation, logging, checkpoints
    eval_interval: int = _opt(100, "steps between evaluations, each followed by a checkpoint")
    eval_iters: int = _opt(20, "val batches per evaluation")
    log_interval: int = _opt(10, "steps between train-loss rows in metrics.jsonl")
    # runtime
    dtype: str = _opt("auto", "autocast precision: auto, bfloat16, float16, float32 (weights stay fp32; auto "
                              "on a CPU with bf16 times a few steps of each and keeps the faster)")
    tensorboard: bool = _opt(True, "write TensorBoard event files into <out>/tb")
    device: str = _opt("auto", "cpu, cuda, cuda:N (auto: cuda if available)")
    compile: bool = _opt(False, "torch.compile the model")
    seed: int = _opt(1337, "seed of the initialisation, the data rows and dropout")
    resume: bool = _opt(False, "continue the run in --out from its last checkpoint")
    strategy: str = _opt("auto", "auto, single, ddp, fsdp (auto: ddp under torchrun, else single)")
    dist_timeout: float = _opt(300.0, "seconds a collective waits for a missing rank before the job fails")
    progress: bool = _opt(True, "show a progress bar")

    def validate(self) -> None:
        checks = [
            (self.block_size >= 1, f"block_size must be >= 1, got {self.block_size}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.max_iters >= 1, f"max_iters must be >= 1, got {self.max_iters}"),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.warmup_iters >= 0, f"warmup_iters must be >= 0, got {self.warmup_iters}"),
            (self.eval_interval >= 1, f"eval_interval must be >= 1, got {self.eval_interval}"),
            (self.eval_iters >= 1, f"eval_iters must be >= 1, got {self.eval_iters}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}"),
            (self.max_minutes is None or self.max_minutes > 0, f"max_minutes must be > 0, got {self.max_minutes}"),
            (self.dtype in ("auto", "bfloat16", "float16", "float32"), f"unknown dtype {self.dtype!r}"),
            (self.strategy in ("auto", "single", "ddp", "fsdp"), f"unknown strategy {self.strategy!r}"),
            (self.dist_timeout > 0, f"dist_timeout must be > 0, got {self.dist_timeout}"),
            (self.init_from is not None or self.preset in PRESETS or self.preset in RECIPES,
             f"unknown preset {self.preset!r} (choose from {', '.join([*PRESETS, *RECIPES])})"),
        ]
        checks += [(getattr(self, name) in choices, (f"unknown --{name.replace('_', '-')} {getattr(self, name)!r} "
                    f"(choose from {', '.join(choices)})"))
                   for name, choices in ((f.name, f.metadata["choices"]) for f in fields(self)
                                         if "choices" in f.metadata)]
        finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        checks += [
            (finite(self.rope_theta) and self.rope_theta > 0, f"rope_theta must be a finite number > 0, got {self.rope_theta}"),
            (self.logit_softcap is None or (finite(self.logit_softcap) and self.logit_softcap > 0),
             f"logit_softcap must be a finite number > 0, got {self.logit_softcap}"),
            (finite(self.cooldown) and 0 < self.cooldown <= 1, f"cooldown must be in (0, 1], got {self.cooldown}"),
            (self.muon_lr is None or (finite(self.muon_lr) and self.muon_lr > 0),
             f"muon_lr must be a finite number > 0, got {self.muon_lr}"),
            (self.muon_lr is None or self.optimizer == "muon", "--muon-lr is given but --optimizer is not muon"),
            (not (self.optimizer == "muon" and self.strategy == "fsdp"),
             "--optimizer muon does not run under --strategy fsdp (Muon needs whole matrices; use ddp)"),
            (self.lr is None or finite(self.lr), f"lr must be a finite number, got {self.lr}"),
            (self.min_lr is None or (finite(self.min_lr) and self.min_lr >= 0),
             f"min_lr must be a finite number >= 0, got {self.min_lr}"),
            (self.max_minutes is None or finite(self.max_minutes), f"max_minutes must be finite, got {self.max_minutes}"),
        ]
        if self.init_from is not None:
            changed = [n for n in MODEL_OPTIONS if getattr(self, n) != _default(n)]
            checks.append((not changed, (f"--{changed[0].replace('_', '-') if changed else ''} changes the architecture, "
                                        "which --init-from takes from the model it loads")))
        for ok, msg in checks:
            if not ok:
                raise GptkitError(msg)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GptkitError(f"{source}: unknown training option(s) {', '.join(unknown)}")
        recipe = RECIPES.get(d.get("preset", ""))
        cfg = cls(**{**(recipe or {}), **d})  # a recipe's values under the ones given
        cfg._recipe_applied = True
        return cfg

    def apply_recipe(self) -> TrainConfig:
        """A budget recipe (--preset cpu-10min, ...) fills the options still at their defaults
        (TrainConfig.from_dict already put it under the given values)."""
        if self.preset in RECIPES and not getattr(self, "_recipe_applied", False):
            for k, v in RECIPES[self.preset].items():
                if getattr(self, k) == _default(k):
                    setattr(self, k, v)
        self._recipe_applied = True
        return self


MODEL_OPTIONS = ("position_embedding", "rope_theta", "norm", "mlp", "qk_norm", "tie_embeddings", "zero_init",
                 "logit_softcap")


def _default(name: str) -> Any:
    return TrainConfig.__dataclass_fields__[name].default


# Budget recipes: the whole training setup for a time budget, chosen by measurement (README,
# "Budget recipes"; benchmarks/budget.py). Options given explicitly override their part.
RECIPES: dict[str, dict[str, Any]] = {
    # measured on ~1 MB of English prose, bytes tokenizer, 2 CPU cores (README, "Budget recipes")
    "cpu-10min": dict(n_layer=6, n_head=4, n_embd=128, n_positions=128, block_size=128, batch_size=16,
                      position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                      optimizer="muon", muon_lr=0.02, lr=3e-3, warmup_iters=50, schedule="wsd", cooldown=0.4,
                      max_minutes=10.0, max_iters=1_000_000_000, eval_interval=500, eval_iters=10),
    # make run's budget: its corpus (the standard library, BPE 4096) and model size, modern options
    "cpu-4min": dict(n_layer=4, n_head=4, n_embd=256, n_positions=512, block_size=256, batch_size=16,
                     position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                     optimizer="muon", muon_lr=0.02, lr=3e-3, warmup_iters=30, schedule="wsd", cooldown=0.4,
                     max_minutes=4.0, max_iters=1_000_000_000, eval_interval=100, eval_iters=20),
    "gpu-1h": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, block_size=1024, batch_size=32,
                   position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False, qk_norm=True,
                   tie_embeddings=False, zero_init=True, optimizer="muon", muon_lr=0.02, lr=3e-3,
                   schedule="wsd", cooldown=0.4, warmup_iters=100, max_minutes=60.0, max_iters=1_000_000_000,
                   eval_interval=500, eval_iters=20),
}
