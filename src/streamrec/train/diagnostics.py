"""Training diagnostics: per-layer gradient norms and activation statistics, per epoch.

:class:`Diagnostics` is a :class:`~streamrec.train.Callback` of the shared loop. For a run
directory it writes

``diagnostics.jsonl``  one JSON line per epoch::

    {"epoch": 3,
     "grad_norm": {"net.0": 0.41, "net.2": 0.18, ...},      # mean over the epoch's steps
     "grad_norm_max": {"net.0": 1.9, ...},                  # largest step of the epoch
     "weight_norm": {"net.0": 11.2, ...},                   # at the end of the epoch
     "activations": {"net.1": {"kind": "relu", "dead_frac": 0.03, "zero_frac": 0.52,
                               "saturated_frac": null, "mean": 0.31, "std": 0.55}, ...},
     "sample_size": 2048}

``diagnostics.png``    the same per epoch (redrawn every ``plot_every`` epochs and at the
                       end of training): gradient norm per layer (log scale), fraction of
                       dead ReLUs (or saturated tanh/sigmoid units) per layer, and the
                       standard deviation of each activation layer's output.

Layers are the modules that own parameters (named by their path in the model, e.g.
``net.0``); a layer's gradient norm is the L2 norm of all its parameters' gradients, taken in
``after_backward``, i.e. **before** clipping. Activation statistics come from forward hooks on
the ReLU / LeakyReLU / GELU / Tanh / Sigmoid modules while one sampled training batch
(``sample_size`` rows, a fixed seed per epoch) is passed through the model in eval mode at the
end of each epoch:

* ``dead_frac``: the fraction of units that are never positive on the whole sample (a dead
  ReLU has no gradient and cannot recover);
* ``zero_frac``: the fraction of all outputs that are <= 0 (ReLU sparsity);
* ``saturated_frac``: for tanh ``|y| > 1 - eps`` and for sigmoid ``y < eps or y > 1 - eps``
  (``eps = saturation_eps``), where the local gradient all but vanishes.

The callback uses only its own random generator, so it never changes what training computes,
and on resume it keeps the lines of the epochs already done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from streamrec.train.trainer import Callback, Trainer, move_to_device

DIAGNOSTICS_FILE = "diagnostics.jsonl"
DIAGNOSTICS_PLOT = "diagnostics.png"

RELU_LIKE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ReLU6, nn.ELU, nn.SiLU)
SATURATING = (nn.Tanh, nn.Sigmoid)


def _kind(module: nn.Module) -> str:
    return type(module).__name__.lower()


def activation_stats(y: torch.Tensor, kind: str, eps: float = 0.01) -> dict[str, Any]:
    """Statistics of an activation output ``y`` (``[B, units]`` or ``[..., units]``)."""
    y = y.detach().float().reshape(-1, y.shape[-1]) if y.dim() > 1 else y.detach().float()[:, None]
    out: dict[str, Any] = {
        "kind": kind,
        "mean": float(y.mean()),
        "std": float(y.std()) if y.numel() > 1 else 0.0,
        "dead_frac": None,
        "zero_frac": None,
        "saturated_frac": None,
    }
    if kind in ("tanh",):
        out["saturated_frac"] = float((y.abs() > 1 - eps).float().mean())
    elif kind in ("sigmoid",):
        out["saturated_frac"] = float(((y < eps) | (y > 1 - eps)).float().mean())
    else:
        active = y > 0
        out["dead_frac"] = float((~active.any(dim=0)).float().mean())
        out["zero_frac"] = float((~active).float().mean())
    return out


class Diagnostics(Callback):
    """Write ``diagnostics.jsonl`` and ``diagnostics.png`` into ``run_dir`` (see the module
    docstring). ``run_dir=None`` keeps the records in :attr:`records` only."""

    def __init__(
        self,
        run_dir: str | Path | None,
        sample_size: int = 2048,
        saturation_eps: float = 0.01,
        plot: bool = True,
        plot_every: int = 5,
        seed: int = 0,
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.sample_size = int(sample_size)
        self.saturation_eps = float(saturation_eps)
        self.plot = plot
        self.plot_every = max(1, int(plot_every))
        self.seed = int(seed)
        self.records: list[dict[str, Any]] = []
        self._layers: list[tuple[str, list[torch.Tensor]]] = []
        self._sum: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        self._steps = 0

    # ------------------------------------------------------------------ paths
    @property
    def path(self) -> Path | None:
        return self.run_dir / DIAGNOSTICS_FILE if self.run_dir is not None else None

    @property
    def plot_path(self) -> Path | None:
        return self.run_dir / DIAGNOSTICS_PLOT if self.run_dir is not None else None

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Trainer) -> None:
        model = trainer.model
        self._layers = []
        for name, mod in model.named_modules():
            params = [p for _, p in mod.named_parameters(recurse=False) if p.requires_grad]
            if params:
                self._layers.append((name or type(model).__name__, params))
        self._reset()
        # keep only the epochs already completed (a resumed run), else start afresh
        done = trainer.epoch
        self.records = []
        if self.path is not None and self.path.is_file() and done >= 0:
            for line in self.path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec["epoch"] <= done:
                        self.records.append(rec)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def _reset(self) -> None:
        self._sum = None
        self._max = None
        self._steps = 0

    def after_backward(self, trainer: Trainer, step: int) -> None:
        if not self._layers:
            return
        sq = []
        for _, params in self._layers:
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                sq.append(sum(g.detach().float().pow(2).sum() for g in grads))
            else:
                sq.append(torch.zeros((), device=params[0].device))
        norms = torch.stack(sq).sqrt()  # [n_layers], stays on the device: no sync per step
        if self._sum is None:
            self._sum = norms.clone()
            self._max = norms.clone()
        else:
            self._sum += norms
            torch.maximum(self._max, norms, out=self._max)
        self._steps += 1

    @torch.no_grad()
    def _activation_record(self, trainer: Trainer, epoch: int) -> dict[str, Any]:
        model = trainer.model
        acts = [(n, m) for n, m in model.named_modules() if isinstance(m, RELU_LIKE + SATURATING)]
        if not acts:
            return {}
        rng = np.random.default_rng([self.seed, epoch, 0xD1A6])
        try:
            batch = next(iter(model.batches(trainer.train_data, self.sample_size, rng)))
        except (StopIteration, NotImplementedError):
            return {}
        batch = move_to_device(batch, model.device)
        outputs: dict[str, dict[str, Any]] = {}
        handles = []
        for name, mod in acts:
            def hook(m: nn.Module, inp: Any, out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor) and name not in outputs:
                    outputs[name] = activation_stats(out, _kind(m), self.saturation_eps)
            handles.append(mod.register_forward_hook(hook))
        was_training = model.training
        model.eval()
        try:
            model.loss(batch)
        finally:
            model.train(was_training)
            for h in handles:
                h.remove()
        return {name: outputs[name] for name, _ in acts if name in outputs}

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        names = [n for n, _ in self._layers]
        rec: dict[str, Any] = {"epoch": int(epoch)}
        if self._sum is not None and self._steps:
            mean = (self._sum / self._steps).tolist()
            mx = self._max.tolist()
            rec["grad_norm"] = dict(zip(names, mean))
            rec["grad_norm_max"] = dict(zip(names, mx))
        else:
            rec["grad_norm"] = {}
            rec["grad_norm_max"] = {}
        with torch.no_grad():
            rec["weight_norm"] = {
                n: float(torch.stack([p.detach().float().norm() for p in ps]).pow(2).sum().sqrt())
                for n, ps in self._layers
            }
        rec["activations"] = self._activation_record(trainer, epoch)
        rec["sample_size"] = self.sample_size
        self.records.append(rec)
        self._reset()
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if (epoch + 1) % self.plot_every == 0:
            self._plot(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        self._plot(trainer)

    def _plot(self, trainer: Trainer) -> None:
        if self.plot and self.plot_path is not None and self.records:
            plot_diagnostics(self.records, self.plot_path,
                             title=f"{type(trainer.model).__name__} diagnostics")


def read_diagnostics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``diagnostics.jsonl`` (or of the run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / DIAGNOSTICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_diagnostics(records: list[dict[str, Any]], out: str | Path, title: str = "") -> Path:
    """Three panels per epoch: gradient norm per layer (log y), dead-ReLU / saturated fraction
    per activation layer, and activation output std per layer. Returns ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(16, 4.2), dpi=90)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    epochs = [r["epoch"] for r in records]

    layers: list[str] = []
    acts: list[str] = []
    for r in records:
        layers += [n for n in r.get("grad_norm", {}) if n not in layers]
        acts += [n for n in r.get("activations", {}) if n not in acts]

    ax = axes[0]
    for n in layers:
        ys = [r.get("grad_norm", {}).get(n, np.nan) for r in records]
        ax.plot(epochs, ys, marker="o", markersize=2, label=n)
    ax.set_yscale("log")
    ax.set_title("gradient norm per layer (mean over steps)")
    ax.set_xlabel("epoch")

    ax = axes[1]
    for n in acts:
        def frac(r: dict[str, Any], n: str = n) -> float:
            a = r.get("activations", {}).get(n)
            if not a:
                return np.nan
            v = a["dead_frac"] if a["dead_frac"] is not None else a["saturated_frac"]
            return np.nan if v is None else v
        ax.plot(epochs, [frac(r) for r in records], marker="o", markersize=2, label=n)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("dead ReLU units (tanh/sigmoid: saturated outputs)")
    ax.set_xlabel("epoch")

    ax = axes[2]
    for n in acts:
        ys = [r.get("activations", {}).get(n, {}).get("std", np.nan) for r in records]
        ax.plot(epochs, ys, marker="o", markersize=2, label=n)
    ax.set_title("activation output std per layer")
    ax.set_xlabel("epoch")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(out)
    return out
