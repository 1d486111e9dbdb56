"""TrainConfig: every training option, with its help text (the CLI's one source of truth).
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import GptkitError, OptionError
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
    n_kv_head: int | None = _opt(None, "key/value heads per block, each shared by n_head / n_kv_head query heads "
                                       "(grouped-query attention; none: n_head, multi-head; saved as Llama)")
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
    muon_dtype: str = _choice("auto", ("auto", "float32", "bfloat16"),
                              "precision of Muon's Newton-Schulz iteration (auto: bfloat16 where the host computes it "
                              "natively, measured as --dtype auto does; float32 where bf16 is emulated)")
    weight_decay: float = _opt(0.1, "AdamW weight decay of the weight matrices")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.95, "AdamW beta2")
    grad_clip: float = _opt(1.0, "clip the global gradient norm to this (0: off)")
    # evaluation, logging, checkpoints
    eval_interval: int = _opt(100, "steps between evaluations, each followed by a checkpoint")
    eval_iters: int = _opt(20, "val batches per evaluation")
    eval_tasks: str | None = _opt(None, "multiple-choice task files (JSONL of context, choices, label; comma-separated) "
                                        "scored at every evaluation")
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
        """Every option checked before any work starts: a bad one is an OptionError naming it."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])

        def need(ok: bool, option: str, msg: str) -> None:
            if not ok:
                raise OptionError(option, msg)
        for name in ("block_size", "batch_size", "grad_accum", "max_iters", "eval_interval", "eval_iters",
                     "log_interval"):
            need(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("n_layer", "n_head", "n_kv_head", "n_embd", "n_positions", "lr_decay_iters"):
            v = getattr(self, name)
            need(v is None or v >= 1, name, f"must be >= 1, got {v}")
        need(self.lr is None or self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        need(self.min_lr is None or self.min_lr >= 0, "min_lr", f"must be >= 0, got {self.min_lr}")
        need(self.warmup_iters >= 0, "warmup_iters", f"must be >= 0, got {self.warmup_iters}")
        need(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        need(0 <= self.beta1 < 1, "beta1", f"must be in [0, 1), got {self.beta1}")
        need(0 <= self.beta2 < 1, "beta2", f"must be in [0, 1), got {self.beta2}")
        need(self.grad_clip >= 0, "grad_clip", f"must be >= 0 (0: off), got {self.grad_clip}")
        need(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        need(self.max_minutes is None or self.max_minutes > 0, "max_minutes", f"must be > 0, got {self.max_minutes}")
        need(self.dtype in DTYPE_CHOICES, "dtype", f"{self.dtype!r} is not one of {', '.join(DTYPE_CHOICES)}")
        need(self.strategy in STRATEGIES, "strategy", f"{self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        need(self.dist_timeout > 0, "dist_timeout", f"must be > 0 seconds, got {self.dist_timeout}")
        need(self.init_from is not None or self.preset in PRESETS or self.preset in RECIPES, "preset",
             f"{self.preset!r}: unknown preset (choose from {', '.join([*PRESETS, *RECIPES])})")
        for f in fields(self):
            v, choices = getattr(self, f.name), f.metadata.get("choices", (getattr(self, f.name),))
            if v not in choices:
                raise GptkitError(f"unknown --{f.name.replace('_', '-')} {v!r} (choose from {', '.join(choices)})")
        need(self.rope_theta > 0, "rope_theta", f"must be > 0, got {self.rope_theta}")
        need(self.logit_softcap is None or self.logit_softcap > 0, "logit_softcap",
             f"must be > 0, got {self.logit_softcap}")
        need(0 < self.cooldown <= 1, "cooldown", f"must be in (0, 1], got {self.cooldown}")
        need(self.muon_lr is None or self.muon_lr > 0, "muon_lr", f"must be > 0, got {self.muon_lr}")
        need(self.muon_lr is None or self.optimizer == "muon", "muon_lr", "is given but --optimizer is not muon")
        need(not (self.optimizer == "muon" and self.strategy == "fsdp"), "optimizer",
             "muon does not run under --strategy fsdp (Muon needs whole matrices; use ddp)")
        if self.init_from is not None:
            changed = [n for n in MODEL_OPTIONS if getattr(self, n) != _default(n)]
            need(not changed, changed[0] if changed else "init_from",
                 "changes the architecture, which --init-from takes from the model it loads")
        else:
            shape = {**PRESETS.get(self.preset, {}), **RECIPES.get(self.preset, {})}
            n_embd, n_head = self.n_embd or shape["n_embd"], self.n_head or shape["n_head"]
            need(n_embd % n_head == 0, "n_head" if self.n_head else "n_embd",
                 f"{self.n_head or self.n_embd}: n_embd ({n_embd}) must be divisible by n_head ({n_head})")
            need(self.n_kv_head is None or n_head % self.n_kv_head == 0, "n_kv_head",
                 f"{self.n_kv_head}: n_head ({n_head}) must be a multiple of n_kv_head")
        from ..device import resolve_device
        resolve_device(self.device)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GptkitError(f"{source}: unknown training option(s) {', '.join(unknown)}")
        preset = d.get("preset", "")
        recipe = RECIPES.get(preset, {}) if isinstance(preset, str) else {}
        cfg = cls(**{**recipe_under(recipe, d), **d})  # a recipe's values under the ones given
        cfg._recipe_applied = True
        return cfg

    def apply_recipe(self) -> TrainConfig:
        """A budget recipe (--preset cpu-10min, ...) fills the options still at their defaults
        (TrainConfig.from_dict already put it under the given values)."""
        if self.preset in RECIPES and not getattr(self, "_recipe_applied", False):
            given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != _default(f.name)}
            for k, v in recipe_under(RECIPES[self.preset], given).items():
                setattr(self, k, v)
        self._recipe_applied = True
        return self


def recipe_under(recipe: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values that the options given leave standing: each given option overrides its
    own part, and a part the recipe derived from a given option yields to it too. Its muon_lr is
    Muon's (gone under --optimizer adamw); its n_positions grows to a longer --block-size."""
    out = {k: v for k, v in recipe.items() if k not in given}
    if given.get("optimizer", out.get("optimizer")) != "muon":
        out.pop("muon_lr", None)
    block = given.get("block_size")
    if isinstance(block, int) and isinstance(out.get("n_positions"), int) and block > out["n_positions"]:
        out["n_positions"] = block
    return out


MODEL_OPTIONS = ("n_kv_head", "position_embedding", "rope_theta", "norm", "mlp", "qk_norm", "tie_embeddings", "zero_init",
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


DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")
STRATEGIES = ("auto", "single", "ddp", "fsdp")


def _check_type(name: str, value: Any, annotation: Any) -> None:
    """A value of the declared type (from a config file, or the API): ints for int options, real
    finite numbers for float options, True/False for switches."""
    allowed = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    if value is None:
        if type(None) not in allowed:
            raise OptionError(name, "must be given (got None)")
        return
    if bool in allowed:
        ok = isinstance(value, bool)
    elif int in allowed:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif float in allowed:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise OptionError(name, f"must be a finite number, got {value}")
    elif str in allowed:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        want = next(t.__name__ for t in allowed if t is not type(None))
        raise OptionError(name, f"must be {'an' if want == 'int' else 'a'} {want}, got {value!r}")
