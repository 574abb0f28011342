"""Process groups and parallelism applied to a plain ``Olmo`` from outside (the model has no
distributed code, as in torchtitan).

Under ``torchrun --nproc_per_node=N`` the same ``olmoflow pretrain`` command initialises a process
group (NCCL on GPU, gloo on CPU) and shards the model with FSDP2: ``fully_shard`` on every block,
then on the root. Activation checkpointing and ``torch.compile`` are applied per block in place,
so parameter names (and therefore checkpoints) are the same with and without them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "abort",
    "all_reduce_sum",
    "apply_activation_checkpointing",
    "apply_compile",
    "apply_fsdp",
    "barrier",
    "broadcast_object",
    "init_distributed",
    "is_distributed",
    "peer_failure",
    "rank",
    "shutdown",
    "world_size",
]


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if launched by torchrun (WORLD_SIZE > 1), else single process."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    ws = int(os.environ.get("WORLD_SIZE", 1))
    if ws > 1 and not is_distributed():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    return DistInfo(rank(), world_size(), local_rank, dev)


def shutdown() -> None:
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def abort() -> None:
    """Leave the process group after an error on this rank, without a barrier: the other ranks may
    be waiting inside a collective this rank will never join. This process then exits with its
    one-line error, and torchrun stops the others (instead of every rank hanging until the
    collective timeout)."""
    if is_distributed():
        dist.destroy_process_group()


def peer_failure(e: BaseException) -> bool:
    """Whether ``e`` is a collective failing because another rank died (its own error says why)."""
    if not isinstance(e, RuntimeError) or not is_distributed():
        return False
    msg = str(e)
    return isinstance(e, dist.DistNetworkError) or "closed by peer" in msg or "reset by peer" in msg


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (identity when single process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (identity when single process)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def apply_fsdp(model: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """FSDP2: shard every block, then the root (embedding, final norm, head)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
    kwargs = {"mesh": mesh}
    if mp is not None:
        kwargs["mp_policy"] = mp
    for block in model.blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations in backward (non-reentrant); names unchanged."""
    from torch.utils.checkpoint import checkpoint

    for block in model.blocks:
        inner = block.forward

        def forward(*args, _inner=inner, **kwargs):
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = forward


def apply_compile(model: nn.Module) -> None:
    """``torch.compile`` each block in place (keeps parameter names)."""
    for block in model.blocks:
        block.compile()
