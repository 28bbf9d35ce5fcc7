"""Several processes, one training run: the process group behind ``torchrun ... -m segapp train``.

torchrun starts one process per GPU (or per CPU slot) on each node and tells each one its place in
environment variables: ``RANK`` (0..WORLD_SIZE-1 over all nodes), ``WORLD_SIZE``, ``LOCAL_RANK`` (its
index on this node), ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (from the rendezvous).
:func:`init` joins the group they describe: NCCL when the run is on CUDA (rank -> ``cuda:LOCAL_RANK``),
gloo on the CPU. Without those variables (a plain ``segapp train``) nothing here does anything:
``world()`` is 1, ``is_main()`` is True, ``barrier()`` returns at once, :func:`on_main` just calls,
:func:`wrap` returns the model as it is, so a one-process run is exactly what it was before.

What makes N processes train the very net one process would with the same global batch:

* data: every rank draws the same global shuffle of the epoch (the one-process DataLoader's
  ``randperm``, from the same seeded generator), cut to whole global batches, and keeps every
  ``world()``-th index from its rank (:func:`shard_indices`), so global batch k is split over the
  ranks, each holding ``batch / world()`` of its images;
* BatchNorm: statistics over the global batch (:func:`wrap` converts to ``torch.nn.SyncBatchNorm``
  on CUDA, :class:`SyncBatchNormCPU` on the CPU, where torch's has no kernels);
* loss: computed from sums over the global batch (:func:`all_reduce_sum`, differentiable), see
  :func:`segapp.train_loop.global_batch_loss`; DDP averages the gradients.
"""

from __future__ import annotations

import atexit
import datetime
import gc
import os

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from .classes import SegappError


def launched() -> bool:
    """True in a process torchrun started (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world() -> int:
    """Processes in the run (1 when not under torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's place in the run, 0..world()-1 (0 when not under torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that prints, validates and writes files."""
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Joins torchrun's process group (once; no-op when not launched by torchrun). Returns the device this rank
    trains on: ``cuda:LOCAL_RANK`` for a CUDA run (backend NCCL), ``device`` itself on the CPU (backend gloo)."""
    if not launched():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if device.type not in ("cuda", "cpu"):
        raise SegappError(f"--device {device}: training under torchrun runs on cuda (NCCL) or cpu (gloo)")
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if device.index is not None and local_world > 1:
            raise SegappError(f"--device {device} names one GPU, but torchrun started {local_world} processes on "
                              "this node; leave --device at auto (or cuda): rank LOCAL_RANK uses cuda:LOCAL_RANK")
        if device.index is None and local_world > gpus:
            raise SegappError(f"torchrun started {local_world} processes on this node but only {gpus} CUDA GPUs are "
                              f"visible; use --nproc_per_node {gpus} (or --device cpu)")
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        atexit.register(cleanup)
    return device


def cleanup() -> None:
    """Leaves the process group (idempotent; also run at exit).

    Every rank first waits for the others (rank 0 still runs the test evaluation when the rest are done):
    tearing gloo down while a peer is still talking aborted the process ("terminate called without an
    active exception"). A peer that died is waited for one minute at most.

    Garbage is collected first: DDP's reducer sits in reference cycles and holds the process group, and
    ``destroy_process_group`` only drops the registry's references. Left to the interpreter's exit, the group and
    its gloo threads were torn down during finalization, where a thread still joinable aborts the process.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # free unreachable DDP wrappers (and their reducers' hold on the group) while all is alive
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
            else:
                dist.barrier()
        except RuntimeError:
            pass
        dist.destroy_process_group()


def barrier() -> None:
    """Waits until every rank gets here (no-op in one process)."""
    if world() > 1:
        dist.barrier()


def broadcast(obj):
    """Rank 0's ``obj`` (any picklable object, tensors included) on every rank."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run on rank 0 alone, its result sent to every rank. When it fails, rank 0 raises the
    error itself and every other rank a one-line :class:`SegappError` saying so, instead of waiting for ever."""
    if world() == 1:
        return fn(*args, **kwargs)
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            broadcast(("error", " ".join(str(e).splitlines()) or type(e).__name__))
            raise
        return broadcast(("ok", result))[1]
    kind, value = broadcast(None)
    if kind == "error":
        raise SegappError(f"rank 0 stopped: {value}")
    return value


def per_rank_batch(batch: int) -> int:
    """Images each rank takes of a global batch of ``batch``; refuses a batch that does not divide evenly."""
    if batch % world():
        raise SegappError(f"--batch-size {batch} is the global batch and must divide evenly over the {world()} "
                          f"processes torchrun started; use a multiple of {world()}")
    return batch // world()


def shard_indices(n: int, generator: torch.Generator, batch: int = 1) -> list[int]:
    """This rank's indices for one epoch of ``n`` items: the global shuffle (``torch.randperm(n, generator)``, what a
    one-process ``DataLoader(shuffle=True, generator=generator)`` draws), cut to whole global batches of ``batch``,
    then every ``world()``-th index starting at ``rank()``. Consecutive runs of ``batch // world()`` of them are this
    rank's part of global batch 0, 1, 2, ...; the ranks' shards are disjoint and together make every batch."""
    order = torch.randperm(n, generator=generator)
    order = order[: n // batch * batch]
    return order[rank()::world()].tolist()


class ShardSampler(Sampler[int]):
    """:func:`shard_indices` as a DataLoader sampler. It draws the permutation when iterated, after the DataLoader
    has drawn its base seed from the same generator, just as ``RandomSampler`` does, so the global order is the
    one-process order."""

    def __init__(self, n: int, generator: torch.Generator, batch: int):
        self.n, self.generator, self.batch = n, generator, batch

    def __len__(self) -> int:
        return self.n // self.batch * self.batch // world()

    def __iter__(self):
        return iter(shard_indices(self.n, self.generator, self.batch))


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks of the gradients (each rank's input feeds every rank's
    result)."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks, differentiably (``t`` itself in one process)."""
    return _AllReduceSum.apply(t) if world() > 1 else t


class SyncBatchNormCPU(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are over the global batch (every rank's images), for CPU runs:
    ``torch.nn.SyncBatchNorm`` only runs on GPUs. Mean and variance come from differentiable all-reduced sums (two
    passes; autograd gives the cross-rank gradient terms), running statistics are updated as BatchNorm2d does; in
    eval mode, or in one process, it is BatchNorm2d. Same parameters, buffers and state-dict keys as the layer it
    replaces. In float64 it equals one process's BatchNorm2d to ~1e-13; in float32 its gradients are closer to the
    float64 values than torch's own CPU kernel in channels_last (whose backward is only good to ~1e-4)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world() > 1):
            return super().forward(x)
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in float32 or better
        sums = all_reduce_sum(torch.cat([xf.sum(dims), xf.new_tensor([x.numel() / x.shape[1]])]))
        mean, count = sums[:-1] / sums[-1], sums[-1]
        centred = xf - mean.view(shape)
        var = all_reduce_sum(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (count / (count - 1).clamp_min(1)), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        y = y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y
        return y.to(x.dtype)


def convert_sync_batchnorm_cpu(module: torch.nn.Module) -> torch.nn.Module:
    """Replaces every BatchNorm2d in ``module`` by a :class:`SyncBatchNormCPU` sharing its parameters and buffers
    (an optimiser built on the module keeps working)."""
    for name, child in module.named_children():
        if type(child) is torch.nn.BatchNorm2d:
            sync = SyncBatchNormCPU(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            if child.affine:
                sync.weight, sync.bias = child.weight, child.bias
            if child.track_running_stats:
                sync.running_mean, sync.running_var = child.running_mean, child.running_var
                sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm_cpu(child)
    return module


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` for training in this run: as it is in one process; else its BatchNorms synchronised (in place, so
    ``model`` itself stays the net to validate and save) and wrapped in DistributedDataParallel, which starts every
    rank from rank 0's weights and averages the gradients."""
    if world() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert synced is model  # the top module is no BatchNorm: its children are replaced in place
        return DistributedDataParallel(model, device_ids=[device])
    return DistributedDataParallel(convert_sync_batchnorm_cpu(model))
