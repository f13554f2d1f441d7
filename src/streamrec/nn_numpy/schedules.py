"""Learning-rate schedules for the numpy optimisers, stepped once per optimiser step.

The same rules as the torch training loop (:mod:`streamrec.train.schedules`), so the numpy
and the torch MLP can follow the same recipe. For ``T`` optimiser steps in all, ``W`` of them
linear warmup, the step with 0-based index ``s`` uses ``lr * factor(s)``::

    constant   factor(s) = 1
    cosine     factor(s) = r + (1 - r) * (1 + cos(pi * p)) / 2,   p = (s - W) / (T - 1 - W)

(``r = min_lr_ratio``; ``p`` is clipped to [0, 1]): the full ``lr`` right after warmup,
``lr * r`` at the last step ``T - 1``. During warmup (``s < W``) the factor is multiplied by
``(s + 1) / W``, so the first step uses ``lr / W`` and step ``W - 1`` the full ``lr``.

:class:`LRScheduler` applies it to an :class:`~streamrec.nn_numpy.optim.Optimizer`: at
construction it sets the rate of step 0, and ``step()`` (called after every
``optimizer.step()``) sets the rate of the next step, like ``torch.optim.lr_scheduler``.
"""

from __future__ import annotations

import math

from .optim import Optimizer

__all__ = ["SCHEDULES", "LRScheduler", "lr_factor"]

SCHEDULES = ("constant", "cosine")


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "constant",
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the base learning rate for the 0-based optimiser step ``step``."""
    total = max(1, int(total_steps))
    warm = max(0, int(warmup_steps))
    if schedule == "constant":
        factor = 1.0
    elif schedule == "cosine":
        if step < warm:
            factor = 1.0
        else:
            p = min(1.0, (step - warm) / max(1, total - 1 - warm))
            r = float(min_lr_ratio)
            factor = r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if step < warm:
        factor *= (step + 1) / warm
    return float(factor)


class LRScheduler:
    """Sets ``optimizer.lr = base_lr * lr_factor(s, ...)`` for optimiser step ``s``.

    ``base_lr`` is the optimiser's rate when the scheduler is made. Call :meth:`step` after
    every ``optimizer.step()``; :attr:`steps_done` counts those calls.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        schedule: str = "constant",
        min_lr_ratio: float = 0.0,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.schedule = schedule
        self.min_lr_ratio = float(min_lr_ratio)
        self.steps_done = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, step: int) -> float:
        """The learning rate of 0-based optimiser step ``step``."""
        return self.base_lr * lr_factor(
            step, self.total_steps, self.warmup_steps, self.schedule, self.min_lr_ratio
        )

    def step(self) -> None:
        """One optimiser step is done: set the rate of the next one."""
        self.steps_done += 1
        self.optimizer.lr = self.lr_at(self.steps_done)
