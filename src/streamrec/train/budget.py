"""The training budget: batch size, steps, epochs, warm-up, validation and patience from the
size of the data (see ``docs/training.md``, "How the defaults adapt to the data").

A model's recipe (:class:`Recipe`, from its ``train_recipe``) says how it trains *at scale*:
its batch, its epochs. On a small dataset a fixed large batch makes a handful of optimizer
steps (12 epochs of 8,192 on 10k interactions is 12 steps), so the budget is counted in
optimizer steps instead, with a batch that shrinks for small data. For ``n`` training examples
per epoch (what the model's ``num_batches(train, 1)`` counts: interactions, users, windows):

* ``batch = clamp(pow2(n / min_steps_per_epoch), min_batch_size, batch_size)``, ``pow2``
  rounding to the nearest power of two: an epoch has at least about ``min_steps_per_epoch``
  steps, and the batch is the recipe's own on large data;
* ``steps_per_epoch = ceil(n / batch)``;
* ``epochs = min(max_epochs, max(recipe epochs, ceil(min_steps / steps_per_epoch)))``: at
  least ``min_steps`` optimizer steps in all (small data: more epochs), the recipe's epochs at
  scale;
* warm-up: ``round(warmup * total_steps)`` steps (given to the loop as ``warmup_epochs``);
* validation every ``ceil(epochs / evals)`` epochs (about ``evals`` validations in a run);
* patience (in validations): ``max(min_patience, ceil(patience * n_validations))``, and no
  early stop before epoch ``ceil(min_share * epochs)``;
* a wall-clock budget of :data:`DEFAULT_TIME_BUDGET` (10 minutes; ``time_budget=off`` or 0
  lifts it): when the epochs measured so far say the planned ones will not fit, the trainer shortens
  the schedule to the epochs that do (:func:`fit_epochs`), so the learning rate still decays
  to its end; the run also stops at the deadline with its best validated epoch.

Everything the user (``--set``, a config file) or the model (``train_defaults``) sets
explicitly wins; the rest is derived consistently from it (e.g. ``--set batch_size=32``
changes the steps per epoch and so the epochs). Pure functions, no torch.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

#: the train options the budget fills in when they are not set (None)
BUDGET_FIELDS = ("batch_size", "epochs", "warmup_epochs", "eval_every", "patience",
                 "min_epochs", "time_budget")

#: wall-clock seconds of training when none is set: what a default run may take on the
#: reference machine (issue 19: no default run over 10 minutes). ``time_budget=off`` (0)
#: means none.
DEFAULT_TIME_BUDGET = 600.0


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model trains at scale, and the floors that make it train on small data.

    batch_size: the batch on large data (the largest the budget picks).
    min_batch_size: the smallest batch the budget picks.
    min_steps_per_epoch: the batch shrinks until an epoch has about this many steps.
    epochs: epochs on large data.
    min_steps: optimizer steps in all at least (small data gets more epochs).
    max_epochs: epochs at most.
    warmup: share of all steps spent in linear LR warm-up (0: none).
    evals: about how many validations a run makes (sets the validation interval).
    patience: share of the run's validations without improvement before early stopping.
    min_patience: validations without improvement before stopping, at least.
    min_share: share of the epochs before early stopping may stop.
    """

    batch_size: int = 1024
    min_batch_size: int = 32
    min_steps_per_epoch: int = 100
    epochs: int = 20
    min_steps: int = 2000
    max_epochs: int = 300
    warmup: float = 0.02
    evals: int = 50
    patience: float = 0.2
    min_patience: int = 5
    min_share: float = 0.2

    @classmethod
    def of(cls, recipe: Mapping[str, Any] | None) -> Recipe:
        """A recipe from a model's ``train_recipe`` mapping (unknown keys are an error)."""
        recipe = dict(recipe or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"unknown train_recipe key(s) {unknown}; known: {sorted(known)}")
        return cls(**recipe)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the budget resolved for one run (recorded in ``results.json`` as
    ``train.budget``). ``set_by`` names, for each budget field, ``"budget"`` or ``"set"``
    (given by the user or the model's ``train_defaults``)."""

    examples: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    warmup_steps: int
    warmup_epochs: float
    eval_every: int
    validations: int
    patience: int
    min_epochs: int
    set_by: dict[str, str]
    #: wall-clock seconds of training at most (None: no limit)
    time_budget: float | None = None

    def describe(self) -> str:
        """One line for the start of training."""
        by = self.set_by

        def mark(name: str) -> str:
            return "" if by.get(name) == "budget" else " (set)"

        return (f"budget: {self.examples:,} examples/epoch -> batch {self.batch_size}"
                f"{mark('batch_size')}, {self.steps_per_epoch:,} steps/epoch x {self.epochs} "
                f"epochs{mark('epochs')} = {self.total_steps:,} steps; warm-up "
                f"{self.warmup_steps} steps{mark('warmup_epochs')}; validate every "
                f"{self.eval_every} epoch(s){mark('eval_every')}, patience {self.patience} "
                f"validations{mark('patience')}, no early stop before epoch "
                f"{self.min_epochs}{mark('min_epochs')}; time budget "
                f"{format_duration(self.time_budget) if self.time_budget else 'off'}"
                f"{mark('time_budget')}")


def pow2_round(x: float) -> int:
    """The power of two nearest to ``x`` in log scale (``x <= 1``: 1)."""
    if x <= 1:
        return 1
    return 1 << int(round(math.log2(x)))


def budget_batch_size(examples: int, recipe: Recipe) -> int:
    """The batch for ``examples`` training examples per epoch (module docstring)."""
    want = pow2_round(examples / max(1, recipe.min_steps_per_epoch))
    return int(min(recipe.batch_size, max(recipe.min_batch_size, want)))


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """``ceil(examples / batch_size)``, at least 1."""
    return max(1, -(-int(examples) // int(batch_size)))


def budget_epochs(steps: int, recipe: Recipe) -> int:
    """Epochs for ``steps`` optimizer steps per epoch: the recipe's epochs, or more to reach
    ``min_steps``, at most ``max_epochs`` (never below 1)."""
    need = -(-recipe.min_steps // max(1, steps))
    return int(max(1, min(recipe.max_epochs, max(recipe.epochs, need))))


def plan_budget(examples: int, recipe: Recipe, fixed: Mapping[str, Any] | None = None) -> Plan:
    """Resolve the budget for ``examples`` training examples per epoch.

    fixed: values of :data:`BUDGET_FIELDS` set explicitly (None or absent: the budget picks);
    the other fields are derived from them (see the module docstring).
    """
    fixed = {k: v for k, v in dict(fixed or {}).items() if v is not None and k in BUDGET_FIELDS}
    set_by = {k: ("set" if k in fixed else "budget") for k in BUDGET_FIELDS}
    examples = max(1, int(examples))
    batch = int(fixed.get("batch_size") or budget_batch_size(examples, recipe))
    spe = steps_per_epoch(examples, batch)
    epochs = int(fixed.get("epochs") or budget_epochs(spe, recipe))
    total = epochs * spe
    if "warmup_epochs" in fixed:
        warmup_epochs = float(fixed["warmup_epochs"])
        warm = int(round(warmup_epochs * spe))
    else:
        warm = int(round(recipe.warmup * total))
        warmup_epochs = warm / spe
    eval_every = int(fixed.get("eval_every") or max(1, -(-epochs // max(1, recipe.evals))))
    validations = max(1, -(-epochs // eval_every))
    if "patience" in fixed:
        patience = int(fixed["patience"])
    else:
        patience = max(recipe.min_patience, math.ceil(recipe.patience * validations))
    if "min_epochs" in fixed:
        min_epochs = int(fixed["min_epochs"])
    else:
        min_epochs = min(epochs, math.ceil(recipe.min_share * epochs))
    budget = float(fixed.get("time_budget", DEFAULT_TIME_BUDGET))  # 0 or inf: off
    return Plan(examples=examples, batch_size=batch, steps_per_epoch=spe, epochs=epochs,
                total_steps=total, warmup_steps=warm, warmup_epochs=warmup_epochs,
                eval_every=eval_every, validations=validations, patience=patience,
                min_epochs=min_epochs, set_by=set_by,
                time_budget=budget if 0 < budget < math.inf else None)


def fit_epochs(done: int, epochs: int, eval_every: int, seconds_left: float,
               epoch_seconds: float, valid_seconds: float, save_seconds: float = 0.0) -> int:
    """The most epochs in all (between ``done + 1`` and ``epochs``) whose remaining ones fit in
    ``seconds_left``, ``done`` epochs being complete.

    Epoch ``e`` (0-based) costs ``epoch_seconds + save_seconds``, plus ``valid_seconds`` when
    it validates: every ``eval_every``-th epoch and the last one. At least one more epoch is
    always granted (the deadline, not this plan, ends a run that has no time left).
    """
    best = done + 1
    every = max(1, int(eval_every))
    for total in range(done + 1, max(done + 1, int(epochs)) + 1):
        validations = total // every - done // every + (1 if total % every else 0)
        cost = (total - done) * (epoch_seconds + save_seconds) + validations * valid_seconds
        if cost > seconds_left:
            break
        best = total
    return min(best, max(done + 1, int(epochs)))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
#: how a duration says "no limit"
_NO_LIMIT = ("off", "none", "inf", "infinity", "no")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
                 "hr": 3600.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds of a duration: ``"90"`` / ``"90s"``, ``"5m"``, ``"1.5h"``, or a number of
    seconds; ``"off"`` (or ``none``, ``inf``) is ``math.inf``, no limit. Raises
    ``ValueError`` (saying what is accepted) for anything else or <= 0."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    elif str(text).strip().lower() in _NO_LIMIT:
        return math.inf
    else:
        m = _DURATION.match(str(text))
        if m is None:
            raise ValueError(f"cannot read the duration {text!r}: write e.g. 90s, 5m, 1.5h or "
                             "off")
        unit = m.group(2).lower() if m.group(2) else None
        seconds = float(m.group(1)) * _UNIT_SECONDS[unit]
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``"5m"``, ``"1h30m"``, ``"45s"``, ``"2m30s"``: a short form of ``seconds``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{sec}s" if sec or s == 0 else ""]
    return "".join(parts)


def resolve_config(cfg: Any, examples: int, recipe: Recipe) -> tuple[Any, Plan]:
    """``(cfg with every unset budget field filled in, the plan)``: ``cfg`` is a
    :class:`~streamrec.train.TrainConfig` whose :data:`BUDGET_FIELDS` left None are resolved
    for ``examples`` training examples per epoch; fields already set are kept (a
    ``time_budget`` of 0 or ``inf``, "off", becomes None: no limit)."""
    plan = plan_budget(examples, recipe, {k: getattr(cfg, k) for k in BUDGET_FIELDS})
    filled = {k: getattr(plan, k) for k in BUDGET_FIELDS if getattr(cfg, k) is None}
    if cfg.time_budget is not None and not 0 < cfg.time_budget < math.inf:
        filled["time_budget"] = None
    return dataclasses.replace(cfg, **filled), plan
