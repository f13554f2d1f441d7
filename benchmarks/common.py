"""Helpers shared by the benchmarks: machine description and result writing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from streamrec.train import Callback

RESULTS = Path(__file__).resolve().parent / "results"


def _flush_denormals() -> None:
    """Denormal floats flush to zero in a benchmark's process from its start (every benchmark
    imports this module first). The trainer flushes them while it trains, but torch's CPU
    worker threads take the setting only when they start, and a benchmark that runs a
    closed-form model or an evaluation first starts them outside training: CFGAN's m0 row
    then trained 8 epochs in its 10 minutes instead of 23 (``docs/training.md``, "Denormal
    floats")."""
    import torch

    torch.set_flush_denormal(True)


_flush_denormals()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


#: the test-stage history protocols a benchmark names (``docs/evaluation.md``): key -> line
HISTORY = {
    "train+valid": "the test stage reads the training + validation history (StreamRec's "
                   "default, `--test-history train+valid`); training + validation items "
                   "masked; averaged over the users with test items",
    "no-valid": "the split has no validation part: the test stage reads the training history "
                "(the published protocol); training items masked; averaged over the users "
                "with test items",
    "recbole": "the test stage reads the training history only (`--test-history train`), the "
               "history RecBole's general models read (docs/evaluation.md); training + "
               "validation items masked; averaged over the users with test items, as RecBole",
    "click": "no ranking: click prediction judged on held-out impressions (no history "
             "protocol)",
    "none": "no held-out evaluation (timings only)",
}


def write_result(name: str, payload: dict[str, Any], table: str,
                 history: str | None = None) -> Path:
    """Write ``results/NAME.json`` and ``results/NAME.md`` (the short table); print the table.

    ``history``: a key of :data:`HISTORY` (or a line of its own): the test-stage history
    protocol, added to the payload (``history_protocol``) and as the table's last line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **payload}
    if history is not None:
        line = HISTORY.get(history, history)
        payload["history_protocol"] = line
        table = table.rstrip() + f"\n\nTest-stage protocol: {line}.\n"
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(table.rstrip() + "\n")
    print(table)
    return out


class TestCurve(Callback):
    """Training callback that evaluates the *test* split every ``every`` epochs, for reporting
    a quality-against-time curve only: nothing is selected on it (the final model is reported,
    as in the LightGCN paper). Time spent evaluating is excluded from the time axis.
    """

    def __init__(self, ds: Any, split: Any, every: int = 5, ks: tuple[int, ...] = (20,)) -> None:
        self.ds, self.split, self.every, self.ks = ds, split, every, ks
        self.points: list[dict[str, Any]] = []
        self._eval_seconds = 0.0
        self._t0 = 0.0

    def on_train_start(self, trainer: Any) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        if (epoch + 1) % self.every and epoch + 1 != trainer.cfg.epochs:
            return
        from streamrec.eval.evaluator import evaluate_ranking

        t = time.perf_counter()
        train_seconds = t - self._t0 - self._eval_seconds
        was_training = trainer.model.training
        trainer.model.eval()
        res = evaluate_ranking(trainer.model, self.ds, self.split, "test", self.ks)
        trainer.model.train(was_training)
        self._eval_seconds += time.perf_counter() - t
        self.points.append({"epoch": epoch + 1, "train_seconds": train_seconds, **res["metrics"]})
        shown = ", ".join(
            f"{k}={v:.4f}" for k, v in res["metrics"].items() if k.startswith(("recall", "ndcg"))
        )
        print(f"  epoch {epoch + 1}: {shown} ({train_seconds:.0f}s of training)", flush=True)


def with_holdout(src: Path, out: Path, seed: int = 0, drop_test: bool = False) -> Path:
    """A copy of the dataset at ``src`` (with a ``given`` train/test split), saved at ``out``
    once, in which one random training interaction of every user with at least two becomes
    validation (seed ``seed``); with ``drop_test`` the test part is left out, so that a
    selection made on it cannot read the test interactions."""
    import numpy as np

    from streamrec.data.dataset import Dataset, load_dataset
    from streamrec.data.splits import TEST, TRAIN, VALID

    if (out / "meta.json").is_file():
        return out
    ds = load_dataset(src)
    given = np.asarray(ds.inter["given_split"]).copy()
    rows = np.flatnonzero(given == TRAIN)
    users = ds.user[rows]
    counts = np.bincount(users, minlength=ds.n_users)
    perm = np.random.default_rng(seed).permutation(len(rows))
    _, first = np.unique(users[perm], return_index=True)
    chosen = rows[perm[first]]
    chosen = chosen[counts[ds.user[chosen]] >= 2]
    given[chosen] = VALID
    inter = {**ds.inter, "given_split": given}
    if drop_test:
        keep = given != TEST
        inter = {k: np.asarray(v)[keep] for k, v in inter.items()}
    meta = {**ds.meta, "holdout": {"from": str(src), "seed": seed, "valid": int(len(chosen)),
                                   "test": "dropped" if drop_test else "kept",
                                   "rule": "one random training interaction per user with >= 2"}}
    Dataset(name=out.name, user_ids=ds.user_ids, item_ids=ds.item_ids, inter=inter,
            items=ds.items, users=ds.users, meta=meta).save(out, overwrite=True)
    return out

