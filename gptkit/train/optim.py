"""Optimizers: AdamW (GPT-2's), or Muon for the hidden 2-D weights with AdamW for the rest.

Muon (gptkit.train.muon: torch.optim.Muon's maths, its Newton-Schulz iteration in the precision
the host computes fastest) orthogonalises each matrix's momentum; it is meant for the hidden
layers' weight matrices only. Embeddings, the output layer, norms and
biases stay with AdamW, as in modded-nanogpt. Both are wrapped in one Optimizer, so the trainer,
checkpoints and lr schedule see a single object with one state dict; every param group keeps its
peak lr (`gptkit_peaks`) and the schedule scales all of them by the same factor.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import GptkitError
from .muon import Muon

OPTIMIZERS = ("adamw", "muon")


def _is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    return p.dim() == 2 and ".h." in f".{name}" and not name.startswith("lm_head")


def param_groups(model: torch.nn.Module, weight_decay: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(matrices that decay, the rest): biases, norms and embeddings do not decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.dim() >= 2 and "wte" not in name and "wpe" not in name
        (decay if is_matrix else no_decay).append(p)
    return decay, no_decay


class MuonAdamW:
    """Muon on the hidden matrices, AdamW on everything else, behind one Optimizer interface."""

    def __init__(self, model: torch.nn.Module, lr: float, muon_lr: float | None, weight_decay: float,
                 betas: tuple[float, float], momentum: float = 0.95, fused: bool = False,
                 ns_dtype: torch.dtype = torch.bfloat16) -> None:
        muon_params, adam_decay, adam_rest = [], [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if _is_hidden_matrix(name, p):
                muon_params.append(p)
            elif p.dim() >= 2 and "wte" not in name and "wpe" not in name:
                adam_decay.append(p)
            else:
                adam_rest.append(p)
        if not muon_params:
            raise GptkitError("--optimizer muon: the model has no hidden weight matrices for Muon")
        # "match_rms_adamw" scales Muon's update to AdamW's RMS, so it shares AdamW's lr; an
        # explicit muon_lr uses Keller Jordan's original scaling (lr around 0.02).
        adjust = "match_rms_adamw" if muon_lr is None else "original"
        self.muon = Muon(muon_params, lr=muon_lr or lr, weight_decay=weight_decay, momentum=momentum,
                         adjust_lr_fn=adjust, ns_dtype=ns_dtype)
        groups = [{"params": adam_decay, "weight_decay": weight_decay},
                  {"params": adam_rest, "weight_decay": 0.0}]
        self.adam = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, fused=fused)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.muon.param_groups + self.adam.param_groups

    @property
    def state(self) -> dict[Any, Any]:
        return {**self.muon.state, **self.adam.state}

    def step(self) -> None:
        self.muon.step()
        self.adam.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adam.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adam": self.adam.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adam"}:
            raise GptkitError("the checkpoint's optimizer state is not Muon+AdamW's (was it trained with "
                              "--optimizer adamw? resume with the same --optimizer)")
        self.muon.load_state_dict(state_dict["muon"])
        self.adam.load_state_dict(state_dict["adam"])


def make_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float,
                   betas: tuple[float, float], device: torch.device, muon_lr: float | None = None,
                   muon_dtype: str = "bfloat16") -> Any:
    """AdamW over the whole model (matrices decay; biases, norms, embeddings do not), or Muon+AdamW
    (Newton-Schulz in `muon_dtype`, "float32" or "bfloat16": see gptkit.device.muon_dtype)."""
    fused = device.type == "cuda"
    if name == "adamw":
        decay, no_decay = param_groups(model, weight_decay)
        opt: Any = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, fused=fused)
    elif name == "muon":
        if muon_dtype not in ("float32", "bfloat16"):
            raise GptkitError(f"muon_dtype must be float32 or bfloat16 here, got {muon_dtype!r}")
        opt = MuonAdamW(model, lr, muon_lr, weight_decay, betas, fused=fused, ns_dtype=getattr(torch, muon_dtype))
    else:
        raise GptkitError(f"unknown --optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")
    opt.gptkit_peaks = [g["lr"] for g in opt.param_groups]  # each group's peak, kept across load_state_dict
    return opt


def set_lr(optimizer: Any, lr: float, peak: float) -> None:
    """Scale every group's own peak by lr / peak (one schedule for all groups)."""
    factor = lr / peak
    for g, group_peak in zip(optimizer.param_groups, optimizer.gptkit_peaks):
        g["lr"] = group_peak * factor
