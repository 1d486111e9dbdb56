"""The table of Hugging Face families: which one reads a config.json, and which one a model is saved in.

Each family (gpt2.py, llama.py, mistral.py, qwen2.py, qwen3.py) is one module with one adapter
object that maps config.json and the state dict both ways:

  cannot_hold(config) -> [reasons]     what of a GPTConfig this family's files cannot express
  keeps(name) -> bool                  False for file tensors that are no parameter (old buffers)
  config_to_hf(config, dtype) -> dict  config.json
  config_from_hf(d, source) -> GPTConfig, refusing by name what gptkit cannot compute exactly
  to_hf(state_dict, config) -> dict    our tensors under the family's names and shapes
  from_hf(state_dict, config, source)  theirs -> ours (consumes the dict: never two copies)

The loader asks `family_of(config.json)`; the saver (and the trainer, before its first step) asks
`family_for(config)`, the one function that decides a save layout or refuses.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch

from ..errors import GptkitError
from ..model import GPTConfig
from . import gpt2, llama, mistral, qwen2, qwen3


class Family(Protocol):
    model_type: str
    architecture: str
    title: str  # for messages: "GPT-2", "Llama", ...

    def cannot_hold(self, config: GPTConfig) -> list[str]: ...
    def keeps(self, name: str) -> bool: ...  # False: a file tensor that is no parameter (skipped unread)
    def config_to_hf(self, config: GPTConfig, dtype: torch.dtype) -> dict[str, Any]: ...
    def config_from_hf(self, d: dict[str, Any], source: str) -> GPTConfig: ...
    def to_hf(self, sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]: ...
    def from_hf(self, sd: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]: ...


# model_type -> adapter, in the order a save tries them (the first that holds the model wins)
FAMILIES: dict[str, Family] = {f.model_type: f for f in (gpt2.FAMILY, llama.FAMILY, qwen2.FAMILY, qwen3.FAMILY,
                                                         mistral.FAMILY)}


def family_of(d: Any, source: str) -> Family:
    """The adapter that reads this config.json, by its model_type (GPT-2 where it names none)."""
    if not isinstance(d, dict):
        raise GptkitError(f"{source}: expected a JSON object")
    archs = d.get("architectures") or []
    kind = d.get("model_type")
    if kind is None and (not archs or any(isinstance(a, str) and a.startswith("GPT2") for a in archs)):
        kind = "gpt2"  # very old GPT-2 configs name no model_type
    if kind not in FAMILIES:
        what = f"model_type {kind!r}" if kind else f"architectures {archs}"
        raise GptkitError(f"{source}: {what} is not an architecture gptkit loads (it loads "
                          f"{', '.join(FAMILIES)})")
    return FAMILIES[kind]


def family_for(config: GPTConfig) -> Family:
    """The family whose files express `config` exactly (tried in FAMILIES' order), or a GptkitError
    naming what none of them holds. The trainer calls it before its first step, so that no run
    trains for hours and then fails to save."""
    reasons = {}
    for family in FAMILIES.values():
        why = family.cannot_hold(config) or _not_kept(family, config)
        if not why:
            return family
        reasons[family.model_type] = why
    # the nearest family's reasons: GPT-2's for learned positions, else the rotary family missing least
    near = "gpt2" if config.position_embedding == "learned" else min(
        (k for k in reasons if k != "gpt2"),
        key=lambda k: (len(reasons[k]), getattr(FAMILIES[k], "qk_norm", False) != config.qk_norm))
    raise GptkitError("this model has no transformers equivalent, so it could not be saved: "
                      + "; ".join(reasons[near]))


def _not_kept(family: Family, config: GPTConfig) -> list[str]:
    """What of the model's architecture the family's config.json would not bring back: a GPTConfig
    field that an adapter does not write (a new option it does not know yet) is refused by name,
    never dropped on the way to the file."""
    back = family.config_from_hf(family.config_to_hf(config, torch.float32), f"the {family.title} config.json")
    ours, theirs = config.architecture(), back.architecture()
    return [f"{name} {ours[name]!r} ({family.title}'s config.json does not keep it)"
            for name in ours if theirs[name] != ours[name]]
