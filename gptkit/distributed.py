"""Scale-out on PyTorch's own distributed engine: torchrun's environment, DDP or FSDP2, the
global batch, sharded checkpoints, and the speed figures (tokens/s, MFU) of a run.

Nothing here launches processes or moves bytes itself: torchrun starts the ranks (one per
device, on one node or on several joined by a c10d rendezvous) and the process group (NCCL on
GPUs, gloo on CPUs) does the communication.

The global batch of step `it` is batch_size x grad_accum x world_size sequences, and its row g
is the window drawn by a generator seeded by (seed, it, g). Rank r's micro-step m takes rows
[(m * world + r) * b, (m * world + r + 1) * b), b = batch_size. So a global batch is the same
set of windows whatever the world size: 2 ranks x micro-batch b compute the gradients of
1 rank x micro-batch 2b (to float rounding), and a run resumed on another number of ranks
continues exactly as long as batch_size x grad_accum x world_size is unchanged.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .errors import GptkitError

DCP_DIR = "dcp"  # the sharded (torch.distributed.checkpoint) model + optimizer state of an FSDP checkpoint


# ---------------------------------------------------------------------------- runtime

@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "single"  # single | ddp | fsdp
    owns_group: bool = False  # the process group was set up here (and is destroyed by shutdown)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when this process is a rank that torchrun started."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise GptkitError("RANK / WORLD_SIZE / LOCAL_RANK in the environment are not integers") from None


def setup_runtime(cfg: Any) -> Runtime:
    """Single process, or one rank of a torchrun job (found through torchrun's environment).

    --strategy auto is DDP under torchrun with more than one rank, else a single process;
    --strategy ddp / fsdp without torchrun run as a world of one (same code path, same files).
    """
    from .device import resolve_device
    requested = resolve_device(cfg.device)
    dev_type = requested.type
    if dev_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (what autocast leaves) on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    env = torchrun_env()
    strategy = cfg.strategy
    if env is not None and env[1] > 1 and strategy == "single":
        raise GptkitError(f"--strategy single under torchrun (WORLD_SIZE={env[1]}) would train {env[1]} "
                          "separate models into one directory; use --strategy ddp or fsdp")
    if strategy == "auto":
        strategy = "ddp" if env is not None and env[1] > 1 else "single"
    if strategy == "single":
        return Runtime(requested)
    rank, world, local = env if env is not None else (0, 1, 0)
    if dev_type == "cuda":
        if local >= torch.cuda.device_count():
            raise GptkitError(f"local rank {local} has no GPU: this node has {torch.cuda.device_count()}; "
                              "start at most that many processes per node (--nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device(dev_type)
    owns = not dist.is_initialized()
    if owns:
        backend = "cpu:gloo,cuda:nccl" if dev_type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=cfg.dist_timeout)
        if env is None:  # a world of one, no torchrun: an in-process store
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        else:
            dist.init_process_group(backend, timeout=timeout)
    elif dist.get_world_size() != world:
        raise GptkitError(f"a process group of {dist.get_world_size()} ranks is already set up, "
                          f"WORLD_SIZE says {world}")
    return Runtime(device, rank, world, local, strategy, owns)


def shutdown(rt: Runtime) -> None:
    if rt.owns_group and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def lost_rank_errors(rt: Runtime) -> Iterator[None]:
    """A collective that fails because another rank is gone becomes one clear line."""
    if rt.strategy == "single":
        yield
        return
    try:
        yield
    except GptkitError:
        raise
    except (dist.DistError, RuntimeError) as e:
        text = str(e)
        backend_failure = isinstance(e, dist.DistError) or any(
            s in text for s in ("gloo", "NCCL", "Connection closed", "Connection reset", "timed out", "Timeout"))
        if not backend_failure:
            raise
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0][:160]  # no "[file.cc:553] "
        raise GptkitError(f"rank {rt.rank} of {rt.world_size}: lost contact with the other ranks ({first}); "
                          "the job stops here - continue it with --resume from the last complete checkpoint"
                          ) from None


def any_rank(flag: bool, rt: Runtime) -> bool:
    """True on every rank when it is true on one (so that all ranks take the same branch)."""
    if rt.world_size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def global_mean(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """The mean of a per-rank scalar over all ranks, left on the device (no host sync)."""
    if rt.world_size > 1:
        t = t.detach().clone()
        dist.all_reduce(t)
        t = t / rt.world_size
    return t


def all_sum(t: torch.Tensor) -> None:
    """Sum a tensor over all ranks, in place."""
    dist.all_reduce(t)


def barrier(rt: Runtime) -> None:
    if rt.world_size > 1:
        dist.barrier()


def say(rt: Runtime, message: str) -> None:
    """A line of information on stderr, from rank 0 only."""
    if rt.is_main:
        print(f"gptkit: {message}", file=sys.stderr, flush=True)


def note(rt: Runtime, message: str) -> None:
    """A warning line on stderr, from rank 0 only."""
    if rt.is_main:
        print(f"gptkit: warning: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- wrapping

def wrap(model: torch.nn.Module, rt: Runtime, amp: torch.dtype | None, compile: bool) -> torch.nn.Module:
    """The module the training step calls: the model itself, DDP(model), or the model sharded
    in place by FSDP2 (each block, then the root, which owns the tied wte / lm_head weight).
    FSDP moves its shards to the device itself (a model too big for one device never is whole
    on it); the others move the model first."""
    if rt.strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        mesh = init_device_mesh(rt.device.type, (rt.world_size,))
        # bf16 compute and gathers, fp32 master weights and gradient reductions (fp16: autocast only).
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if amp == torch.bfloat16 else MixedPrecisionPolicy()
        blocks = list(model.transformer.h)
        for i, block in enumerate(blocks):
            if compile:
                block.compile()
            # the last block's parameters are needed again at once by the backward pass
            fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(blocks) - 1)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        return model
    model.to(rt.device)
    runner: torch.nn.Module = model
    if rt.strategy == "ddp":
        runner = DDP(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
                     gradient_as_bucket_view=True)  # gradients live in the all-reduce buckets: no copy
    if compile:
        runner = torch.compile(runner)
    return runner


def grad_sync(runner: torch.nn.Module, last_micro: bool) -> contextlib.AbstractContextManager:
    """DDP all-reduces gradients once per step, on the last micro-step, not once per micro-batch.
    (FSDP reduce-scatters every micro-step: its point is memory, and skipping that would keep
    whole unsharded gradients.)"""
    ddp = getattr(runner, "_orig_mod", runner)  # under torch.compile
    if isinstance(ddp, DDP) and not last_micro:
        return ddp.no_sync()
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------- checkpoints

def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(**kw)


def save_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Every rank writes its own shards of the model and optimizer state (torch.distributed.checkpoint)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(directory))


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Read a sharded checkpoint into this rank's shards; any world size (DCP reshards on load),
    and into an unsharded model too."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    if not (directory / ".metadata").is_file():
        raise GptkitError(f"{directory}: not a complete sharded checkpoint (.metadata is missing)")
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(directory), no_dist=not dist.is_initialized())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model state on rank 0's CPU (empty on the other ranks); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    return get_model_state_dict(model, options=_options(full_state_dict=True, cpu_offload=True))


def load_full_into_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           weights: dict[str, torch.Tensor], optim_state: dict[str, Any]) -> None:
    """A single-process / DDP checkpoint (whole weights, optimizer.state_dict() keyed by index)
    into an FSDP-sharded model and its optimizer."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
    weights = dict(weights)
    if getattr(model.config, "tie_word_embeddings", True) or "lm_head.weight" not in weights:
        weights["lm_head.weight"] = weights["transformer.wte.weight"]
    set_model_state_dict(model, weights, options=_options(full_state_dict=True))
    names = {id(p): n for n, p in model.named_parameters()}
    saved_groups = optim_state["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups) or any(
            len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, optimizer.param_groups)):
        raise GptkitError("the checkpoint's optimizer state does not match this model's parameters")
    index_to_name = {i: names[id(p)] for s, g in zip(saved_groups, optimizer.param_groups)
                     for i, p in zip(s["params"], g["params"])}
    canonical = {"state": {index_to_name[i]: st for i, st in optim_state["state"].items()},
                 "param_groups": [{**s, "params": [index_to_name[i] for i in s["params"]]} for s in saved_groups]}
    set_optimizer_state_dict(model, optimizer, canonical, options=_options(full_state_dict=True))
