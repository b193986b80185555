"""Data-parallel training: torch ``DistributedDataParallel``, launched by ``torchrun``.

Run the same script in one process per GPU (or per CPU share)::

    torchrun --nproc_per_node=4 train.py

Every process calls ``fit`` on the same table. The fit template finds the process
group (initialising it from torchrun's environment when the script did not), puts
each process on its own GPU (``cuda:LOCAL_RANK``), and the one loop then trains
through :class:`DataParallel`:

- every rank draws the same batches of rows (the data order is seeded alike) and
  decodes and trains on its own share of each batch;
- ``DistributedDataParallel`` all-reduces the gradients; each rank's loss is
  weighted by its share of the batch, so one step is the step of one process on the
  whole batch;
- batch-norm layers (and the nets' ``TowerNorm``) normalise with the statistics of
  the whole batch, all-reduced (:func:`synced_norms`; torch's own ``SyncBatchNorm``
  refuses CPU tensors, so it could not run on the ``gloo`` backend);
- augmentation and dropout draw from per-rank seeds;
- rank 0 recalibrates, validates and writes checkpoints, then sends the epoch's
  record to the others, so that every rank's callbacks decide alike (early
  stopping, schedules); at the end every rank receives rank 0's weights and
  statistics, so every rank returns (and may pickle) the same fitted estimator.
"""

import contextlib
import inspect
import os
from contextvars import ContextVar

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DataParallel", "is_main_process", "local_device", "world"]

_SYNC = ContextVar("skmm_sync_norms", default=False)


def world():
    """``(rank, world size)``: ``(0, 1)`` outside a distributed run.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the default process
    group is initialised here when the script has not done it: ``gloo`` for CPU
    tensors and ``nccl`` for CUDA ones.
    """
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def is_main_process():
    """True outside a distributed run, and on rank 0 inside one."""
    return world()[0] == 0


def local_device(device, requested):
    """The device of this process: ``cuda:LOCAL_RANK`` when ``requested`` is "auto"
    or "cuda" in a distributed run on GPUs, else ``device`` as resolved."""
    if world()[1] == 1 or not str(device).startswith("cuda"):
        return device
    if isinstance(requested, str) and requested in ("auto", "cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    torch.cuda.set_device(device)
    return device


class _AllReduceSum(torch.autograd.Function):
    """A sum over the ranks that gradients flow through (the gradient of a sum is
    the sum of the gradients)."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _synced_forward(norm, x):
    """Batch norm in training with the statistics of the batch over every rank."""
    if not (norm.training and _SYNC.get()):
        return type(norm).forward(norm, x)
    dims = [0, *range(2, x.ndim)]
    shape = [1, -1] + [1] * (x.ndim - 2)
    x32 = x.float()
    count = x32.new_full((1,), x32.numel() / x32.shape[1])
    sums = _AllReduceSum.apply(torch.cat([x32.sum(dims), count]))
    n, mean = sums[-1], sums[:-1] / sums[-1]
    centred = x32 - mean.view(shape)
    # Two passes (the mean, then the squares about it) round as torch's kernels do.
    var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
    out = centred * torch.rsqrt(var + norm.eps).view(shape)
    if norm.affine:
        out = out * norm.weight.view(shape) + norm.bias.view(shape)
    if norm.track_running_stats:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            weight = (
                1.0 / norm.num_batches_tracked.float()
                if norm.momentum is None
                else norm.momentum
            )
            norm.running_mean.lerp_(mean, weight)
            norm.running_var.lerp_(var * n / (n - 1), weight)
    return out.to(x.dtype)


@contextlib.contextmanager
def synced_norms(module):
    """In the block, ``module``'s batch-norm layers in training mode normalise with
    the statistics of the whole batch, over every rank, within :meth:`DataParallel.
    step` (elsewhere, as a recalibration on rank 0 alone, they run as they are)."""
    norms = [
        m
        for m in module.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    for m in norms:
        m.forward = _synced_forward.__get__(m)
    try:
        yield
    finally:
        for m in norms:
            del m.forward


class _Steps(torch.nn.Module):
    """The estimator's training step as a module's forward, for DDP to wrap."""

    def __init__(self, estimator, module):
        super().__init__()
        self.module = module
        self.__dict__["estimator"] = estimator  # not a submodule

    def forward(self, data, batch, generator, context):
        return self.estimator._train_step(self.module, data, batch, generator, context)


def _count(batch):
    """The rows a batch covers: its length, or its first part's (the matcher's
    matching pairs)."""
    return len(batch[0] if isinstance(batch, tuple) else batch)


def _share(batch, rank, size):
    if isinstance(batch, tuple):
        return tuple(np.array_split(part, size)[rank] for part in batch)
    return np.array_split(batch, size)[rank]


class DataParallel:
    """The distributed side of one run of the loop; in one process, a pass-through.

    Parameters
    ----------
    estimator : TrainingMixin
        Whose ``_train_step`` runs.
    module : torch.nn.Module
        What trains.
    optimizer : torch.optim.Optimizer or None
        Built on ``module``'s trainable parameters (None: nothing trains).
    seed : int
        The seed of this run of the loop.
    """

    def __init__(self, estimator, module, optimizer, seed):
        self.estimator, self.module = estimator, module
        self.rank, self.size = world()
        # The data order: the same on every rank (each takes its share of a batch).
        self.order = torch.Generator().manual_seed(seed)
        if self.size == 1:
            self.steps, self._ddp = self.order, None
            return
        # Augmentation and dropout: per rank.
        rank_seed = (seed + 7919 * (self.rank + 1)) % 2**31
        self.steps = torch.Generator().manual_seed(rank_seed)
        torch.manual_seed(rank_seed)
        self._norms = synced_norms(module)
        self._norms.__enter__()
        self._ddp = None
        if optimizer is not None:
            from torch.nn.parallel import DistributedDataParallel

            # The statistics are all-reduced in the steps and rank 0's are sent at
            # the end: no broadcast of buffers at every step (the parameter's name
            # changed in torch 2.14).
            params = inspect.signature(DistributedDataParallel).parameters
            buffers = (
                {"forward_sync_buffers": False}
                if "forward_sync_buffers" in params
                else {"broadcast_buffers": False}
            )
            self._ddp = DistributedDataParallel(
                _Steps(estimator, module),
                # A net's tower head out of the loss (a weight of 0), a stage that
                # leaves the fused head out: parameters without a gradient in some
                # steps, which DDP must look for after each forward pass.
                find_unused_parameters=not estimator._every_parameter_used,
                **buffers,
            )

    def shard(self, batches, min_batch):
        """``(this rank's share, rows of the whole batch)`` for each batch.

        A batch too small to give each rank ``min_batch`` rows is left out, on every
        rank alike.
        """
        for batch in batches:
            count = _count(batch)
            if self.size == 1:
                yield batch, count
            elif count >= min_batch * self.size:
                yield _share(batch, self.rank, self.size), count

    def step(self, data, batch, context, count):
        """The estimator's ``_train_step`` on this rank's share of a batch of
        ``count`` rows; the objective weighted so that the all-reduced (averaged)
        gradient is the gradient of the whole batch's loss."""
        if self.size == 1:
            return self.estimator._train_step(
                self.module, data, batch, self.steps, context
            )
        token = _SYNC.set(True)
        try:
            if self._ddp is None:
                objective, loss, n = self.estimator._train_step(
                    self.module, data, batch, self.steps, context
                )
            else:
                objective, loss, n = self._ddp(data, batch, self.steps, context)
        finally:
            _SYNC.reset(token)
        return objective * (n * self.size / count), loss, n

    def mean(self, total, seen):
        """The mean recorded loss over every rank's rows (one read per epoch)."""
        if self.size > 1:
            # On the parameters' device: gloo reduces CPU tensors, nccl GPU ones.
            device = next(iter(self.module.parameters())).device
            sums = torch.tensor([0.0, float(seen)], dtype=torch.float64, device=device)
            sums[0] += torch.as_tensor(total, dtype=torch.float64, device=device)
            dist.all_reduce(sums)
            total, seen = sums.tolist()
        return float(total) / seen if seen else float("nan")

    def on_main(self, function):
        """``function()`` on rank 0, its result sent to every rank."""
        if self.size == 1:
            return function()
        payload = [None]
        if self.rank == 0:
            try:
                payload[0] = (True, function())
            except BaseException as exc:
                payload[0] = (False, f"{type(exc).__name__}: {exc}")
                dist.broadcast_object_list(payload, src=0)
                raise
        dist.broadcast_object_list(payload, src=0)
        ok, value = payload[0]
        if not ok:
            raise RuntimeError(f"rank 0 failed: {value}")
        return value

    def finish(self):
        """Every rank takes rank 0's weights and statistics; the norms run as before."""
        if self.size == 1:
            return
        self._norms.__exit__(None, None, None)
        self._ddp = None
        with torch.no_grad():
            for tensor in self.module.state_dict().values():
                dist.broadcast(tensor, src=0)
