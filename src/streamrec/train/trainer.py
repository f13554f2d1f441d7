"""The one training loop for every torch model of StreamRec.

:class:`Trainer` drives any :class:`~streamrec.models.base.Model` through its contract
(``batches`` / ``loss`` for trainable models, then ``fit`` once with the best weights in place
for what they learn in closed form, e.g. ``blend``'s filter; ``fit`` alone for closed-form
models), with

* an optimizer and a per-step LR schedule (:mod:`streamrec.train.schedules`),
* global gradient-norm clipping (the pre-clip norm is recorded),
* validation every ``eval_every`` epochs, early stopping on one validation metric, and the
  best weights kept in memory and on disk,
* a run directory with ``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (everything
  needed to continue, written atomically after every epoch), ``model.safetensors`` (the chosen
  weights) and ``training_curve.png``,
* exact resume: a run interrupted after epoch ``k`` and resumed ends with the same weights,
  the same ``metrics.jsonl`` (timings aside) and the same best metric as an uninterrupted one,
* callbacks for diagnostics (``after_backward`` sees the gradients before clipping).

Determinism: epoch ``e`` seeds torch with a hash of ``(seed, e)`` and draws its batches with
``np.random.default_rng([seed, e])``, so an epoch does not depend on how the process got there.

See ``docs/training.md`` for the options table and the checkpoint format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.common import resolve_device, write_text_atomic
from streamrec.data.dataset import Dataset
from streamrec.models.base import Model, Validate, Validator
from streamrec.train.budget import Plan, Recipe, resolve_config
from streamrec.train.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    METRICS_FILE,
    WEIGHTS_FILE,
    cpu_state_dict,
    get_rng_states,
    json_line,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    set_rng_states,
)
from streamrec.train.config import TrainConfig
from streamrec.train.schedules import make_optimizer, make_scheduler
from streamrec.train.stopping import EarlyStopping

CURVE_FILE = "training_curve.png"

#: config fields that may differ between an interrupted run and its resumption (they do not
#: change what is computed).
RESUME_FREE_FIELDS = frozenset({"progress", "threads", "device", "stop_after_epochs",
                                "diagnostics", "time_budget"})


#: Validation metrics shown on each epoch line besides the early-stopping metric.
SUMMARY_METRICS = ("recall@20", "ndcg@20", "auc", "logloss")
#: share added to the time the budget keeps back for the last validation and checkpoint write
#: (they vary from one to the next)
BUDGET_MARGIN = 0.1
#: the first epoch of a run with a time budget is projected from its steps after this many
#: (the pace measured from step :data:`EARLY_FIT_SKIP` on, past the first steps' allocations),
#: so a run whose epochs are long is fitted before its first epoch ends; epochs of fewer than
#: four times this many steps wait for the epoch's end
EARLY_FIT_STEPS = 50
EARLY_FIT_SKIP = 5
#: LR schedules whose factor at a step does not depend on the run's length: a run fitted
#: shorter under one of them is lengthened again (up to its planned epochs) when later epochs
#: are faster than the ones it was fitted on; under cosine and onecycle a longer run would
#: raise the learning rate part way, so those runs are only ever shortened
LENGTHENABLE_SCHEDULES = ("constant", "step")


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_epochs`` (a simulated kill) after the checkpoint is written."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    best_epoch: 0-based epoch whose weights the model holds at the end (the best validated
        epoch, or the last epoch when there was no validation).
    best_metric: the best value of ``valid_metric`` (None without validation).
    valid_tail_std: population standard deviation of ``valid_metric`` over the last
        :data:`TAIL_EVALS` validations (None with fewer than two): how much the validation
        curve still moves at the end of training (a GAN's instability).
    epochs_run: epochs trained in total (across resumptions); 0 for closed-form models.
    stopped_early: whether early stopping (or a callback) ended training before ``epochs``.
    train_seconds: wall time of training, validation and checkpoint writes (across
        resumptions): what ``time_budget`` counts.
    history: one dict per epoch, as in ``metrics.jsonl``.
    fit: what the model's ``fit`` chose by itself (:meth:`Model.fit_report`, e.g. the options
        it picked on validation): a closed-form model's fit, or a trained model's closed-form
        step after the loop; None when it reports nothing.
    budget: what the training budget resolved (:class:`~streamrec.train.budget.Plan` as a
        dict: batch size, steps, epochs, warm-up, validation interval, patience); None for
        closed-form models.
    """

    best_epoch: int
    best_metric: float | None
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    history: list[dict[str, Any]]
    valid_tail_std: float | None = None
    fit: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    #: why training ended before ``epochs``: "early stopping", "time budget" or None
    stop_reason: str | None = None


#: how many of the last validations :attr:`TrainResult.valid_tail_std` spans
TAIL_EVALS = 5


def valid_tail_std(history: Sequence[Mapping[str, Any]], metric: str,
                   last: int = TAIL_EVALS) -> float | None:
    """Population std of ``metric`` over the last ``last`` validated epochs of ``history``
    (the ``metrics.jsonl`` records); None with fewer than two."""
    values = [float(h["valid"][metric]) for h in history
              if h.get("valid") and h["valid"].get(metric) is not None][-last:]
    return float(np.std(values)) if len(values) >= 2 else None


class Callback:
    """Hooks into the loop; subclass and override what you need (all are no-ops).

    The trainer exposes ``model``, ``optimizer``, ``scheduler``, ``cfg``, ``current_epoch``
    (the epoch being trained), ``epoch`` (the last completed one), ``global_step`` (optimizer
    steps so far), ``steps_per_epoch``, ``history``, ``last_grad_norm`` (pre-clip norm of the
    latest step, a 0-d tensor) and ``should_stop`` (set it to True to end training after the
    current epoch, e.g. from ``on_epoch_end``).
    """

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch of this ``fit`` call (after a resume: of the rest)."""

    def after_backward(self, trainer: Trainer, step: int) -> None:
        """After ``loss.backward()``, before clipping and ``optimizer.step()``.

        ``step`` is the 0-based step within the epoch; the parameters' ``.grad`` hold the
        raw (unclipped) gradients — the place for per-layer gradient-norm diagnostics.
        """

    def on_batch_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        """After the optimizer and scheduler steps. ``loss`` is the detached 0-d loss tensor
        on the model's device (``float(loss)`` forces a device sync)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """After an epoch (and its validation); ``logs`` is the epoch's metrics.jsonl record."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the best weights are restored and the run directory is written."""


# ======================================================================== helpers
def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch to ``device``: tensors and numpy arrays, recursively inside tuples
    (named tuples too), lists and dicts; everything else is returned as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, np.ndarray):
        return torch.as_tensor(np.ascontiguousarray(batch)).to(device)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple):
        items = [move_to_device(v, device) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    if isinstance(batch, list):
        return [move_to_device(v, device) for v in batch]
    return batch


def precision_context(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    """The region a training step's forward pass and loss run in: ``precision="bf16"``:
    ``torch.autocast`` to bfloat16 (matrix products in bfloat16; weights, gradients and the
    optimizer state stay float32, no loss scaling is needed); ``fp32``: a disabled one."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def as_float32(loss: torch.Tensor) -> torch.Tensor:
    """A loss autocast left in bfloat16, as float32 (any other dtype unchanged)."""
    return loss.float() if loss.dtype == torch.bfloat16 else loss


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (a float32 below 1.2e-38 reads 0)."""
    return torch.tensor(1e-39, dtype=torch.float32).item() == 0.0


@contextlib.contextmanager
def denormals_flushed(device: torch.device) -> Iterator[None]:
    """Flush denormal floats to zero while training on the CPU, as it was after.

    A weight or an Adam moment that an L2 term shrinks geometrically (an input column few
    batches read) sinks below float32's smallest normal number, 1.2e-38, where x86 arithmetic
    is 10-200x slower: CFGAN's epochs on the m0 world slowed from 23 s to 65 s in four epochs
    as 44% of its generator's input weights went denormal; flushed, they stay at 23-30 s, with
    the same losses. Torch's CPU worker threads take the setting when they start (the first
    parallel operation, in a fresh process: inside the first fit); in a process that ran
    parallel torch work before, those threads keep theirs (slower, not wrong). The calling
    thread's setting is put back after, so IEEE-754 arithmetic outside training is unchanged.
    """
    if device.type != "cpu" or flushing_denormals():
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def epoch_seed(seed: int, epoch: int) -> int:
    """Torch seed of one epoch: a stable hash of ``(seed, epoch)`` (63-bit)."""
    state = np.random.SeedSequence([int(seed), int(epoch), 0x5EED]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


# ======================================================================== trainer
class Trainer:
    """Train one model on one dataset (see the module docstring and ``docs/training.md``).

    model: the recommender (moved to ``cfg.device``).
    train: the training view of the data, passed to ``model.batches`` / ``model.fit``.
    cfg: the loop's options.
    run_dir: where metrics, checkpoints, weights and the curve go; None writes nothing.
    validate: ``model -> {metric: value}``, called in eval mode under ``torch.no_grad()``
        every ``cfg.eval_every`` epochs and after the last; must contain ``cfg.valid_metric``.
    callbacks: :class:`Callback` instances, called in order (plus the per-layer
        :class:`~streamrec.train.diagnostics.Diagnostics` when ``cfg.diagnostics`` and there is
        a run directory).
    console: a ``rich.console.Console`` for the progress bar and the epoch lines (default:
        one on stderr).
    dist: this process's rank in a data-parallel run (:mod:`streamrec.train.distributed`), or
        None alone: the model is wrapped in DistributedDataParallel, each rank trains on its
        share of every batch, and only rank 0 writes ``run_dir`` (every rank reads it to resume).
    """

    def __init__(
        self,
        model: Model,
        train: Dataset,
        cfg: TrainConfig,
        run_dir: str | Path | None = None,
        validate: Validate | None = None,
        callbacks: Sequence[Callback] = (),
        console: Any = None,
        dist: Any = None,
    ) -> None:
        from rich.console import Console

        self.model = model
        self.train_data = train
        #: the options with the budget's choices filled in (see :mod:`streamrec.train.budget`)
        self.cfg, self.plan = resolve_budget(cfg, model, train)
        cfg = self.cfg
        #: the options as resolved, before a time budget shortens ``epochs`` (what a
        #: checkpoint records and a resumption compares)
        self.planned_cfg = cfg
        self.dist = dist if dist is not None and dist.world_size > 1 else None
        #: where a resume reads the checkpoint; run_dir (what this process writes) is None on
        #: every rank but 0
        self.source_dir = Path(run_dir) if run_dir is not None else None
        self.run_dir = self.source_dir if self.dist is None or self.dist.is_main else None
        self.validate = validate
        self.callbacks = list(callbacks)
        if cfg.diagnostics and self.run_dir is not None:
            from streamrec.train.diagnostics import Diagnostics

            self.callbacks.append(Diagnostics(self.run_dir))
        self.console = console if console is not None else Console(stderr=True)
        self.device = self.dist.device if self.dist is not None else resolve_device(cfg.device)
        self._loss_fn: Any = None

        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.steps_per_epoch = 0
        self.epoch = -1  # last completed epoch
        self.current_epoch = -1  # the epoch being trained (== epoch between epochs)
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_metric: float | None = None
        self.best_epoch: int = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evals = 0
        #: smoothed, patient early stopping (:mod:`streamrec.train.stopping`)
        self.stopper = EarlyStopping(cfg.metric_mode, cfg.patience or 0, cfg.smooth,
                                     cfg.min_epochs or 0)
        self.should_stop = False
        self.stopped_early = False
        self.stop_reason: str | None = None
        #: set when ``cfg.time_budget`` ran out (the epoch in progress ends at once)
        self.out_of_time = False
        #: the deadline ended an epoch part way (the last planned one included)
        self.cut_short = False
        #: wall time of the longest validation and checkpoint write so far (what the budget
        #: keeps back, with :data:`BUDGET_MARGIN`, for the last validation and checkpoint)
        self._valid_seconds = 0.0
        self._save_seconds = 0.0
        #: wall time of each epoch's training steps (validation and write excluded)
        self._step_seconds: list[float] = []
        self.train_seconds = 0.0
        #: pre-clip global grad norm of the latest step (0-d tensor on the model's device)
        self.last_grad_norm: torch.Tensor | None = None
        self._warned_batches = False

    # ------------------------------------------------------------------ paths
    def _path(self, name: str) -> Path | None:
        return self.run_dir / name if self.run_dir is not None else None

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool = False) -> TrainResult:
        """Train (or continue a checkpointed run with ``resume=True``) and return the result.

        Raises :class:`TrainingInterrupted` when ``cfg.stop_after_epochs`` is reached,
        :class:`NonFiniteLossError` when the loss becomes NaN/inf.
        """
        cfg = self.cfg
        if cfg.threads is not None:
            torch.set_num_threads(int(cfg.threads))
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model.to(self.device)
        if not type(self.model).trainable:
            if self.dist is not None:
                raise ValueError(
                    f"{self.model.name} is fitted in closed form, not by gradient descent: "
                    "data-parallel training (--nproc) does not apply; train it without --nproc")
            if resume:
                self.console.print("[dim]closed-form model: nothing to resume, fitting[/dim]")
            return self._fit_closed_form()
        with denormals_flushed(self.device):
            return self._fit_loop(resume)

    # ------------------------------------------------------------------ closed form
    def _fit_closed_form(self) -> TrainResult:
        t0 = time.perf_counter()
        for cb in self.callbacks:
            cb.on_train_start(self)
        validate = (None if self.validate is None else
                    Validator(self.validate, self.cfg.valid_metric, self.cfg.metric_mode))
        self.model.fit(self.train_data, validate)
        report = dict(self.model.fit_report()) or None
        logs = self._run_validation()
        seconds = time.perf_counter() - t0
        record = {"epoch": 0, "loss": None, "lr": None, "grad_norm": None,
                  "seconds": seconds, "valid": logs}
        if report:
            record["fit"] = report
            chosen = "  ".join(f"{k}={v}" for k, v in report.items()
                               if isinstance(v, str | int | float | bool))
            self.console.print(f"fit {type(self.model).__name__}: {chosen}", highlight=False,
                               soft_wrap=True)
        self.history = [record]
        self.train_seconds = seconds
        self.best_epoch = 0
        self.best_metric = logs.get(self.cfg.valid_metric) if logs else None
        if self.run_dir is not None:
            write_text_atomic(self._path(METRICS_FILE), json_line(record))
            save_weights(cpu_state_dict(self.model), self._path(WEIGHTS_FILE),
                         {"format": "pt", "epoch": "0"})
        metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in self._summary(logs or {}).items())
        self.console.print(f"fit {type(self.model).__name__} (closed form)  {metrics}  "
                           f"{seconds:.1f}s", highlight=False, soft_wrap=True)
        for cb in self.callbacks:
            cb.on_epoch_end(self, 0, record)
            cb.on_train_end(self)
        return TrainResult(best_epoch=0, best_metric=self.best_metric, epochs_run=0,
                           stopped_early=False, train_seconds=seconds, history=self.history,
                           fit=report)

    # ------------------------------------------------------------------ loop
    def _setup_optim(self) -> None:
        self.steps_per_epoch = max(
            1, int(self.model.num_batches(self.train_data, self.cfg.batch_size))
        )
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, self.steps_per_epoch)
        if self.dist is not None:
            from streamrec.train.distributed import wrap

            self._loss_fn = wrap(self.model, self.dist)  # DDP: gradients all-reduced
        else:
            self._loss_fn = self.model.loss

    def _fit_loop(self, resume: bool) -> TrainResult:
        cfg = self.cfg
        self._setup_optim()
        finished = False
        if resume:
            finished = self._restore()
        else:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
            torch.manual_seed(cfg.seed)
            if self.run_dir is not None:
                for name in (CHECKPOINT_FILE, METRICS_FILE):
                    p = self._path(name)
                    if p.exists():
                        p.unlink()

        if self.plan is not None:
            self.console.print(f"[dim]{self.plan.describe()}[/dim]", highlight=False,
                               soft_wrap=True)
        if cfg.time_budget is not None:
            from streamrec.train.budget import format_duration

            fitted = (", the schedule shortened to fit if the epochs will not"
                      if cfg.fit_to_time_budget else "")
            self.console.print(f"[dim]time budget {format_duration(cfg.time_budget)}: "
                               f"training ends by then with its best validated epoch{fitted} "
                               "(--time-budget 1h / off to change)[/dim]",
                               highlight=False, soft_wrap=True)
        for cb in self.callbacks:
            cb.on_train_start(self)
        epochs_this_call = 0
        try:
            while not finished and self.epoch + 1 < self.cfg.epochs:
                epoch = self.epoch + 1
                record = self._run_epoch(epoch)
                epochs_this_call += 1
                finished = self.should_stop or epoch + 1 >= self.cfg.epochs
                self.stopped_early = self.should_stop and (epoch + 1 < self.cfg.epochs
                                                           or self.cut_short)
                if self.run_dir is not None:
                    t_save = time.perf_counter()
                    save_checkpoint(self._checkpoint_state(finished),
                                    self._path(CHECKPOINT_FILE))
                    # the write is part of the training time the budget counts
                    took = time.perf_counter() - t_save
                    self._save_seconds = max(self._save_seconds, took)
                    self.train_seconds += took
                self._print_epoch(record)
                if (not finished and cfg.stop_after_epochs is not None
                        and epochs_this_call >= cfg.stop_after_epochs):
                    raise TrainingInterrupted(
                        f"stopped after {epochs_this_call} epoch(s) (stop_after_epochs); last "
                        f"completed epoch {epoch}; continue with fit(resume=True)"
                    )
        except KeyboardInterrupt:
            # Checkpoints are written atomically, so the last completed epoch's one is intact
            # (a metrics.jsonl line past it is dropped on resume).
            where = ""
            if self.run_dir is not None and self.epoch >= 0:
                where = (f"; {self._path(CHECKPOINT_FILE)} holds epoch {self.epoch}, "
                         "continue with fit(resume=True)")
            self.console.print(
                f"[yellow]interrupted during epoch {self.epoch + 1}{where}[/yellow]"
            )
            raise
        return self._finish()

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        cfg, model = self.cfg, self.model
        assert self.optimizer is not None and self.scheduler is not None
        t0 = time.perf_counter()
        self.current_epoch = epoch
        model.train()
        model.on_epoch_start(epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        batches: Iterable[tuple[Any, float]]
        if self.dist is None:
            torch.manual_seed(epoch_seed(cfg.seed, epoch))
            batches = ((b, 1.0) for b in model.batches(self.train_data, cfg.batch_size, rng))
        else:  # every rank draws the global batches and trains on its share
            from streamrec.train.distributed import rank_seed, rank_shares

            torch.manual_seed(rank_seed(epoch_seed(cfg.seed, epoch), self.dist.rank))
            batches = rank_shares(model, model.batches(self.train_data, cfg.batch_size, rng),
                                  self.dist)
        device = model.device
        # On the CPU a sync is free: check every step, before the optimizer step. On an
        # accelerator sync every `sync_every` steps (the culprit step is still named exactly).
        sync_every = 1 if device.type == "cpu" else 32
        params = [p for p in model.parameters() if p.requires_grad]
        autocast = precision_context(cfg, device)

        losses: list[torch.Tensor] = []
        grad_norms: list[torch.Tensor] = []
        checked = 0
        loss_sum = 0.0
        step_lr = self.optimizer.param_groups[0]["lr"]

        progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]:.2e}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not (cfg.progress and self.console.is_terminal),
        )
        # the first epoch of a fresh run is fitted to the time budget part way through
        early_fit_at = (EARLY_FIT_STEPS if cfg.time_budget is not None and cfg.fit_to_time_budget
                        and not self._step_seconds and epoch + 1 < cfg.epochs
                        and self.steps_per_epoch >= 4 * EARLY_FIT_STEPS else -1)
        t_skip = t0
        with progress:
            task = progress.add_task("train", total=self.steps_per_epoch, epoch=epoch,
                                     loss="-", lr=step_lr)
            step = -1
            for step, (batch, weight) in enumerate(batches):
                batch = move_to_device(batch, device)
                self.optimizer.zero_grad(set_to_none=True)
                with autocast:
                    loss = as_float32(self._loss_fn(batch))
                if loss.dim() != 0:
                    raise ValueError(
                        f"{type(model).__name__}.loss must return a scalar, got shape "
                        f"{tuple(loss.shape)}"
                    )
                if weight != 1.0:  # this rank's share of the batch (distributed.rank_shares)
                    loss = loss * weight
                losses.append(loss.detach())
                if len(losses) - checked >= sync_every:
                    loss_sum += self._check_losses(losses, checked, epoch)
                    checked = len(losses)
                    progress.update(task, completed=step + 1,
                                    loss=f"{loss_sum / checked:.4f}", lr=step_lr)
                loss.backward()
                for cb in self.callbacks:
                    cb.after_backward(self, step)
                grads = [p.grad for p in params if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(
                    (), device=device)
                if cfg.clip_norm is not None and grads:
                    torch.nn.utils.clip_grads_with_norm_(params, cfg.clip_norm, norm)
                self.last_grad_norm = norm.detach()
                grad_norms.append(self.last_grad_norm)
                step_lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self._scheduler_step()
                self.global_step += 1
                for cb in self.callbacks:
                    cb.on_batch_end(self, step, losses[-1])
                if step + 1 == EARLY_FIT_SKIP:
                    t_skip = time.perf_counter()
                if step + 1 == early_fit_at:  # project the epoch from its steps so far
                    pace = (time.perf_counter() - t_skip) / (step + 1 - EARLY_FIT_SKIP)
                    self._fit_schedule(epoch, pace * self.steps_per_epoch,
                                       f"its first {step + 1} steps")
                # stop early enough for the last validation and checkpoint to fit in too, and
                # before a step (as long as the epoch's mean one) would leave them no room
                if cfg.time_budget is not None:
                    now = time.perf_counter() - t0
                    if self._over_budget(self.train_seconds + now * (step + 2) / (step + 1)
                                         + self._reserve()):
                        self.out_of_time = self.cut_short = True
                        break
            if step < 0:
                raise RuntimeError(
                    f"{type(model).__name__}.batches yielded no batch in epoch {epoch}"
                )
            if checked < len(losses):
                loss_sum += self._check_losses(losses, checked, epoch)
        n_steps = len(losses)
        if self.dist is not None:  # the ranks' weighted shares average to the batch's loss
            from streamrec.train.distributed import all_mean

            loss_sum = all_mean(loss_sum, self.dist)
        if (n_steps != self.steps_per_epoch and not self._warned_batches
                and not self.out_of_time):
            self._warned_batches = True
            self.console.print(
                f"[yellow]warning: {type(model).__name__}.num_batches said "
                f"{self.steps_per_epoch} batches per epoch but batches() yielded {n_steps}; "
                "the LR schedule assumes num_batches[/yellow]"
            )
        self._step_seconds.append(time.perf_counter() - t0)
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss_sum / n_steps,
            "lr": float(step_lr),
            "grad_norm": float(torch.stack(grad_norms).float().mean().item()),
            "seconds": 0.0,
            "valid": None,
        }
        own = model.epoch_logs()  # e.g. a GAN's two players' losses (Model.epoch_logs)
        if own:
            record["model"] = {str(k): float(v) for k, v in own.items()}

        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 >= cfg.epochs or self.out_of_time:
            logs = self._run_validation()
            if logs is not None:
                record["valid"] = logs
                self._update_best(epoch, logs)
        record["seconds"] = time.perf_counter() - t0
        self.train_seconds += record["seconds"]
        if cfg.time_budget is not None and cfg.fit_to_time_budget and not self.out_of_time:
            recent = self._step_seconds[-3:]
            self._fit_schedule(epoch + 1, sum(recent) / len(recent), "the last epochs")
        # this epoch's checkpoint write counts too (as long as the last one took), and another
        # epoch must leave room for its validation and write
        if cfg.time_budget is not None and self._over_budget(
                self.train_seconds + self._save_seconds + self._reserve()):
            self.out_of_time = True
        if self.out_of_time:
            record["time_budget"] = True
            self.should_stop = True
            self.stop_reason = "time budget"
        self.epoch = epoch
        self.history.append(record)
        if self.run_dir is not None:
            with open(self._path(METRICS_FILE), "a") as f:
                f.write(json_line(record))
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, record)
        return record

    def _fit_schedule(self, done: int, pace: float, measured: str) -> None:
        """With ``done`` epochs complete and counted in ``train_seconds`` (an epoch in progress
        is not, and is projected whole): if the planned epochs will not fit in the time budget
        at ``pace`` seconds of steps an epoch (measured on ``measured``: the mean of the last
        three epochs, or the first steps of the first epoch) with the longest validation and
        checkpoint write so far, shorten the run to the epochs that do, and the LR schedule
        with it (:func:`~streamrec.train.budget.fit_epochs`). Under a schedule that does not
        depend on the run's length (:data:`LENGTHENABLE_SCHEDULES`) a run fitted shorter is
        lengthened again, up to its planned epochs, when the pace has since quickened."""
        from streamrec.train.budget import fit_epochs, format_duration

        cfg = self.cfg
        limit = (max(cfg.epochs, self.planned_cfg.epochs)
                 if cfg.schedule in LENGTHENABLE_SCHEDULES else cfg.epochs)
        if done >= limit:
            return
        spent = self.train_seconds + self._save_seconds
        left = cfg.time_budget / (1.0 + BUDGET_MARGIN) - spent
        epochs = fit_epochs(done, limit, cfg.eval_every, left, pace,
                            self._valid_seconds, self._save_seconds)
        if self.dist is not None:  # the ranks run the same epochs
            from streamrec.train.distributed import rank_min

            epochs = rank_min(epochs, self.dist)
        # fit_epochs always grants one more epoch: past the run's end only one that fits
        fits = epochs > done + 1 or left >= pace + self._save_seconds + self._valid_seconds
        if epochs == cfg.epochs or (epochs > cfg.epochs and not fits):
            return
        change = (f"{cfg.epochs} epochs will not fit" if epochs < cfg.epochs else
                  f"more than {cfg.epochs} epochs fit now")
        self.console.print(
            f"[yellow]time budget {format_duration(cfg.time_budget)}: {change} at "
            f"{pace:.1f}s an epoch (from {measured}; validation {self._valid_seconds:.1f}s); "
            f"the schedule now ends after {epochs} epochs (--set epochs={epochs} repeats it, "
            f"--time-budget off lifts the limit)[/yellow]", highlight=False, soft_wrap=True)
        self._set_epochs(epochs)

    def _set_epochs(self, epochs: int) -> None:
        """Run ``epochs`` epochs in all: the loop, the LR schedule (constant, step and cosine
        are functions of the step and the epochs; onecycle keeps its length) follow. The
        warm-up keeps its steps (it is there for the optimizer's first steps), up to half of
        the shorter run (the rest is left to the schedule's decay)."""
        from streamrec.train.schedules import refit_scheduler

        warmup = self.cfg.warmup_epochs
        self.cfg = dataclasses.replace(
            self.cfg, epochs=int(epochs),
            warmup_epochs=None if warmup is None else min(warmup, epochs / 2))
        assert self.scheduler is not None
        refit_scheduler(self.scheduler, self.cfg, self.steps_per_epoch)

    def _scheduler_step(self) -> None:
        sched = self.scheduler
        total = getattr(sched, "total_steps", None)
        if total is not None and sched.last_epoch >= total:
            return  # OneCycleLR refuses steps past its end (num_batches under-counted)
        sched.step()

    def _check_losses(self, losses: list[torch.Tensor], start: int, epoch: int) -> float:
        """Sum of ``losses[start:]`` (one device sync); raise on the first non-finite one."""
        window = losses[start:]
        values = torch.stack(window).double().tolist() if len(window) > 1 else [
            float(window[0])]
        for k, v in enumerate(values):
            if not math.isfinite(v):
                raise NonFiniteLossError(
                    f"non-finite training loss ({v}) at epoch {epoch}, step {start + k} "
                    f"(of {self.steps_per_epoch}); lower the learning rate (lr={self.cfg.lr}), "
                    "set clip_norm, or check the model's inputs. The checkpoint of the last "
                    "completed epoch is intact."
                )
        return float(sum(values))

    def _reserve(self) -> float:
        """Seconds the time budget keeps back for the run's last validation and checkpoint
        write: the longest of each so far, plus :data:`BUDGET_MARGIN`."""
        return (1.0 + BUDGET_MARGIN) * (self._valid_seconds + self._save_seconds)

    def _over_budget(self, seconds: float) -> bool:
        """Whether ``seconds`` of training exhaust ``cfg.time_budget``; with data-parallel
        ranks, true when it is on any of them (they stop at the same step)."""
        over = seconds >= self.cfg.time_budget
        if self.dist is None:
            return over
        from streamrec.train.distributed import any_rank

        return any_rank(over, self.dist)

    def _run_validation(self) -> dict[str, float] | None:
        if self.validate is None:
            return None
        was_training = self.model.training
        self.model.eval()
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                raw = self.validate(self.model)
        finally:
            self.model.train(was_training)
        self._valid_seconds = max(self._valid_seconds, time.perf_counter() - t0)
        logs = {str(k): float(v) for k, v in dict(raw).items()}
        if type(self.model).trainable and self.cfg.valid_metric not in logs:
            raise KeyError(
                f"validation returned no {self.cfg.valid_metric!r} (valid_metric); it returned "
                f"{', '.join(sorted(logs)) or 'nothing'}"
            )
        return logs

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_metric is None:
            return True
        if self.cfg.metric_mode == "max":
            return value > self.best_metric
        return value < self.best_metric

    def _update_best(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Keep the weights of the best raw validation value; stop on the smoothed curve."""
        value = logs[self.cfg.valid_metric]
        if self._improved(value):
            self.best_metric = float(value)
            self.best_epoch = epoch
            self.best_state = cpu_state_dict(self.model)
            if self.run_dir is not None:
                save_weights(self.best_state, self._path(WEIGHTS_FILE),
                             {"format": "pt", "epoch": str(epoch)})
        if self.stopper.update(epoch, float(value)):
            self.should_stop = True
            self.stop_reason = self.stop_reason or "early stopping"
        self.bad_evals = self.stopper.bad

    def _summary(self, valid: Mapping[str, float]) -> dict[str, float]:
        """The early-stopping metric and a few others, for one console line."""
        keys = [self.cfg.valid_metric, *SUMMARY_METRICS]
        return {k: valid[k] for k in dict.fromkeys(keys) if k in valid}

    def _print_epoch(self, record: Mapping[str, Any]) -> None:
        parts = [
            f"epoch {record['epoch'] + 1:>3d}/{self.cfg.epochs}",
            f"loss {_fmt(record['loss'])}",
            f"lr {_fmt(record['lr'], '.2e')}",
            f"|g| {_fmt(record['grad_norm'], '.3g')}",
        ]
        if record["valid"]:
            summary = self._summary(record["valid"])
            parts.append("  ".join(f"{k}={_fmt(v)}" for k, v in summary.items()))
            if self.best_epoch == record["epoch"]:
                parts.append("[green]* best[/green]")
        parts.append(f"{record['seconds']:.1f}s")
        if self.should_stop and self.stop_reason == "time budget":
            from streamrec.train.budget import format_duration

            kept = (f"keeping the best validated epoch {self.best_epoch + 1} "
                    f"({self.cfg.valid_metric}={_fmt(self.best_metric)})"
                    if self.best_state is not None else "keeping the last weights")
            parts.append(f"[yellow]time budget {format_duration(self.cfg.time_budget)} "
                         f"reached: {kept}[/yellow]")
        elif self.should_stop and self.stopped_early:
            parts.append(f"[yellow]early stop (best epoch {self.best_epoch})[/yellow]")
        self.console.print("  ".join(parts), highlight=False, soft_wrap=True)

    # ------------------------------------------------------------------ checkpoint
    def _checkpoint_state(self, finished: bool) -> dict[str, Any]:
        assert self.optimizer is not None and self.scheduler is not None
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals,
            "stopping": self.stopper.state_dict(),
            "stop_reason": self.stop_reason,
            "best_state": self.best_state,
            "should_stop": self.should_stop,
            "stopped_early": self.stopped_early,
            "finished": finished,
            "rng": get_rng_states(),
            "history": self.history,
            "train_seconds": self.train_seconds,
            "config": self.planned_cfg.to_dict(),
            "epochs": self.cfg.epochs,
            "step_seconds": self._step_seconds,
        }

    def _restore(self) -> bool:
        """Load ``run_dir/checkpoint.pt`` into the model, optimizer, scheduler and loop state;
        rewrite ``metrics.jsonl`` from the checkpoint. Returns whether training had finished."""
        if self.source_dir is None:
            raise ValueError("resume=True needs a run_dir holding a checkpoint")
        path = self.source_dir / CHECKPOINT_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"cannot resume: no {CHECKPOINT_FILE} in {self.source_dir} (no epoch was completed "
                "there); start with resume=False"
            )
        state = load_checkpoint(path)
        saved, now = state["config"], self.cfg.to_dict()
        diffs = sorted(k for k in set(saved) | set(now)
                       if k not in RESUME_FREE_FIELDS and saved.get(k) != now.get(k))
        if diffs:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diffs)
            raise ValueError(
                f"cannot resume {path}: the training options changed ({detail}); an exact "
                "resume needs the same options (only progress, threads, device, diagnostics and "
                "stop_after_epochs may change)"
            )
        assert self.optimizer is not None and self.scheduler is not None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_metric = state["best_metric"]
        self.best_epoch = int(state["best_epoch"])
        self.bad_evals = int(state["bad_evals"])
        if "stopping" in state:
            self.stopper.load_state_dict(state["stopping"])
        self.stop_reason = state.get("stop_reason")
        self.best_state = state["best_state"]
        self.should_stop = bool(state["should_stop"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = list(state["history"])
        self.train_seconds = float(state["train_seconds"])
        self._step_seconds = list(state.get("step_seconds", []))
        if int(state.get("epochs", self.cfg.epochs)) != self.cfg.epochs:
            self._set_epochs(int(state["epochs"]))  # shortened by the time budget
        set_rng_states(state["rng"])
        if self.run_dir is not None:
            write_text_atomic(self._path(METRICS_FILE),
                              "".join(json_line(r) for r in self.history))
        self.console.print(
            f"resumed {self.source_dir} after epoch {self.epoch} "
            f"(best {_fmt(self.best_metric)} at epoch {self.best_epoch})",
            highlight=False,
        )
        return bool(state["finished"])

    # ------------------------------------------------------------------ end
    def _finish(self) -> TrainResult:
        if self.validate is not None and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        else:
            self.best_epoch = self.epoch
        report = self._fit_after_loop()
        if self.run_dir is not None:
            save_weights(cpu_state_dict(self.model), self._path(WEIGHTS_FILE),
                         {"format": "pt", "epoch": str(self.best_epoch)})
            from streamrec.train.plots import plot_training_curve

            chosen = (f"best {self.cfg.valid_metric} at epoch {self.best_epoch}"
                      if self.best_state is not None else f"last epoch {self.best_epoch}")
            plot_training_curve(self.history, self._path(CURVE_FILE),
                                title=f"{type(self.model).__name__}: {chosen}",
                                best_epoch=self.best_epoch)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return TrainResult(
            best_epoch=self.best_epoch,
            best_metric=self.best_metric,
            epochs_run=self.epoch + 1,
            stopped_early=self.stopped_early,
            train_seconds=self.train_seconds,
            history=list(self.history),
            valid_tail_std=valid_tail_std(self.history, self.cfg.valid_metric),
            budget=self._budget_report(),
            stop_reason=self.stop_reason if self.stopped_early else None,
            fit=report,
        )

    def _budget_report(self) -> dict[str, Any] | None:
        """The plan as a dict, with ``fitted_epochs``: the epochs the time budget left (None
        when it did not shorten the run)."""
        if self.plan is None:
            return None
        report = dataclasses.asdict(self.plan)
        report["fitted_epochs"] = (self.cfg.epochs if self.cfg.epochs != self.plan.epochs
                                   else None)
        return report

    def _fit_after_loop(self) -> dict[str, Any] | None:
        """The contract's closed-form step of a trained model: ``model.fit(train, validate)``
        once, with the best weights in place (most models: nothing); its report printed and
        returned, its time added to the training time."""
        t0 = time.perf_counter()
        validate = (None if self.validate is None else
                    Validator(self.validate, self.cfg.valid_metric, self.cfg.metric_mode))
        self.model.fit(self.train_data, validate)
        report = dict(self.model.fit_report()) or None
        self.train_seconds += time.perf_counter() - t0
        if report:
            chosen = "  ".join(f"{k}={v}" for k, v in report.items()
                               if isinstance(v, str | int | float | bool))
            self.console.print(f"fit {type(self.model).__name__} after training: {chosen}",
                               highlight=False, soft_wrap=True)
        return report


def resolve_budget(cfg: TrainConfig, model: Model,
                   train: Dataset) -> tuple[TrainConfig, Plan | None]:
    """``cfg`` with the budget's choices for the options left unset, and the plan (None for a
    closed-form model). The data size is the model's examples per epoch:
    ``model.num_batches(train, 1)``; the recipe is its ``train_recipe``."""
    if not type(model).trainable:
        return cfg, None
    examples = int(model.num_batches(train, 1))
    return resolve_config(cfg, examples, Recipe.of(type(model).train_recipe))


def train_model(
    model: Model,
    train: Dataset,
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    validate: Validate | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    console: Any = None,
) -> TrainResult:
    """Train ``model`` with one :class:`Trainer` (see its docstring); returns the result."""
    trainer = Trainer(model, train, cfg, run_dir=run_dir, validate=validate,
                      callbacks=list(callbacks), console=console)
    return trainer.fit(resume=resume)
