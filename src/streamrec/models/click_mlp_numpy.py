"""The click-prediction MLP in pure numpy (``mlp-numpy``): hand-written backprop from
:mod:`streamrec.nn_numpy`, trained by its own mini-batch loop.

Same architecture as the torch ``mlp`` with ``norm="none"`` (or ``batchnorm``):
``z [B, F] -> (Linear -> [BatchNorm1d] -> act -> [Dropout]) x len(hidden) -> Linear -> logit``
on the standardised features (training statistics, as every click model), ``act`` being
``activation`` (SiLU by default, or ReLU). The layers start with ``init``: ``default`` (the
default) is torch's own ``nn.Linear`` initialisation, weights and biases from
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; ``he_normal`` and the other schemes of
:mod:`streamrec.nn_numpy.init` draw the weights and start the biases at zero. The output
layer's bias starts at the log-odds of the click rate, and its weights at zero (except with
``default``, which keeps them random), exactly as the torch MLP.

From the shared training loop's point of view the model is closed-form (``trainable =
False``): the loop calls :meth:`NumpyMLP.fit` once, which runs the numpy loop — shuffled
mini-batches, Adam / AdamW / SGD with the learning rate of ``fit_schedule`` (``cosine`` by
default, after ``fit_warmup_epochs`` of linear warmup; or ``constant``) set every step,
``fit_epochs`` epochs, early stopping on the validation AUC with ``fit_patience`` (the best
epoch's weights are kept), a line of progress per epoch. Its options are model options with
a ``fit_`` prefix so they never clash with the loop's.

The defaults are the torch ``mlp``'s recipe (``[256, 128, 64]``, SiLU, torch's init, Adam
2e-3 in batches of 1,024, cosine over 12 epochs after one of warmup, patience 4), so the two
implementations can be compared option for option (``docs/click_prediction.md``).

The weights live in numpy arrays that are *shared* with torch buffers (``net.0.weight`` ->
buffer ``net_0_weight``), so ``state_dict`` / safetensors / ``load_state_dict`` save and
restore the numpy network with no copying code.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from streamrec import nn_numpy as nnp
from streamrec.common import at_least, in_range, one_of
from streamrec.data.clicks import click_arrays
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Validate
from streamrec.models.click_logreg import ClickConfig, ClickRecommender

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclasses.dataclass
class NumpyMLPConfig(ClickConfig):
    """Options of the numpy click MLP (see the module docstring)."""

    hidden: list[int] = dataclasses.field(default_factory=lambda: [256, 128, 64])
    activation: str = "silu"
    init: str = "default"
    batchnorm: bool = False
    dropout: float = 0.0
    fit_epochs: int = 12
    fit_batch_size: int = 1024
    fit_optimizer: str = "adam"
    fit_lr: float = 2e-3
    #: ``cosine`` (to 0 at the last step) or ``constant``, set every optimiser step
    fit_schedule: str = "cosine"
    #: epochs of linear warmup, from ``fit_lr / W`` at the first of its ``W`` steps to
    #: ``fit_lr`` (may be fractional)
    fit_warmup_epochs: float = 1.0
    fit_weight_decay: float = 0.0
    fit_momentum: float = 0.9
    #: stop after this many epochs without a better validation AUC (0: never)
    fit_patience: int = 4
    #: seeds the initial weights, the dropout masks and the shuffling
    fit_seed: int = 0
    fit_progress: bool = True

    #: options added after runs were saved without them, with the values those runs had
    _ADDED_OPTIONS: ClassVar[dict[str, Any]] = {
        "activation": "relu", "fit_schedule": "constant", "fit_warmup_epochs": 0.0,
    }
    #: every option a run saved before them has in its ``config.json``
    _OPTIONS_BEFORE: ClassVar[frozenset[str]] = frozenset({
        "click_split", "click_split_seed", "click_split_ratios", "train_fraction", "hidden",
        "init", "batchnorm", "dropout", "fit_epochs", "fit_batch_size", "fit_optimizer",
        "fit_lr", "fit_weight_decay", "fit_momentum", "fit_patience", "fit_seed",
        "fit_progress",
    })

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> NumpyMLPConfig:
        """As every options class; the complete option set of a run saved before
        ``activation``, ``fit_schedule`` and ``fit_warmup_epochs`` existed (all of
        ``_OPTIONS_BEFORE``, none of those three) gets the values it was trained with (ReLU,
        constant rate, no warmup), not today's defaults, so an old run loads as the model it
        was."""
        values = dict(values)
        if cls._OPTIONS_BEFORE <= set(values) and not set(cls._ADDED_OPTIONS) & set(values):
            values.update(cls._ADDED_OPTIONS)
        return super().from_dict(values)  # type: ignore[return-value]

    def check(self) -> list[str]:
        problems = super().check()
        if any(h < 1 for h in self.hidden):
            problems.append(f"hidden widths must be >= 1, got {self.hidden}")
        return [
            *problems,
            *one_of("activation", self.activation, nnp.mlp.ACTIVATIONS),
            *one_of("init", self.init, sorted(nnp.init.INITIALIZERS)),
            *in_range("dropout", self.dropout, 0, 1, high_open=True),
            *at_least("fit_epochs", self.fit_epochs, 1),
            *at_least("fit_batch_size", self.fit_batch_size, 1),
            *one_of("fit_optimizer", self.fit_optimizer, OPTIMIZERS),
            *at_least("fit_lr", self.fit_lr, 0, strict=True),
            *one_of("fit_schedule", self.fit_schedule, nnp.schedules.SCHEDULES),
            *in_range("fit_warmup_epochs", self.fit_warmup_epochs, 0, self.fit_epochs),
            *at_least("fit_weight_decay", self.fit_weight_decay, 0),
            *in_range("fit_momentum", self.fit_momentum, 0, 1, high_open=True),
            *at_least("fit_patience", self.fit_patience, 0),
            *at_least("fit_seed", self.fit_seed, 0),
        ]


class NumpyMLP(ClickRecommender):
    """Click MLP trained with numpy (see the module docstring)."""

    name: ClassVar[str] = "mlp-numpy"
    Config: ClassVar[type[ModelConfig]] = NumpyMLPConfig
    trainable: ClassVar[bool] = False

    def __init__(self, config: NumpyMLPConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.net = nnp.build_mlp(
            self.n_features, config.hidden, dropout=config.dropout,
            batchnorm=config.batchnorm, init=config.init,
            rng=np.random.default_rng(config.fit_seed), dtype=np.float32,
            activation=config.activation,
        )
        # the output layer starts at the base rate, as in the torch MLP (init_output)
        if config.init != "default":
            self.net[-1].weight.data[...] = 0.0
        self.net[-1].bias.data[...] = self.base_logit
        self._arrays: list[np.ndarray] = []
        for name, arr in self._named_arrays():
            self.register_buffer("net_" + name.replace(".", "_"), torch.from_numpy(arr))
            self._arrays.append(arr)
        #: one dict per epoch of the last fit: epoch, loss, valid_auc, seconds
        self.history: list[dict[str, Any]] = []

    def _named_arrays(self) -> list[tuple[str, np.ndarray]]:
        return [(n, p.data) for n, p in self.net.named_parameters()] + self.net.named_buffers()

    def _sync_numpy(self) -> None:
        """Make the numpy arrays hold the buffers' values (a no-op while they share memory,
        i.e. unless the module was moved to another device or its buffers replaced)."""
        for arr, buf in zip(self._arrays, self._buffers_of_net()):
            if buf.device.type != "cpu" or buf.data_ptr() != arr.ctypes.data:
                arr[...] = buf.detach().cpu().numpy()

    def _buffers_of_net(self) -> list[torch.Tensor]:
        return [self.get_buffer("net_" + n.replace(".", "_")) for n, _ in self._named_arrays()]

    # ------------------------------------------------------------------ numpy network
    def numpy_logits(self, z: np.ndarray, training: bool = False,
                     batch_size: int = 65_536) -> np.ndarray:
        """Logits ``[n]`` (float32) of *standardised* features ``z`` ``[n, F]``."""
        if training:
            return self.net.forward(z, training=True)[:, 0]
        out = np.empty(len(z), dtype=np.float32)
        for s in range(0, len(z), batch_size):
            out[s : s + batch_size] = self.net.forward(z[s : s + batch_size], training=False)[:, 0]
        return out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features ``[B, F]`` -> logits ``[B]`` (computed with numpy)."""
        self._sync_numpy()
        z = self.standardizer.transform(features.detach().cpu().numpy())
        return torch.from_numpy(self.numpy_logits(z)).to(features.device)

    def _optimizer(self) -> nnp.Optimizer:
        c = self.config
        params = self.net.parameters()
        if c.fit_optimizer == "sgd":
            return nnp.SGD(params, lr=c.fit_lr, momentum=c.fit_momentum,
                           weight_decay=c.fit_weight_decay)
        if c.fit_optimizer == "adamw":
            return nnp.AdamW(params, lr=c.fit_lr, weight_decay=c.fit_weight_decay)
        return nnp.Adam(params, lr=c.fit_lr, weight_decay=c.fit_weight_decay)

    # ------------------------------------------------------------------ learning
    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        """Train on the training impressions; early-stop on the validation AUC.

        validate: ``model -> {"auc": ...}`` on the validation impressions (the training loop's
        own validation; without it every epoch is kept and the last one wins).
        Epoch ``e`` shuffles with ``default_rng([fit_seed, e])``; the learning rate of every
        step follows ``fit_schedule`` over ``fit_epochs * ceil(n / fit_batch_size)`` steps
        (:class:`streamrec.nn_numpy.LRScheduler`, the torch loop's rules). Every epoch prints
        ``epoch, mean train loss, valid AUC, seconds`` (when ``fit_progress``) and is appended to
        :attr:`history`. At the end the weights of the best validated epoch are restored.
        """
        c = self.config
        std = self.standardizer
        tr = click_arrays(train, "train", self.assign)
        x_tr = std.transform(tr.features)
        y_tr = tr.clicked.astype(np.float32)[:, None]
        opt = self._optimizer()
        steps_per_epoch = -(-len(y_tr) // c.fit_batch_size)
        sched = nnp.LRScheduler(
            opt, total_steps=c.fit_epochs * steps_per_epoch,
            warmup_steps=int(round(c.fit_warmup_epochs * steps_per_epoch)),
            schedule=c.fit_schedule,
        )
        loss_fn = nnp.BCEWithLogitsLoss()
        self.history = []
        best_auc, best_state, bad = -np.inf, None, 0
        t_start = time.perf_counter()
        for epoch in range(c.fit_epochs):
            t0 = time.perf_counter()
            rng = np.random.default_rng([c.fit_seed, epoch])
            total, n_seen = 0.0, 0
            for idx in nnp.iterate_minibatches(len(y_tr), c.fit_batch_size, rng):
                if c.batchnorm and len(idx) < 2:
                    continue  # BatchNorm needs two rows
                xb, yb = x_tr[idx], y_tr[idx]
                logits = self.net.forward(xb, training=True)
                loss = loss_fn.forward(logits, yb)
                opt.zero_grad()
                self.net.backward(loss_fn.backward(), need_input_grad=False)
                opt.step()
                sched.step()
                total += loss * len(idx)
                n_seen += len(idx)
            record: dict[str, Any] = {"epoch": epoch, "loss": total / max(n_seen, 1)}
            if not np.isfinite(record["loss"]):
                raise FloatingPointError(
                    f"mlp-numpy: non-finite training loss at epoch {epoch}; lower fit_lr "
                    f"(now {c.fit_lr})"
                )
            can_validate = False
            if validate is not None:
                record["valid_auc"] = float(validate(self)["auc"])
                can_validate = bool(np.isfinite(record["valid_auc"]))
            record["seconds"] = time.perf_counter() - t0
            self.history.append(record)
            improved = can_validate and record["valid_auc"] > best_auc
            if improved:
                best_auc, bad = record["valid_auc"], 0
                best_state = [a.copy() for a in self._arrays]
            elif can_validate:
                bad += 1
            if c.fit_progress:
                v = f"  valid auc {record['valid_auc']:.4f}" if can_validate else ""
                star = "  * best" if improved else ""
                print(f"mlp-numpy epoch {epoch:>3d}/{c.fit_epochs - 1}  loss "
                      f"{record['loss']:.4f}{v}{star}  {record['seconds']:.1f}s",
                      file=sys.stderr, flush=True)
            if can_validate and c.fit_patience and bad >= c.fit_patience:
                if c.fit_progress:
                    print(f"mlp-numpy: early stop (best valid auc {best_auc:.4f})",
                          file=sys.stderr, flush=True)
                break
        if best_state is not None:
            for arr, best in zip(self._arrays, best_state):
                arr[...] = best
        self.fit_seconds = time.perf_counter() - t_start
