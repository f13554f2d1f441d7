"""The training loop's options (:class:`TrainConfig`) and how a run's options are built.

A run is configured by three tables, from defaults, then a file, then ``--set`` strings::

    {"model": {"dim": 64}, "train": {"lr": 0.005, "epochs": 30}, "split": {"method": "loo"}}

* defaults: the model config's field defaults and :class:`TrainConfig`'s, overridden by the
  model's own ``train_defaults`` (part of the model contract);
* a config file (JSON, or TOML) with any of the three tables (:func:`read_config_file`);
* ``--set key=value`` (:func:`apply_overrides`): keys may be qualified (``model.dim=64``,
  ``train.lr=5e-3``, ``split.method=loo``) or bare (``lr=5e-3``); a bare key goes to whichever
  of the model and train configs has that field, and is an error if both or neither do.

:func:`build_configs` does all three and returns the checked model config, train config and
split spec; every bad value is reported at once, naming the option (:class:`OptionsError`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamrec.common import Options, OptionsError, at_least, in_range, one_of, parse_value
from streamrec.train.schedules import OPTIMIZERS, SCHEDULES

SECTIONS = ("model", "train", "split")
#: the training loop's arithmetic: float32, or bfloat16 mixed precision (``TrainConfig.precision``)
PRECISIONS = ("fp32", "bf16")


@dataclasses.dataclass
class TrainConfig(Options):
    """Options of the training loop (see ``docs/training.md`` for the full table).

    ``None`` in ``epochs``, ``batch_size``, ``warmup_epochs``, ``eval_every``, ``patience`` and
    ``min_epochs`` means: resolved by the training budget from the size of the data and the
    model's recipe when training starts (:mod:`streamrec.train.budget`).
    """

    kind = "train option"

    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "constant"
    warmup_epochs: float | None = None
    step_size: int = 10
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    clip_norm: float | None = None
    patience: int | None = None
    #: no early stop before this many epochs
    min_epochs: int | None = None
    #: early stopping compares the mean of the last ``smooth`` validations (1: raw values)
    smooth: int = 3
    valid_metric: str = "ndcg@20"
    metric_mode: str = "max"
    eval_every: int | None = None
    #: wall-clock seconds of training at most (``--time-budget 5m``): epochs, validations and
    #: checkpoint writes; the run stops early enough for its last ones to fit; the best
    #: epoch is kept. None: the budget's default (10 minutes); 0 (``"off"``): no limit
    time_budget: float | None = None
    #: with a time budget, shorten ``epochs`` (and the LR schedule with them) when the epochs
    #: measured so far say the planned ones will not fit; False: keep the schedule and stop at
    #: the deadline
    fit_to_time_budget: bool = True
    seed: int = 0
    device: str = "cpu"
    #: ``fp32``, or ``bf16``: mixed precision, the forward pass and loss under
    #: ``torch.autocast(dtype=bfloat16)`` (matrix products in bfloat16, weights, optimizer
    #: state and gradients kept in float32); validation and scoring stay in float32
    precision: str = "fp32"
    progress: bool = True
    threads: int | None = None
    #: per-layer gradient norms and activation statistics (``diagnostics.jsonl`` / ``.png``)
    diagnostics: bool = False
    #: internal/testing: raise TrainingInterrupted after this many epochs of one fit() call
    stop_after_epochs: int | None = None

    def __post_init__(self) -> None:
        for name in ("optimizer", "schedule", "metric_mode", "device", "precision"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, value.lower())
        if isinstance(self.time_budget, str):  # --set time_budget=5m, a config file's "90s"
            from streamrec.train.budget import parse_duration

            try:
                self.time_budget = parse_duration(self.time_budget)
            except ValueError as e:
                raise ValueError(f"time_budget: {e}") from None
        if isinstance(self.time_budget, float) and math.isinf(self.time_budget):
            self.time_budget = 0.0  # "off": no limit
        super().__post_init__()

    def check(self) -> list[str]:
        return [
            *at_least("epochs", self.epochs, 1),
            *at_least("batch_size", self.batch_size, 1),
            *one_of("optimizer", self.optimizer, OPTIMIZERS),
            *one_of("schedule", self.schedule, SCHEDULES),
            *at_least("lr", self.lr, 0, strict=True),
            *at_least("weight_decay", self.weight_decay, 0),
            *in_range("momentum", self.momentum, 0, 1, high_open=True),
            *[p for i, b in enumerate(self.betas)
              for p in in_range(f"betas[{i}]", b, 0, 1, high_open=True)],
            *in_range("warmup_epochs", self.warmup_epochs, 0,
                      self.epochs if self.epochs is not None else float("inf")),
            *at_least("step_size", self.step_size, 1),
            *at_least("gamma", self.gamma, 0, strict=True),
            *in_range("min_lr_ratio", self.min_lr_ratio, 0, 1),
            *at_least("clip_norm", self.clip_norm, 0, strict=True),
            *at_least("patience", self.patience, 0),
            *at_least("min_epochs", self.min_epochs, 0),
            *at_least("smooth", self.smooth, 1),
            *at_least("time_budget", self.time_budget, 0),
            *one_of("metric_mode", self.metric_mode, ("max", "min")),
            *one_of("precision", self.precision, PRECISIONS),
            *at_least("eval_every", self.eval_every, 1),
            *at_least("seed", self.seed, 0),
            *at_least("threads", self.threads, 1),
            *at_least("stop_after_epochs", self.stop_after_epochs, 1),
        ]


# ====================================================================== building a run's options
def read_config_file(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read a JSON or TOML config file into ``{"model": {...}, "train": {...}, "split": {...}}``.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file for a missing, unreadable or
    malformed file.
    """
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if path is None:
        return out
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ValueError(f"config file {path} is not valid {kind}: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config file {path} must hold a table with {', '.join(SECTIONS)}")
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; use {list(SECTIONS)}")
    for s in SECTIONS:
        if not isinstance(raw.get(s, {}), dict):
            raise ValueError(f"{path}: section {s!r} must be a table of options")
        out[s].update(raw.get(s, {}))
    return out


def apply_overrides(
    sections: dict[str, dict[str, Any]],
    overrides: Sequence[str],
    model_fields: set[str],
    train_fields: set[str],
) -> dict[str, dict[str, Any]]:
    """Merge ``key=value`` strings into the sections (see the module docstring)."""
    for item in overrides:
        if "=" not in item:
            raise OptionsError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        value = parse_value(text)
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise OptionsError(f"--set {key}: unknown section {section!r}; use "
                                   f"{', '.join(SECTIONS)}")
            known = {"model": model_fields, "train": train_fields}.get(section)
            if known is not None and name not in known:
                raise OptionsError(f"--set {key}: unknown {section} option {name!r}; "
                                   f"known: {', '.join(sorted(known))}")
        else:
            name = key
            homes = [s for s, f in (("model", model_fields), ("train", train_fields)) if name in f]
            if len(homes) != 1:
                raise OptionsError(
                    f"--set {key}: {name!r} is both a model and a train option; write "
                    f"model.{name} or train.{name}"
                    if homes
                    else f"--set {key}: unknown option {name!r}. Model options: "
                    f"{', '.join(sorted(model_fields))}; train options: "
                    f"{', '.join(sorted(train_fields))}"
                )
            section = homes[0]
        sections[section][name] = value
    return sections


def field_names(cls: type) -> set[str]:
    """Field names of a dataclass type."""
    return {f.name for f in dataclasses.fields(cls)}


def build_configs(
    model_name: str,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Any, TrainConfig, dict[str, Any]]:
    """Model config, train config and split spec from defaults, a file and ``--set`` strings
    (see the module docstring). Raises :class:`OptionsError` naming every bad option."""
    from streamrec.models import get_model_class

    cls = get_model_class(model_name)
    sections = read_config_file(config_file)
    sections["train"] = {**cls.train_defaults, **sections["train"]}
    apply_overrides(sections, list(overrides), field_names(cls.Config), field_names(TrainConfig))
    problems = []
    model_cfg = train_cfg = None
    try:
        model_cfg = cls.Config.from_dict(sections["model"])
    except OptionsError as e:
        problems.append(str(e))
    try:
        train_cfg = TrainConfig.from_dict(sections["train"])
    except OptionsError as e:
        problems.append(str(e))
    if problems:
        raise OptionsError("; ".join(problems))
    assert model_cfg is not None and train_cfg is not None
    return model_cfg, train_cfg, sections["split"]
