"""Data-parallel training on ``torch.distributed``: the process group, the launch, the shares.

``streamrec train NAME ... --nproc N`` re-launches the command through ``torch.distributed.run``
(torchrun's own engine): N worker processes per node, each a full copy of the model. Inside a
worker (torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` in the environment):

* :func:`init_from_env` joins the process group: ``gloo`` on the CPU, ``nccl`` on CUDA (one GPU
  per local rank);
* the trainer wraps the model in ``DistributedDataParallel`` through :class:`LossModule` (DDP's
  reducer all-reduces the gradients of whatever runs inside the wrapper's ``forward``);
* every rank draws the same global batches (the model's ``batches`` with the run's per-epoch
  seed) and keeps its share (:meth:`~streamrec.models.base.Model.split_batch`), weighted so that
  DDP's average of the ranks' gradients equals the gradient of the whole batch
  (:func:`rank_shares`): N processes with a global batch B take the same steps as one process
  with batch B;
* rank 0 alone writes the run directory; evaluation is sharded by users and gathered
  (:func:`shard`, :func:`gather_objects`).

See ``docs/distributed.md`` for several machines and GPUs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: the environment variable naming the folder where failed workers leave their one-line error
ERROR_DIR_ENV = "STREAMREC_WORKER_ERRORS"


class DistributedError(ValueError):
    """A distributed run could not start or a worker failed (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in the process group.

    rank / world_size: global; local_rank: on this node; device: the device this rank trains
    on; backend: ``gloo`` or ``nccl``.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Whether this rank writes (rank 0)."""
        return self.rank == 0


def in_worker() -> bool:
    """Whether this process was started by torchrun (its ``RANK`` and ``WORLD_SIZE`` are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(device: str | torch.device = "cpu") -> Dist:
    """Join the process group torchrun set up (env://): ``nccl`` when ``device`` is CUDA (this
    rank takes GPU ``LOCAL_RANK``), else ``gloo``. Idempotent."""
    import torch.distributed as tdist

    from streamrec.common import resolve_device

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "use at most one process per GPU (--nproc)")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    elif dev.type != "cpu":
        raise DistributedError(f"distributed training runs on cpu or cuda, not {dev.type}")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
    return Dist(tdist.get_rank(), tdist.get_world_size(), local_rank, dev, backend)


def current() -> Dist | None:
    """The process group this process belongs to, or None when it runs alone."""
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()):
        return None
    backend = str(tdist.get_backend())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else (
        torch.device("cpu"))
    return Dist(tdist.get_rank(), tdist.get_world_size(), local_rank, dev, backend)


def shutdown(wait: bool = True) -> None:
    """Leave the process group (if any). ``wait``: first wait for every rank to get here (the
    normal end: a rank that tears its connections down while another still writes its run made
    gloo abort that one at exit); False on an error path, where the others may never come."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        if wait:
            try:
                tdist.barrier()
            except RuntimeError:  # a peer is gone already (killed): nothing to wait for
                pass
        tdist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


# ============================================================================ the shares
class LossModule(nn.Module):
    """``forward(batch) = model.loss(batch)``: what DDP wraps, so that the loss (and every
    parameter it touches) runs inside the wrapper's forward, as DDP's reducer needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model.loss(batch)


def wrap(model: Any, dist: Dist) -> nn.Module:
    """``DistributedDataParallel(LossModule(model))`` on this rank's device.

    ``find_unused_parameters`` when the model declares that a step may leave parameters
    unused (``Model.steps_skip_parameters``, e.g. a GAN's discriminator in the generator's
    step): the reducer then marks them ready instead of waiting for them."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(
        LossModule(model), device_ids=ids,
        find_unused_parameters=bool(type(model).steps_skip_parameters))


def rank_shares(model: Any, batches: Iterator[Any], dist: Dist) -> Iterator[tuple[Any, float]]:
    """This rank's ``(share, weight)`` of every global batch of ``batches``.

    The model splits each batch into ``world_size`` parts of weight ``n_r`` (what the part's
    loss averages over: its rows, its target positions, ...;
    :meth:`~streamrec.models.base.Model.split_batch`); rank ``r`` keeps part ``r`` and scales
    its loss by ``weight = world_size * n_r / N`` (``N = sum_r n_r``), so that DDP's mean of the
    ranks' gradients is ``sum_r n_r / N * grad(loss_r)``: the gradient of the whole batch's
    loss. A rank whose part is empty computes the loss of the whole batch with weight 0 (every
    rank must take part in every all-reduce).
    """
    for batch in batches:
        parts = model.split_batch(batch, dist.world_size)
        if len(parts) != dist.world_size:
            raise ValueError(f"{type(model).__name__}.split_batch returned {len(parts)} parts "
                             f"for {dist.world_size} ranks")
        total = sum(float(n) for _, n in parts)
        share, n = parts[dist.rank]
        if n == 0 or total == 0:
            yield batch, 0.0
        else:
            yield share, dist.world_size * float(n) / total


def shard(items: np.ndarray, dist: Dist | None) -> np.ndarray:
    """This rank's contiguous part of ``items`` (all of it when alone); the parts of ranks
    0..W-1 concatenated are ``items``."""
    if dist is None or dist.world_size == 1:
        return items
    return np.array_split(np.asarray(items), dist.world_size)[dist.rank]


def gather_objects(obj: Any, dist: Dist | None) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` alone)."""
    if dist is None or dist.world_size == 1:
        return [obj]
    import torch.distributed as tdist

    out: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out


def all_mean(value: float, dist: Dist | None) -> float:
    """Mean of a float over the ranks (``value`` alone)."""
    if dist is None or dist.world_size == 1:
        return value
    import torch.distributed as tdist

    t = torch.tensor([value], dtype=torch.float64,
                     device=dist.device if dist.backend == "nccl" else "cpu")
    tdist.all_reduce(t)
    return float(t.item()) / dist.world_size


def _all_reduce_int(value: int, dist: Dist, op: str) -> int:
    """``value`` reduced over the ranks with ``torch.distributed.ReduceOp.<op>``."""
    import torch.distributed as tdist

    t = torch.tensor([int(value)], dtype=torch.int64,
                     device=dist.device if dist.backend == "nccl" else "cpu")
    tdist.all_reduce(t, op=getattr(tdist.ReduceOp, op))
    return int(t.item())


def any_rank(flag: bool, dist: Dist | None) -> bool:
    """Whether ``flag`` is true on any rank (every rank calls; the same answer on all of them:
    a decision such as "the time budget ran out" that the ranks must take together)."""
    if dist is None or dist.world_size == 1:
        return flag
    return bool(_all_reduce_int(1 if flag else 0, dist, "MAX"))


def rank_min(value: int, dist: Dist | None) -> int:
    """The smallest of the ranks' ``value`` (every rank calls; the same answer on all of
    them: e.g. the epochs a time budget leaves, from each rank's own pace)."""
    if dist is None or dist.world_size == 1:
        return int(value)
    return _all_reduce_int(value, dist, "MIN")


def rank_seed(seed: int, rank: int) -> int:
    """Torch seed of rank ``rank`` for an epoch whose rank-0 seed is ``seed`` (rank 0 keeps it,
    so one process reproduces a run without ``--nproc``); other ranks draw their own dropout /
    noise instead of copying rank 0's."""
    if rank == 0:
        return seed
    state = np.random.SeedSequence([seed, rank, 0xD15]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


# ============================================================================ the launch
def launch(worker_args: Sequence[str], nproc: int, nnodes: int = 1, rdzv: str | None = None,
           run_id: str = "streamrec", threads: int | None = None,
           error_dir: str | Path | None = None) -> None:
    """Run ``python -m streamrec.cli *worker_args`` as ``nproc`` processes per node through
    ``torch.distributed.run`` (torchrun).

    nnodes / rdzv: the number of nodes and the c10d rendezvous ``HOST:PORT`` (every node runs
    the same command); alone (one node, no rdzv) the rendezvous is local on a free port.
    threads: torch threads per process (``OMP_NUM_THREADS``; default: the node's cores shared
    between the processes). Raises :class:`DistributedError` with one line naming the first
    failed rank and its own error (or the signal that killed it).
    """
    import logging
    import tempfile
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, get_args_parser

    if nproc < 1 or nnodes < 1:
        raise DistributedError("--nproc and --nnodes must be at least 1")
    if nnodes > 1 and not rdzv:
        raise DistributedError("--nnodes > 1 needs --rdzv HOST:PORT (the rendezvous every node "
                               "joins, e.g. the first node's address)")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // nproc)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    args = [f"--nproc-per-node={nproc}", f"--nnodes={nnodes}", "--max-restarts=0",
            "--monitor-interval=0.1"]
    if rdzv:
        args += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv}", f"--rdzv-id={run_id}"]
    else:
        args += ["--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0",
                 f"--rdzv-id={uuid.uuid4()}"]
    args += ["-m", "streamrec.cli"]  # the worker's own arguments are added unparsed
    config, cmd, cmd_args = config_from_args(get_args_parser().parse_args(args))
    cmd_args = [*cmd_args, *worker_args]
    with tempfile.TemporaryDirectory(prefix="streamrec-workers-") as tmp:
        errors = Path(error_dir) if error_dir is not None else Path(tmp)
        os.environ[ERROR_DIR_ENV] = str(errors)
        quiet = logging.getLogger("torch.distributed.elastic")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            elastic_launch(config, cmd)(*cmd_args)
        except ChildFailedError as e:
            raise DistributedError(_failure_line(e, errors)) from None
        finally:
            quiet.setLevel(level)
            os.environ.pop(ERROR_DIR_ENV, None)


def _failure_line(e: Any, errors: Path) -> str:
    """One line about a failed launch: the killed rank first, else the lowest rank that left an
    error message."""
    failures = sorted(e.failures.items())
    for rank, f in failures:
        if f.exitcode is not None and f.exitcode < 0:
            return (f"rank {rank} was killed ({f.signal_name()}); the other ranks were stopped; "
                    "continue the run from its last checkpoint with --resume")
    for rank, _ in failures:
        msg = errors / f"rank{rank}.txt"
        if msg.is_file() and msg.read_text().strip():
            return f"rank {rank}: {msg.read_text().strip()}"
    rank, f = failures[0]
    return f"rank {rank} failed with exit code {f.exitcode}"


def record_worker_error(line: str) -> bool:
    """In a worker launched by :func:`launch`, keep this rank's one-line error for the launcher
    to report (instead of printing it); returns whether it was kept."""
    folder = os.environ.get(ERROR_DIR_ENV)
    if not folder or not in_worker():
        return False
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"rank{os.environ['RANK']}.txt").write_text(line)
    return True
