"""Run directories: train a model into one, load it back with one call, evaluate it.

A run directory is self-describing::

    config.json          model name + config, train config, split spec, data location, version
    split.json/.npz      the exact split used (method, parameters, every assignment)
    model.safetensors    the chosen weights (best validation epoch, or final)
    extra/               non-tensor model state (e.g. a vocabulary), if any
    checkpoint.pt        last epoch's full state (weights, optimizer, scheduler, RNG) for --resume
    metrics.jsonl        one line per epoch
    training_curve.png   loss and validation metrics per epoch
    results.json         final validation and test metrics with their protocol (written last:
                         a run without it did not finish)

``train_run`` checks every option, the optional packages the model needs and the model's
construction on the data **before** it writes anything; ``load_run(path)`` rebuilds the model
from ``config.json`` and the training view of the recorded data and split, and loads the
weights. A missing or damaged file is a one-line error naming it and the way to recover.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamrec import __version__
from streamrec.common import OptionsError, json_default, resolve_device, write_text_atomic
from streamrec.data.dataset import Dataset, DatasetError, load_dataset
from streamrec.data.splits import Split, default_split_spec, split_from_spec

DEFAULT_KS = (10, 20)
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"


class RunError(ValueError):
    """A run directory is missing, damaged, or cannot be used as asked (one-line message)."""


class RunExistsError(RunError, FileExistsError):
    """The output directory already holds a run (or other files)."""


@dataclasses.dataclass
class Run:
    """A trained model with its data, split and configuration.

    ``results`` holds ``results.json`` (empty when training did not finish); ``cache`` is free
    for the serving layer to keep what it builds for this run (e.g. ANN indexes).
    """

    path: Path | None
    config: dict[str, Any]
    dataset: Dataset
    split: Split
    model: Any
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def train_data(self) -> Dataset:
        return self.split.train(self.dataset)

    @property
    def finished(self) -> bool:
        """Whether training ran to its end (``results.json`` was written)."""
        return bool(self.results)

    def progress_note(self) -> str | None:
        """One line about an unfinished run (which weights it holds), or None when finished."""
        if self.finished or self.path is None:
            return None
        done = 0
        metrics = self.path / "metrics.jsonl"
        if metrics.is_file():
            done = sum(1 for line in metrics.read_text().splitlines() if line.strip())
        epochs = self.config.get("train_config", {}).get("epochs")
        of = f" of {epochs}" if epochs else ""
        return (f"run {self.path} did not finish training ({done}{of} epochs done): these are "
                "the best weights so far; continue it with `streamrec train ... --resume`")

    def evaluate(
        self,
        stage: str = "test",
        ks: Sequence[int] = DEFAULT_KS,
        sampled: int | None = None,
        batch_size: int = 1024,
        test_history: str = "train+valid",
        average: str = "users-with-test",
    ) -> dict[str, Any]:
        """Metrics of the model on ``stage`` (``valid`` or ``test``), full ranking by default
        (AUC / log-loss on held-out impressions for click models); ``test_history`` (what the
        model reads at the test stage: ``train+valid`` or ``train``) and ``average``
        (``users-with-test`` or ``all-users``) as in
        :func:`~streamrec.eval.evaluator.evaluate_ranking`."""
        from streamrec.eval.evaluator import evaluate_model

        return evaluate_model(self.model, self.dataset, self.split, stage, ks,
                              sampled=sampled, batch_size=batch_size,
                              test_history=test_history, average=average)


def as_run(run: Run | str | Path) -> Run:
    """A :class:`Run` as it is, or the run directory ``run`` loaded with :func:`load_run`."""
    return run if isinstance(run, Run) else load_run(run)


def _prepare_out(out: Path, resume: bool, overwrite: bool, clear: bool = True) -> None:
    """Check that ``out`` can take a new run (or a resumed one); clear it on ``overwrite``
    (``clear=False``: only check, so that options, data and model are checked before an old
    run is deleted)."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a directory for the run")
    if resume or not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        what = "a run" if (out / CONFIG_FILE).is_file() else "files"
        raise RunExistsError(f"run directory {out} already holds {what}; continue it with "
                             "--resume, replace it with --overwrite, or choose another --out")
    if not (out / CONFIG_FILE).is_file():
        raise RunError(f"--overwrite refuses to clear {out}: it is not a run directory (no "
                       f"{CONFIG_FILE}); choose another --out")
    if clear:
        shutil.rmtree(out)


def _saved_config(out: Path | None, model_name: str) -> dict[str, Any]:
    if out is None or not (out / CONFIG_FILE).is_file():
        raise RunError(f"--resume needs an existing run directory; {out} has no {CONFIG_FILE}")
    config = read_run_config(out)
    if config["model"] != model_name:
        raise RunError(f"run {out} trained {config['model']!r}, not {model_name!r}")
    return config


def train_run(
    model_name: str,
    data: str | Path | Dataset,
    out: str | Path | None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
    progress: bool = True,
    console: Any = None,
    callbacks: Sequence[Any] = (),
    test_history: str = "train+valid",
    average: str = "users-with-test",
    distributed: bool = False,
) -> Run:
    """Train ``model_name`` on a dataset into run directory ``out``; evaluate it.

    The final test evaluation reads ``test_history`` and averages by ``average`` (see
    :func:`~streamrec.eval.evaluator.evaluate_ranking`); validation keeps the defaults.

    ``resume=True`` continues the run in ``out`` with its own saved options from
    ``checkpoint.pt`` exactly where it stopped (a run killed before its first checkpoint starts
    again from the beginning); options cannot change on resume. ``overwrite=True`` replaces an
    existing run. ``callbacks`` are extra :class:`~streamrec.train.Callback` objects.
    Everything is checked before anything is written. ``distributed=True``: this process is
    one rank of a torchrun job (:mod:`streamrec.train.distributed`): it joins the process
    group, trains its share with DistributedDataParallel, evaluates its share of the users, and
    only rank 0 writes ``out`` (the caller leaves the process group).
    """
    import torch

    from streamrec.eval.evaluator import (
        check_click_protocol,
        check_protocol,
        evaluate_model,
        has_stage,
    )
    from streamrec.models import check_requirements, get_model_class
    from streamrec.train import TrainConfig, Trainer
    from streamrec.train.checkpoint import CHECKPOINT_FILE
    from streamrec.train.config import build_configs

    out_path = Path(out) if out is not None else None
    if resume and overwrite:
        raise RunError("--resume continues a run and --overwrite replaces it: choose one")
    # a torchrun worker: rank 0 alone prepares and writes the run directory
    main = not distributed or int(os.environ.get("RANK", "0")) == 0
    if out_path is not None and main:
        _prepare_out(out_path, resume, overwrite, clear=False)  # cleared once all is checked
    cls = get_model_class(model_name)
    check_protocol(test_history, average)
    if cls.task == "click":
        check_click_protocol(model_name, test_history, average)
    fresh_start = False
    if resume:
        if list(overrides) or config_file is not None:
            raise RunError("--resume continues a run with its saved options, so --set and "
                           "--config cannot change them; to train with other options (e.g. "
                           "more epochs) start a new run with --out DIR or --overwrite")
        saved = _saved_config(out_path, model_name)
        model_cfg = cls.Config.from_dict(saved["model_config"])
        train_cfg = TrainConfig.from_dict(saved["train_config"])
        train_cfg.stop_after_epochs = None  # a testing aid of the interrupted call only
        split_spec = saved["split"]
        fresh_start = not (out_path / CHECKPOINT_FILE).is_file() and cls.trainable
    else:
        model_cfg, train_cfg, split_spec = build_configs(model_name, config_file, overrides)
    check_requirements(cls, model_cfg)
    if not progress:
        train_cfg.progress = False
    device = resolve_device(train_cfg.device)
    dist = None
    if distributed:
        from streamrec.train.distributed import init_from_env

        if not cls.trainable and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RunError(f"{model_name} is fitted in closed form, not by gradient descent: "
                           "data-parallel training (--nproc) does not apply; train it without "
                           "--nproc")
        dist = init_from_env(device)  # gloo on the CPU, nccl on GPU LOCAL_RANK
        device = dist.device
        if not main and console is not None:
            from rich.console import Console

            console = Console(quiet=True)
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    split_spec = {**default_split_spec(ds), **split_spec}
    split = split_from_spec(ds, split_spec)
    train = split.train(ds)
    torch.manual_seed(train_cfg.seed)
    model = cls(model_cfg, train)  # data-dependent checks fail here, before any file exists
    model.to(device)
    if out_path is not None and main:
        _prepare_out(out_path, resume, overwrite)  # --overwrite: the old run goes only now

    config = {
        "streamrec_version": __version__,
        "model": model_name,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "split": split_spec,
        "data": {
            "path": str(Path(ds.path).resolve()) if ds.path is not None else None,
            "name": ds.name,
            "n_users": ds.n_users,
            "n_items": ds.n_items,
            "n_interactions": ds.n_interactions,
        },
        "ks": list(ks),
    }
    if out_path is not None and main:
        out_path.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_text_atomic(out_path / CONFIG_FILE, json.dumps(config, indent=2))
            split.save(out_path)
        (out_path / RESULTS_FILE).unlink(missing_ok=True)
    if fresh_start and console is not None:
        console.print(f"[yellow]{out_path} has no completed epoch to resume: training from the "
                      "start with its saved options[/yellow]")

    has_valid = has_stage(model, ds, split, "valid")
    validate = None
    if has_valid:

        def validate(m: Any, max_users: int | None = None) -> dict[str, float]:
            subset = {} if max_users is None else {"max_users": max_users}  # seeded sample
            return evaluate_model(m, ds, split, "valid", ks, dist=dist, **subset)["metrics"]

    t0 = time.perf_counter()
    trainer = Trainer(model, train, train_cfg, out_path, validate=validate,
                      callbacks=list(callbacks), console=console, dist=dist)
    result = trainer.fit(resume=resume and not fresh_start)
    train_seconds = time.perf_counter() - t0
    model.eval()
    run = Run(out_path, config, ds, split, model)
    results: dict[str, Any] = {"train_seconds": train_seconds, "train": dataclasses.asdict(result)}
    results["train"].pop("history", None)
    if has_valid:
        results["valid"] = evaluate_model(model, ds, split, "valid", ks, dist=dist)
    if has_stage(model, ds, split, "test"):
        results["test"] = evaluate_model(model, ds, split, "test", ks, dist=dist,
                                         test_history=test_history, average=average)
    if dist is not None:
        results["train"]["world_size"] = dist.world_size
    run.results = results
    if out_path is not None and main:
        _save_extra(model, out_path)
        write_text_atomic(out_path / RESULTS_FILE,
                          json.dumps(results, indent=2, default=json_default))
    return run


def check_launch(model_name: str, out: str | Path, config_file: str | Path | None = None,
                 overrides: Sequence[str] = (), resume: bool = False,
                 overwrite: bool = False) -> None:
    """What a data-parallel launch (``streamrec train --nproc``) checks before it starts any
    process: the options, that the model is trained by the loop, and the run directory (which
    ``overwrite`` clears here, once). Raises :class:`RunError` / ``OptionsError`` (one line)."""
    from streamrec.models import check_requirements, get_model_class
    from streamrec.train.config import build_configs

    out_path = Path(out)
    if resume and overwrite:
        raise RunError("--resume continues a run and --overwrite replaces it: choose one")
    cls = get_model_class(model_name)
    if not cls.trainable:
        raise RunError(f"{model_name} is fitted in closed form, not by gradient descent: "
                       "data-parallel training (--nproc) does not apply; train it without "
                       "--nproc")
    if resume:
        if list(overrides) or config_file is not None:
            raise RunError("--resume continues a run with its saved options, so --set and "
                           "--config cannot change them")
        _saved_config(out_path, model_name)
    else:
        model_cfg, _, _ = build_configs(model_name, config_file, overrides)
        check_requirements(cls, model_cfg)
    _prepare_out(out_path, resume, overwrite)


def _save_extra(model: Any, out: Path) -> None:
    files = model.extra_state_files()
    if files:
        (out / "extra").mkdir(exist_ok=True)
        for name, data in files.items():
            (out / "extra" / name).write_bytes(data)


def read_run_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a run directory; :class:`RunError` naming the file when it is
    missing or damaged."""
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not path.is_dir():
        raise RunError(f"{path} is not a run directory (it does not exist)" if not path.exists()
                       else f"{path} is a file, not a run directory")
    if not cfg_file.is_file():
        raise RunError(f"{path} is not a StreamRec run directory (no {CONFIG_FILE})")
    try:
        config = json.loads(cfg_file.read_text())
        for key in ("model", "model_config", "train_config", "split", "data"):
            config[key]  # noqa: B018 - presence check
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RunError(f"{cfg_file} is damaged (not the JSON config of a run); the run cannot be "
                       "rebuilt: retrain it (streamrec train ... --overwrite)") from None
    return config


def load_run(path: str | Path, device: str = "cpu", data: str | Path | None = None) -> Run:
    """Load a run directory: config, data (from the recorded path unless ``data``), split,
    model and weights. Raises :class:`RunError` (one line) for a missing or damaged file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from streamrec.models import check_requirements, get_model_class
    from streamrec.train.checkpoint import WEIGHTS_FILE

    path = Path(path)
    config = read_run_config(path)
    dev = resolve_device(device)
    data_path = data if data is not None else config["data"]["path"]
    if data_path is None:
        raise RunError(f"run {path} was trained on in-memory data; pass its dataset with --data")
    if not Path(data_path).exists():
        raise RunError(f"the run's dataset {data_path} is gone; pass its new location "
                       "(--data DIR)")
    ds = load_dataset(data_path)
    if (ds.n_users, ds.n_items) != (config["data"]["n_users"], config["data"]["n_items"]):
        raise RunError(f"dataset at {data_path} does not match the one run {path} was trained "
                       f"on ({ds.n_users}x{ds.n_items} vs {config['data']['n_users']}x"
                       f"{config['data']['n_items']} users x items)")
    try:
        split = Split.load(path)
    except DatasetError as e:
        raise RunError(str(e)) from None
    if len(split.assign) != ds.n_interactions:
        raise RunError(f"{path / 'split.npz'} does not match the dataset at {data_path} "
                       f"({len(split.assign)} vs {ds.n_interactions} interactions)")
    cls = get_model_class(config["model"])
    try:
        model_cfg = cls.Config.from_dict(config["model_config"])
    except OptionsError as e:
        raise RunError(f"{path / CONFIG_FILE}: {e}") from None
    check_requirements(cls, model_cfg)
    model = cls(model_cfg, split.train(ds))
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise RunError(f"run {path} has no {WEIGHTS_FILE}: training stopped before its first "
                       "epoch ended; continue it with --resume or retrain with --overwrite")
    extra = path / "extra"
    if extra.is_dir():
        model.load_extra_state_files({f.name: f.read_bytes() for f in extra.iterdir()})
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError):
        raise RunError(f"{weights} is damaged (truncated or not a safetensors file); retrain "
                       "(--overwrite), or rerun with --resume if checkpoint.pt is intact"
                       ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise RunError(f"{weights} does not fit the model of {path / CONFIG_FILE} ({first}); "
                       "retrain the run (--overwrite)") from None
    model.to(dev)
    model.eval()
    results: dict[str, Any] = {}
    results_file = path / RESULTS_FILE
    if results_file.is_file():
        try:
            results = json.loads(results_file.read_text())
        except (ValueError, UnicodeDecodeError):
            raise RunError(f"{results_file} is damaged; delete it and re-evaluate the run "
                           "(streamrec evaluate)") from None
    return Run(path, config, ds, split, model, results)
