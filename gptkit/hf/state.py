"""Adopting a state dict under gptkit's names into a GPT: names and shapes checked first, so a
checkpoint whose tensors do not match its config.json fails in one line naming the tensor.
"""
from __future__ import annotations

import torch

from ..errors import GptkitError
from ..model import GPT


def load_state_into(model: GPT, sd: dict[str, torch.Tensor], source: str, assign: bool = True) -> None:
    """Check names and shapes, then load; assign=True adopts the tensors (no copy, meta models)."""
    tied = model.config.tie_word_embeddings
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight" or not tied}
    if tied:
        sd.pop("lm_head.weight", None)  # the embedding is the output layer
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GptkitError(f"{source}: missing tensor {missing[0]}{more} (config.json implies it)")
    if unexpected:
        raise GptkitError(f"{source}: unexpected tensor {unexpected[0]} (not part of a model of this config.json)")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise GptkitError(f"{source}: tensor {k} has shape {tuple(v.shape)}, config.json implies "
                              f"{tuple(expected[k].shape)}")
    model.load_state_dict(sd, strict=False, assign=assign)
    if tied:
        model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign
