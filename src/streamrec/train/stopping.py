"""Early stopping that does not stop on validation noise.

A validation metric measured on a few hundred users moves by noise from one epoch to the next:
a lucky early epoch sets a record that the raw curve then takes a while to beat, and "stop after
``patience`` validations without a new best" ends a run that is still improving (GRU on
MovieLens-100k stopped at epoch 9 with its best at epoch 3). :class:`EarlyStopping` decides on a
smoothed curve instead:

* the value compared is the mean of the last ``smooth`` validations (a moving average: its
  noise is ``1/sqrt(smooth)`` of the raw one), and a new best of that mean resets the count;
* it never stops before ``min_epochs`` epochs (the budget scales this with the run);
* ``patience`` counts validations without a new smoothed best.

Which weights are kept is a separate question, answered by the raw metric (the trainer keeps the
epoch with the best raw validation value, as before). ``smooth=1, min_epochs=0`` is the classic
rule.
"""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """Smoothed, patient early stopping (see the module docstring).

    mode: ``"max"`` or ``"min"``; patience: validations without a new smoothed best before
    stopping (0: never stop); smooth: validations in the moving average (>= 1); min_epochs: no
    stop before this many epochs have been trained.
    """

    def __init__(self, mode: str = "max", patience: int = 5, smooth: int = 3,
                 min_epochs: int = 0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.mode, self.patience = mode, int(patience)
        self.smooth, self.min_epochs = max(1, int(smooth)), int(min_epochs)
        self.values: list[float] = []
        self.best_smoothed: float | None = None
        self.bad = 0

    def smoothed(self) -> float | None:
        """Mean of the last ``smooth`` finite values (None before any)."""
        recent = [v for v in self.values[-self.smooth:] if math.isfinite(v)]
        return sum(recent) / len(recent) if recent else None

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def update(self, epoch: int, value: float) -> bool:
        """Record the validation of 0-based ``epoch``; return whether training should stop."""
        self.values.append(float(value))
        s = self.smoothed()
        if s is not None and (self.best_smoothed is None or self._better(s, self.best_smoothed)):
            self.best_smoothed = s
            self.bad = 0
        else:
            self.bad += 1
        return bool(self.patience and self.bad >= self.patience
                    and epoch + 1 >= self.min_epochs)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue exactly."""
        return {"values": list(self.values), "best_smoothed": self.best_smoothed,
                "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = [float(v) for v in state["values"]]
        self.best_smoothed = state["best_smoothed"]
        self.bad = int(state["bad"])


def stop_epoch(curve: list[float], stopper: EarlyStopping, eval_every: int = 1) -> int | None:
    """The 0-based epoch at which ``stopper`` ends a run whose validations are ``curve``
    (one every ``eval_every`` epochs), or None if it runs to the end: for tests and plots."""
    for k, v in enumerate(curve):
        epoch = (k + 1) * eval_every - 1
        if stopper.update(epoch, v):
            return epoch
    return None
