"""Run directories: train a model into one, load it back with one call, evaluate, recommend.

A run directory is self-describing::

    config.json          model name + config, train config, split spec, data location, version
    split.json/.npz      the exact split used (method, parameters, every assignment)
    model.safetensors    the chosen weights (best validation epoch, or final)
    extra/               non-tensor model state (e.g. a vocabulary), if any
    checkpoint.pt        last epoch's full state (weights, optimizer, scheduler, RNG) for --resume
    metrics.jsonl        one line per epoch
    training_curve.png   loss and validation metrics per epoch
    results.json         final validation and test metrics with their protocol

``load_run(path)`` rebuilds the model from ``config.json`` and the training view of the
recorded data and split, and loads the weights.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import __version__
from streamrec.config import apply_overrides, field_names, read_config_file
from streamrec.data.dataset import Dataset, load_dataset
from streamrec.data.splits import Split, make_split

DEFAULT_KS = (10, 20)


def default_split_spec(ds: Dataset) -> dict[str, Any]:
    """``given`` when the files came with a split, else leave-last-out."""
    return {"method": "given"} if "given_split" in ds.inter else {"method": "loo"}


def _split_from_spec(ds: Dataset, spec: dict[str, Any]) -> Split:
    spec = dict(spec)
    method = spec.pop("method", default_split_spec(ds)["method"])
    seed = int(spec.pop("seed", 0))
    return make_split(ds, method, seed=seed, **spec)


@dataclasses.dataclass
class Run:
    """A trained model with its data, split and configuration."""

    path: Path | None
    config: dict[str, Any]
    dataset: Dataset
    split: Split
    model: Any
    results: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def train_data(self) -> Dataset:
        return self.split.train(self.dataset)

    def evaluate(
        self,
        stage: str = "test",
        ks: Sequence[int] = DEFAULT_KS,
        sampled: int | None = None,
        batch_size: int = 1024,
    ) -> dict[str, Any]:
        """Metrics of the model on ``stage`` (``valid`` or ``test``), full ranking by default."""
        from streamrec.eval.evaluator import evaluate_model

        kwargs: dict[str, Any] = {}
        if getattr(self.model, "task", "ranking") == "ranking":
            kwargs = {"sampled": sampled, "batch_size": batch_size}
        elif sampled is not None:
            raise ValueError("sampled evaluation applies to ranking models only")
        return evaluate_model(self.model, self.dataset, self.split, stage, ks, **kwargs)

    def recommend(
        self, user: str | int, k: int = 10, exclude_seen: bool = True, stage: str = "test"
    ) -> list[dict[str, Any]]:
        """Top-``k`` items for an original user id: ``[{"item": id, "score": s, ...}, ...]``.

        The history is everything the model may see at ``stage`` (default: train + valid).
        """
        from streamrec.eval.evaluator import rank_users

        if getattr(self.model, "task", "ranking") != "ranking":
            raise ValueError(
                f"{self.config['model']} is a {self.model.task} model; it scores impressions, "
                "not the catalogue (use `streamrec evaluate`)"
            )
        u = self.dataset.user_index(user)
        history = self.split.history(self.dataset, stage)
        exclude = history.csr() if exclude_seen else None
        if exclude is None:
            import scipy.sparse as sp

            exclude = sp.csr_matrix((self.dataset.n_users, self.dataset.n_items))
        items, scores = rank_users(self.model, np.array([u]), history, k, exclude=exclude)
        return self.dataset.item_rows(items[0], scores[0])


def build_configs(
    model_name: str,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Any, Any, dict[str, Any]]:
    """Model config, train config and split spec from defaults, a file and ``--set`` strings."""
    from streamrec.models import get_model_class
    from streamrec.models.base import config_from_dict
    from streamrec.train import TrainConfig

    cls = get_model_class(model_name)
    sections = read_config_file(config_file)
    # A model may suggest training defaults (e.g. a larger batch for MF).
    train_defaults = dict(getattr(cls, "train_defaults", {}))
    sections["train"] = {**train_defaults, **sections["train"]}
    apply_overrides(sections, list(overrides), field_names(cls.Config), field_names(TrainConfig))
    model_cfg = config_from_dict(cls.Config, sections["model"])
    train_cfg = config_from_dict(TrainConfig, sections["train"])
    return model_cfg, train_cfg, sections["split"]


def train_run(
    model_name: str,
    data: str | Path | Dataset,
    out: str | Path | None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
    progress: bool = True,
    console: Any = None,
    callbacks: Sequence[Any] = (),
) -> Run:
    """Train ``model_name`` on a dataset directory into run directory ``out``; evaluate it.

    With ``resume=True`` the run's own ``config.json`` is used and training continues from
    ``checkpoint.pt`` exactly where it stopped. ``callbacks`` are extra
    :class:`~streamrec.train.Callback` objects; a model may add its own through a
    ``training_callbacks(run_dir)`` method (e.g. diagnostics).
    """
    from streamrec.eval.evaluator import evaluate_model, has_stage
    from streamrec.models import get_model_class
    from streamrec.models.base import config_from_dict
    from streamrec.train import TrainConfig, Trainer

    ds = data if isinstance(data, Dataset) else load_dataset(data)
    out_path = Path(out) if out is not None else None
    cls = get_model_class(model_name)
    if resume:
        if out_path is None or not (out_path / "config.json").is_file():
            raise FileNotFoundError(f"--resume needs an existing run directory, {out} has none")
        saved = json.loads((out_path / "config.json").read_text())
        if saved["model"] != model_name:
            raise ValueError(f"run {out} trained {saved['model']!r}, not {model_name!r}")
        model_cfg = config_from_dict(cls.Config, saved["model_config"])
        train_cfg = config_from_dict(TrainConfig, saved["train_config"])
        train_cfg.stop_after_epochs = None  # a testing aid of the interrupted call only
        split_spec = saved["split"]
    else:
        model_cfg, train_cfg, split_spec = build_configs(model_name, config_file, overrides)
        split_spec = {**default_split_spec(ds), **split_spec}
    if not progress:
        train_cfg.progress = False
    split = _split_from_spec(ds, split_spec)
    train = split.train(ds)

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
    if out_path is not None:
        if out_path.exists() and any(out_path.iterdir()) and not resume:
            raise FileExistsError(
                f"run directory {out_path} is not empty; choose another --out or --resume it"
            )
        out_path.mkdir(parents=True, exist_ok=True)
        if not resume:
            (out_path / "config.json").write_text(json.dumps(config, indent=2))
            split.save(out_path)

    import torch

    torch.manual_seed(train_cfg.seed)
    model = cls(model_cfg, train)
    device = _resolve_device(train_cfg.device)
    model.to(device)
    has_valid = has_stage(model, ds, split, "valid")
    validate = None
    if has_valid:

        def validate(m: Any) -> dict[str, float]:
            was_training = m.training
            m.eval()
            try:
                return evaluate_model(m, ds, split, "valid", ks)["metrics"]
            finally:
                m.train(was_training)

    t0 = time.perf_counter()
    callbacks = list(callbacks)
    if hasattr(model, "training_callbacks"):
        callbacks += list(model.training_callbacks(out_path))
    trainer = Trainer(
        model, train, train_cfg, out_path, validate=validate, callbacks=callbacks, console=console
    )
    result = trainer.fit(resume=resume)
    train_seconds = time.perf_counter() - t0
    model.eval()
    run = Run(out_path, config, ds, split, model)
    results: dict[str, Any] = {"train_seconds": train_seconds, "train": dataclasses.asdict(result)}
    results["train"].pop("history", None)
    if has_valid:
        results["valid"] = evaluate_model(model, ds, split, "valid", ks)
    if has_stage(model, ds, split, "test"):
        results["test"] = evaluate_model(model, ds, split, "test", ks)
    run.results = results
    if out_path is not None:
        _save_extra(model, out_path)
        (out_path / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
    return run


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _save_extra(model: Any, out: Path) -> None:
    files = model.extra_state_files()
    if files:
        (out / "extra").mkdir(exist_ok=True)
        for name, data in files.items():
            (out / "extra" / name).write_bytes(data)


def load_run(path: str | Path, device: str = "cpu", data: str | Path | None = None) -> Run:
    """Load a run directory: config, data (from the recorded path unless ``data``), split, model."""
    from safetensors.torch import load_file

    from streamrec.models import get_model_class
    from streamrec.models.base import config_from_dict

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a StreamRec run directory (no config.json)")
    config = json.loads(cfg_file.read_text())
    data_path = data if data is not None else config["data"]["path"]
    if data_path is None:
        raise ValueError(f"run {path} was trained on in-memory data; pass data=DIR")
    if not Path(data_path).exists():
        raise FileNotFoundError(
            f"the run's dataset {data_path} is gone; pass its new location (--data DIR)"
        )
    ds = load_dataset(data_path)
    if (ds.n_users, ds.n_items) != (config["data"]["n_users"], config["data"]["n_items"]):
        raise ValueError(f"dataset at {data_path} does not match the one run {path} was trained on")
    split = Split.load(path)
    cls = get_model_class(config["model"])
    model_cfg = config_from_dict(cls.Config, config["model_config"])
    model = cls(model_cfg, split.train(ds))
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"run {path} has no model.safetensors (did training finish?)")
    extra = path / "extra"
    if extra.is_dir():
        model.load_extra_state_files({f.name: f.read_bytes() for f in extra.iterdir()})
    model.load_state_dict(load_file(str(weights)))
    model.to(_resolve_device(device))
    model.eval()
    results = {}
    if (path / "results.json").is_file():
        results = json.loads((path / "results.json").read_text())
    return Run(path, config, ds, split, model, results)
