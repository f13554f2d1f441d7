"""The training curve of a run: train loss and validation metrics per epoch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def plot_training_curve(
    history: list[dict[str, Any]],
    out: str | Path,
    title: str = "",
    best_epoch: int | None = None,
) -> Path:
    """Draw the training curve of ``history`` (the lines of ``metrics.jsonl``) to a PNG.

    history: one dict per epoch with ``epoch``, ``loss`` (mean train loss, may be None),
        ``valid`` (a dict of validation metrics, or None for epochs without evaluation) and
        optionally ``model`` (the model's own numbers, e.g. a GAN's two players' losses; see
        :meth:`~streamrec.models.base.Model.epoch_logs`), drawn beside the train loss.
    out: the PNG path (parent directories are created).
    title: figure title.
    best_epoch: the epoch to mark with a dashed vertical line (the one whose weights were
        kept), if any.

    The left panel shows the train loss per epoch, the right one every validation metric
    per epoch (only when some epoch was evaluated). Uses matplotlib's object API with the
    Agg canvas, so it never touches pyplot's global backend (safe in notebooks and servers).
    Returns ``out``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    loss_pts = [(h["epoch"], h["loss"]) for h in history if h.get("loss") is not None]
    metric_names: list[str] = []
    for h in history:
        for name in h.get("valid") or {}:
            if name not in metric_names:
                metric_names.append(name)

    n_panels = 2 if metric_names else 1
    fig = Figure(figsize=(5.5 * n_panels, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]

    ax = axes[0]
    if loss_pts:
        xs, ys = zip(*loss_pts)
        ax.plot(xs, ys, marker="o", markersize=3, label="train loss")
    own_names: list[str] = []
    for h in history:
        own_names += [n for n in h.get("model") or {} if n not in own_names]
    for name in own_names:
        pts = [(h["epoch"], h["model"][name]) for h in history
               if h.get("model") and h["model"].get(name) is not None]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker=".", markersize=3, label=name)
    if own_names:
        ax.legend(fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    ax.set_title("train loss")
    ax.grid(True, alpha=0.3)

    if metric_names:
        ax = axes[1]
        for name in metric_names:
            pts = [
                (h["epoch"], h["valid"][name])
                for h in history
                if h.get("valid") and h["valid"].get(name) is not None
            ]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation metric")
        ax.set_title("validation")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if best_epoch is not None:
        for ax in axes:
            ax.axvline(best_epoch, color="tab:red", linestyle="--", linewidth=1,
                       label=f"best epoch {best_epoch}")
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
