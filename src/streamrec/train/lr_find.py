"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks", section 3.3; popularised by fastai's ``lr_find``).

Train a freshly built model for ``num_steps`` optimizer steps while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``::

    lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))

and record the training loss of every step. The raw losses are noisy, so they are smoothed
with a debiased exponential moving average (``beta``; ``avg_i = beta avg_{i-1} + (1-beta)
loss_i``, divided by ``1 - beta^(i+1)``). The test stops early when the smoothed loss exceeds
``diverge`` times the best one seen (or becomes non-finite): larger rates only diverge.

The suggestion is the rate where the smoothed loss falls fastest, i.e. the most negative
slope ``d loss / d log(lr)`` before the minimum of the curve (the "steepest descent" point).
``lr_at_min / 10`` (the rule of thumb "an order of magnitude below the minimum") is reported
too. The model's own weights are never touched: the test trains a throwaway instance.

CLI: ``streamrec lr-find MODEL --data DIR --out lr.png [--set key=value ...]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.common import resolve_device
from streamrec.data.dataset import Dataset, load_dataset
from streamrec.train.trainer import as_float32, move_to_device, precision_context, resolve_budget


@dataclasses.dataclass
class LRFindResult:
    """What :func:`lr_find` measured.

    lrs, losses, smoothed: one value per step taken (float lists of equal length).
    suggestion: the steepest-descent learning rate (None if the curve never fell).
    lr_at_min: the rate of the smallest smoothed loss; ``lr_at_min / 10`` is the rule-of-thumb
        choice.
    diverged: whether the sweep stopped early because the loss blew up.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    lr_at_min: float
    diverged: bool
    model: str = ""
    png: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cycle_batches(model: Any, train: Dataset, batch_size: int, seed: int) -> Iterator[Any]:
    epoch = 0
    while True:
        yield from model.batches(train, batch_size, np.random.default_rng([seed, epoch, 0x1F]))
        epoch += 1


def steepest_descent(lrs: np.ndarray, smoothed: np.ndarray, skip_start: int | None = None,
                     ) -> float | None:
    """The lr of the most negative slope ``d smoothed / d log(lr)`` before the minimum.

    The slope is a centred difference over ``k = max(1, n // 20)`` steps on each side (one
    step is too noisy), and the first ``skip_start`` steps (default ``max(5, n // 10)``),
    where the moving average is still warming up, are ignored.
    """
    n = len(lrs)
    skip = max(5, n // 10) if skip_start is None else skip_start
    k = max(1, n // 20)
    i_min = int(np.argmin(smoothed))
    if i_min - k <= skip + k:
        return None
    idx = np.arange(skip + k, i_min - k + 1)
    log_lr = np.log(lrs)
    slope = (smoothed[idx + k] - smoothed[idx - k]) / (log_lr[idx + k] - log_lr[idx - k])
    j = int(np.argmin(slope))
    if slope[j] >= 0:
        return None
    return float(lrs[idx[j]])


def lr_range_test(
    model: Any,
    train: Dataset,
    train_cfg: Any,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> LRFindResult:
    """Run the range test on ``model`` (trained in place: pass a throwaway instance) with the
    optimizer of ``train_cfg`` (its ``lr`` and schedule are ignored)."""
    from streamrec.train.schedules import make_optimizer

    if not type(model).trainable:
        raise ValueError(f"{type(model).__name__} is not trained by gradient descent; "
                         "an LR range test does not apply")
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_steps < 2:
        raise ValueError("num_steps must be >= 2")
    train_cfg, _ = resolve_budget(train_cfg, model, train)  # the run's batch size
    device = resolve_device(train_cfg.device)
    model.to(device)
    model.train()
    cfg = dataclasses.replace(train_cfg, lr=start_lr, schedule="constant", warmup_epochs=0.0)
    opt = make_optimizer(model.parameters(), cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    ratio = end_lr / start_lr
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    diverged = False
    batches = _cycle_batches(model, train, cfg.batch_size, cfg.seed)
    for i in range(num_steps):
        lr = start_lr * ratio ** (i / (num_steps - 1))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = move_to_device(next(batches), device)
        opt.zero_grad(set_to_none=True)
        with precision_context(cfg, device):  # the run's precision (``precision=bf16``)
            loss = as_float32(model.loss(batch))
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged = True
            break
        loss.backward()
        if cfg.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        opt.step()
        avg = beta * avg + (1 - beta) * value
        sm = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(sm)
        best = min(best, sm)
        if i > 0 and sm > diverge * best:
            diverged = True
            break
    lr_arr, sm_arr = np.asarray(lrs), np.asarray(smoothed)
    return LRFindResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        suggestion=steepest_descent(lr_arr, sm_arr),
        lr_at_min=float(lr_arr[int(np.argmin(sm_arr))]) if len(lrs) else start_lr,
        diverged=diverged,
        model=type(model).__name__,
    )


def plot_lr_find(result: LRFindResult, out: str | Path, title: str = "") -> Path:
    """Loss against learning rate (log x): raw and smoothed, suggestion and min/10 marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.5, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result.lrs, result.losses, alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed loss")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="tab:red", ls="--",
                   label=f"steepest descent {result.suggestion:.2e}")
    ax.axvline(result.lr_at_min / 10, color="tab:green", ls=":",
               label=f"min / 10 = {result.lr_at_min / 10:.2e}")
    ax.set_xscale("log")
    if result.smoothed:
        lo = min(result.smoothed)
        first = result.smoothed[0]
        span = abs(first - lo)
        ax.set_ylim(lo - 0.1 * span - 1e-3, max(first, lo) + 0.5 * span + 1e-3)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or f"LR range test: {result.model}")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    return out


def lr_find(
    model_name: str,
    data_dir: str | Path | Dataset,
    out_png: str | Path | None = None,
    overrides: Sequence[str] = (),
    config_file: str | Path | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> LRFindResult:
    """LR range test of model ``model_name`` on a dataset, configured like ``streamrec
    train`` (config file and ``--set`` overrides; the split is the run's default).

    Builds the model on the training view, sweeps the learning rate (see the module
    docstring), writes the plot to ``out_png`` if given and returns the result.
    """
    from streamrec.data.splits import default_split_spec, split_from_spec
    from streamrec.models import check_requirements, get_model_class
    from streamrec.train.config import build_configs

    model_cfg, train_cfg, split_spec = build_configs(model_name, config_file, overrides)
    cls = get_model_class(model_name)
    check_requirements(cls, model_cfg)
    if not cls.trainable:
        raise ValueError(f"{model_name} is not trained by gradient descent: it has no learning "
                         "rate to find")
    ds = data_dir if isinstance(data_dir, Dataset) else load_dataset(data_dir)
    split = split_from_spec(ds, {**default_split_spec(ds), **split_spec})
    train = split.train(ds)
    if train_cfg.threads is not None:
        torch.set_num_threads(int(train_cfg.threads))
    torch.manual_seed(train_cfg.seed)
    model = cls(model_cfg, train)
    train_cfg, _ = resolve_budget(train_cfg, model, train)
    result = lr_range_test(model, train, train_cfg, start_lr, end_lr, num_steps, beta, diverge)
    result.model = model_name
    if out_png is not None:
        result.png = str(plot_lr_find(result, out_png, title=f"LR range test: {model_name} "
                                      f"({train_cfg.optimizer}, batch {train_cfg.batch_size})"))
    return result
