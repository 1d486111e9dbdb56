"""TrainConfig: every training option, with its help text (the CLI's one source of truth).
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import Field, dataclass, field, fields, make_dataclass
from typing import Any, ClassVar

from ..errors import GptkitError, OptionError
from ..model import MLPS, PRESETS, GPTConfig, model_options, preset_config


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _choice(default: Any, choices: tuple[str, ...], help: str) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "cli": {"choices": choices}})


@dataclass
class _RunOptions:
    # data and output
    data: str | None = _opt(None, "a prepared data directory; None: the embedded stdlib corpus")
    out: str = _opt("runs/stdlib", "the run directory to write (model, checkpoints/, metrics.jsonl, loss.png)")
    preset: str = _opt("mini", "model size: tiny, mini, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl; or a "
                               "budget recipe, cpu-4min, cpu-10min or gpu-1h (model, optimizer, schedule and time budget "
                               "tuned together; any flag overrides its part)")
    init_from: str | None = _opt(None, "a model directory or Hub id to continue training from")


def _model_option(f: Field, hint: Any) -> tuple[str, Any, Any]:
    """A GPTConfig field as a training option: its name, type, help, choices and older names, with
    None (not given) for its default: the preset's value where a preset sets it, else GPTConfig's."""
    shown = "the preset's" if any(f.name in shape for shape in PRESETS.values()) else \
        "none" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
    cli: dict[str, Any] = {"default_text": shown}
    if "choices" in f.metadata:
        cli["choices"] = f.metadata["choices"]
    return f.name, hint | None, field(default=None, metadata={**f.metadata, "cli": cli})


# the model's options: GPTConfig's fields, one for one (see GPTConfig for each one's role)
_ModelOptions = make_dataclass("_ModelOptions", [_model_option(f, typing.get_type_hints(GPTConfig)[f.name])
                                                  for f in model_options()], bases=(_RunOptions,))


@dataclass
class TrainConfig(_ModelOptions):
    """Every training option. The model's are GPTConfig's fields under their own names (None: the
    preset's value, else GPTConfig's default); model_config(cfg, ...) makes the GPTConfig."""
    _recipe_applied: ClassVar[bool] = False  # set per instance once the budget recipe is in
    _from_recipe: ClassVar[frozenset[str]] = frozenset()  # the options the recipe filled, not the user
    mlp: str | None = _choice(None, tuple(MLPS), "shorthand for --activation-function and --gated-mlp: gelu "
                              "(GPT-2's), relu2 (ReLU squared) or swiglu (gated silu, 8/3 x n_embd wide)")
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
        need(self.lr_decay_iters is None or self.lr_decay_iters >= 1, "lr_decay_iters",
             f"must be >= 1, got {self.lr_decay_iters}")
        need(self.lr is None or self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        need(self.min_lr is None or self.min_lr >= 0, "min_lr", f"must be >= 0, got {self.min_lr}")
        need(self.warmup_iters >= 0, "warmup_iters", f"must be >= 0, got {self.warmup_iters}")
        need(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        need(0 <= self.beta1 < 1, "beta1", f"must be in [0, 1), got {self.beta1}")
        need(0 <= self.beta2 < 1, "beta2", f"must be in [0, 1), got {self.beta2}")
        need(self.grad_clip >= 0, "grad_clip", f"must be >= 0 (0: off), got {self.grad_clip}")
        need(self.max_minutes is None or self.max_minutes > 0, "max_minutes", f"must be > 0, got {self.max_minutes}")
        need(self.dtype in DTYPE_CHOICES, "dtype", f"{self.dtype!r} is not one of {', '.join(DTYPE_CHOICES)}")
        need(self.strategy in STRATEGIES, "strategy", f"{self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        need(self.dist_timeout > 0, "dist_timeout", f"must be > 0 seconds, got {self.dist_timeout}")
        need(self.init_from is not None or self.preset in PRESETS or self.preset in RECIPES, "preset",
             f"{self.preset!r}: unknown preset (choose from {', '.join([*PRESETS, *RECIPES])})")
        for f in fields(self):
            v, choices = getattr(self, f.name), f.metadata.get("choices", (getattr(self, f.name),))
            if v is not None and v not in choices:
                raise GptkitError(f"unknown --{f.name.replace('_', '-')} {v!r} (choose from {', '.join(choices)})")
        need(0 < self.cooldown <= 1, "cooldown", f"must be in (0, 1], got {self.cooldown}")
        need(self.muon_lr is None or self.muon_lr > 0, "muon_lr", f"must be > 0, got {self.muon_lr}")
        need(self.muon_lr is None or self.optimizer == "muon", "muon_lr", "is given but --optimizer is not muon")
        need(not (self.optimizer == "muon" and self.strategy == "fsdp"), "optimizer",
             "muon does not run under --strategy fsdp (Muon needs whole matrices; use ddp)")
        self._check_model()
        from ..device import resolve_device
        resolve_device(self.device)

    def model_given(self) -> dict[str, Any]:
        """The model options given (GPTConfig's names; --mlp spelled out), over what the preset leaves."""
        given = {f.name: getattr(self, f.name) for f in model_options() if getattr(self, f.name) is not None}
        return {**MLPS.get(self.mlp or "", {}), **given}

    def model_flags(self) -> set[str]:
        """The model options the user set (flags, a config file, the API; --mlp as the fields it
        sets), not those a budget recipe filled in: what a --resume compares with the run."""
        given = {f.name for f in model_options() if getattr(self, f.name) is not None} - self._from_recipe
        return given | set(MLPS.get(self.mlp or "", {}))

    def _check_model(self) -> None:
        """The model options, checked by GPTConfig itself (each error names its option); with
        --init-from, which takes the model from the directory it loads, only training ones."""
        for name, value in MLPS.get(self.mlp or "", {}).items():
            if getattr(self, name) not in (None, value):
                raise OptionError("mlp", f"{self.mlp} is {name} {value!r}, but --{name.replace('_', '-')} is "
                                  f"{getattr(self, name)!r}: give one of them")
        if self.init_from is not None:
            fixed = [f.name for f in fields(self) if f.metadata.get("role") in ("shape", "init")
                     and getattr(self, f.name) is not None] + (["mlp"] if self.mlp else [])
            if fixed:
                raise OptionError(fixed[0], "changes the architecture, which --init-from takes from the model it "
                                  "loads")
        model_config(self, 1, None)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        d = _old_names(cls, d, source)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GptkitError(f"{source}: unknown training option(s) {', '.join(unknown)}")
        preset = d.get("preset", "")
        recipe = RECIPES.get(preset, {}) if isinstance(preset, str) else {}
        filled = recipe_under(recipe, d)
        cfg = cls(**{**filled, **d})  # a recipe's values under the ones given
        cfg._recipe_applied, cfg._from_recipe = True, frozenset(filled)
        return cfg

    def apply_recipe(self) -> TrainConfig:
        """A budget recipe (--preset cpu-10min, ...) fills the options still at their defaults
        (TrainConfig.from_dict already put it under the given values)."""
        if self.preset in RECIPES and not getattr(self, "_recipe_applied", False):
            given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != _default(f.name)}
            filled = recipe_under(RECIPES[self.preset], given)
            for k, v in filled.items():
                setattr(self, k, v)
            self._from_recipe = frozenset(filled)
        self._recipe_applied = True
        return self


def recipe_under(recipe: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The recipe's values that the options given leave standing: each given option overrides its
    own part, and a part the recipe derived from a given option yields to it too (its MLP to --mlp). Its muon_lr is
    Muon's (gone under --optimizer adamw); its n_positions grows to a longer --block-size."""
    out = {k: v for k, v in recipe.items() if k not in given}
    if given.get("mlp") is not None:  # the shorthand given: the recipe's MLP yields to it
        for name in MLPS[given["mlp"]] if given["mlp"] in MLPS else ():
            out.pop(name, None)
    if given.get("optimizer", out.get("optimizer")) != "muon":
        out.pop("muon_lr", None)
    block = given.get("block_size")
    if isinstance(block, int) and isinstance(out.get("n_positions"), int) and block > out["n_positions"]:
        out["n_positions"] = block
    return out


def model_config(cfg: TrainConfig, vocab_size: int, eot_id: int | None) -> GPTConfig:
    """The GPTConfig the options make for a vocabulary (the tokenizer's size and end-of-text id):
    the preset's shape (a budget recipe's is in the options already), then the options given."""
    base = cfg.preset if cfg.preset in PRESETS else "mini"
    return preset_config(base, **cfg.model_given(), vocab_size=vocab_size, eos_token_id=eot_id, bos_token_id=eot_id)


def _old_names(cls: type, d: dict[str, Any], source: str) -> dict[str, Any]:
    """Options under their older names (a field's `aliases`: tie_embeddings, ...) under today's."""
    d = dict(d)
    for f in fields(cls):
        for alias in f.metadata.get("aliases", ()):
            if alias in d:
                if f.name in d and d[f.name] != d[alias]:
                    raise GptkitError(f"{source}: {alias} (the older name of {f.name}) and {f.name} are both given")
                d[f.name] = d.pop(alias)
    return d


def _default(name: str) -> Any:
    return TrainConfig.__dataclass_fields__[name].default


# Budget recipes: the whole training setup for a time budget, chosen by measurement (README,
# "Budget recipes"; benchmarks/budget.py). Options given explicitly override their part.
RECIPES: dict[str, dict[str, Any]] = {
    # measured on ~1 MB of English prose, bytes tokenizer, 2 CPU cores (README, "Budget recipes")
    "cpu-10min": dict(n_layer=6, n_head=4, n_embd=128, n_positions=128, block_size=128, batch_size=16,
                      position_embedding="rope", norm="rmsnorm", activation_function="silu", gated_mlp=True, bias=False,
                      optimizer="muon", muon_lr=0.02, lr=3e-3, warmup_iters=50, schedule="wsd", cooldown=0.4,
                      max_minutes=10.0, max_iters=1_000_000_000, eval_interval=500, eval_iters=10),
    # make run's budget: its corpus (the standard library, BPE 4096) and model size, modern options
    "cpu-4min": dict(n_layer=4, n_head=4, n_embd=256, n_positions=512, block_size=256, batch_size=16,
                     position_embedding="rope", norm="rmsnorm", activation_function="silu", gated_mlp=True, bias=False,
                     optimizer="muon", muon_lr=0.02, lr=3e-3, warmup_iters=30, schedule="wsd", cooldown=0.4,
                     max_minutes=4.0, max_iters=1_000_000_000, eval_interval=100, eval_iters=20),
    "gpu-1h": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, block_size=1024, batch_size=32,
                   position_embedding="rope", norm="rmsnorm", activation_function="silu", gated_mlp=True, bias=False, qk_norm=True,
                   tie_word_embeddings=False, zero_init=True, optimizer="muon", muon_lr=0.02, lr=3e-3,
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
    elif any(typing.get_origin(t) is dict for t in allowed):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        want = next((typing.get_origin(t) or t).__name__ for t in allowed if t is not type(None))
        raise OptionError(name, f"must be {'an' if want == 'int' else 'a'} {want}, got {value!r}")
