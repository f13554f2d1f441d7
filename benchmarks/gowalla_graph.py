"""Benchmark: LightGCN and GF-CF on Gowalla (the LightGCN paper's split), default settings.

Protocol: ``../shared/data/gowalla`` imported with the ``lightgcn`` importer and its given
split (train 810,128 / test 217,242 interactions; 29,858 users, 40,981 items; no validation
part). Each model runs with the settings ``streamrec train MODEL`` uses by default (nothing
overridden). Full ranking over all 40,981 items with the user's training items masked;
Recall@20 and NDCG@20 as in the paper (recall denominator = all of the user's test items),
averaged over the 29,858 test users. No model selection: the **final** model is reported, as
in the paper. The curve of test Recall@20 against training time comes from a callback that
evaluates the test split every ``--eval-every`` epochs for reporting only; its evaluation time
is not counted as training time. Train time is wall-clock time on this machine's CPU, shared
with other jobs (the load average is recorded), plus the process CPU time spent training.

Reference figures (LightGCN paper, Table 4, Gowalla): MF 0.1291 / 0.1109, NGCF 0.1570 /
0.1327, LightGCN 0.1830 / 0.1554 (Recall@20 / NDCG@20); GF-CF paper: 0.1849 / 0.1518.
Targets: lightgcn >= 0.1800 in < 30 min of training; gf-cf >= 0.1830 in < 5 min.

    python benchmarks/gowalla_graph.py [--models lightgcn,gf-cf,mf] [--eval-every 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.data.dataset import Dataset, load_dataset
from streamrec.data.importers import import_dataset
from streamrec.data.splits import split_from_spec
from streamrec.eval.evaluator import evaluate_ranking
from streamrec.models import get_model_class
from streamrec.train import Callback, Trainer
from streamrec.train.config import build_configs

from common import RESULTS, write_result

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "shared" / "data" / "gowalla"
WORK = HERE / "work" / "graph" / "gowalla"
PAPER = {
    "mf": (0.1291, 0.1109),
    "ngcf": (0.1570, 0.1327),
    "lightgcn": (0.1830, 0.1554),
    "gf-cf": (0.1849, 0.1518),
}
TARGETS = {"lightgcn": (0.1800, 30 * 60), "gf-cf": (0.1830, 5 * 60)}


def gowalla(src: Path = SRC, work: Path = WORK) -> Dataset:
    """The Gowalla dataset in StreamRec's format (imported once into ``work``)."""
    if not (work / "meta.json").is_file():
        import_dataset("lightgcn", src, work)
    return load_dataset(work)


class TestCurve(Callback):
    """Every ``every`` epochs (and after the last), evaluate the **test** split for the report.

    Reporting only: nothing is selected on it (the trainer has no validation here and keeps
    the final weights). Records the training wall time and CPU time so far, excluding the
    time of these evaluations.
    """

    def __init__(self, ds: Dataset, split: Any, every: int) -> None:
        self.ds, self.split, self.every = ds, split, every
        self.rows: list[dict[str, Any]] = []
        self.cpu0 = time.process_time()
        self.eval_cpu = 0.0

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if (epoch + 1) % self.every and epoch + 1 < trainer.cfg.epochs:
            return
        c0 = time.process_time()
        model = trainer.model
        model.eval()
        with torch.no_grad():
            res = evaluate_ranking(model, self.ds, self.split, "test", (20,),
                                   metrics=("recall", "ndcg"))
        model.train()
        row = {
            "epoch": epoch + 1,
            "train_seconds": trainer.train_seconds,
            "train_cpu_seconds": c0 - self.cpu0 - self.eval_cpu,
            "loss": logs["loss"],
            "recall@20": res["metrics"]["recall@20"],
            "ndcg@20": res["metrics"]["ndcg@20"],
            "eval_seconds": res["seconds"],
            "loadavg": os.getloadavg()[0],
        }
        self.eval_cpu += time.process_time() - c0
        self.rows.append(row)
        print(json.dumps(row), flush=True)


def run_trainable(name: str, ds: Dataset, split: Any, every: int) -> dict[str, Any]:
    """Train ``name`` with its defaults (as ``streamrec train NAME``), curve on the side."""
    from rich.console import Console

    model_cfg, train_cfg, _ = build_configs(name)
    train_cfg.progress = False
    train = split.train(ds)
    torch.manual_seed(train_cfg.seed)
    model = get_model_class(name)(model_cfg, train)
    curve = TestCurve(ds, split, every)
    load0 = os.getloadavg()[0]
    trainer = Trainer(model, train, train_cfg, None, callbacks=[curve], console=Console())
    result = trainer.fit()
    model.eval()
    final = evaluate_ranking(model, ds, split, "test", (20,))
    return {
        "model": name,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "train_seconds": result.train_seconds,
        "train_cpu_seconds": curve.rows[-1]["train_cpu_seconds"],
        "epochs": result.epochs_run,
        "test": final["metrics"],
        "protocol": final["protocol"],
        "curve": curve.rows,
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg()[0],
    }


def run_gfcf(ds: Dataset, split: Any) -> dict[str, Any]:
    """Fit GF-CF with its defaults (as ``streamrec train gf-cf``)."""
    model_cfg, _, _ = build_configs("gf-cf")
    train = split.train(ds)
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    model = get_model_class("gf-cf")(model_cfg, train)
    model.fit(train)
    fit_seconds, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    final = evaluate_ranking(model, ds, split, "test", (20,))
    return {
        "model": "gf-cf",
        "model_config": model_cfg.to_dict(),
        "train_seconds": fit_seconds,
        "train_cpu_seconds": fit_cpu,
        "test": final["metrics"],
        "eval_seconds": final["seconds"],
        "protocol": final["protocol"],
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg()[0],
    }


def plot(rows: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, res in rows.items():
        if res.get("curve"):
            t = [r["train_seconds"] / 60 for r in res["curve"]]
            ax.plot(t, [r["recall@20"] for r in res["curve"]], marker="o", ms=3, label=name)
        elif name == "gf-cf":
            ax.scatter([res["train_seconds"] / 60], [res["test"]["recall@20"]], marker="*",
                       s=150, color="C3", zorder=3, label="gf-cf (closed form)")
    ax.axhline(PAPER["lightgcn"][0], color="grey", ls="--", lw=1,
               label="LightGCN paper (1000 epochs)")
    ax.axhline(TARGETS["lightgcn"][0], color="C2", ls=":", lw=1, label="target 0.18")
    ax.axvline(30, color="C2", ls=":", lw=1)
    ax.set_xlabel("training time, minutes (wall clock, 2-core CPU)")
    ax.set_ylabel("test Recall@20 (full ranking)")
    ax.set_title("Gowalla (LightGCN split): Recall@20 against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | settings | epochs | train time (wall) | train CPU time | Recall@20 | NDCG@20 "
        "| paper R@20 / N@20 | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in rows.items():
        cfg = res["model_config"]
        tc = res.get("train_config", {})
        if name == "gf-cf":
            settings = f"alpha {cfg['alpha']}, k {cfg['k']}, svd {cfg['svd']}"
        elif name == "mf":
            settings = (f"dim {cfg['dim']}, {cfg['loss']}, {cfg['n_negatives']} neg, "
                        f"batch {tc['batch_size']}, lr {tc['lr']:g}")
        else:
            settings = (f"dim {cfg['dim']}, {cfg['n_layers']} layers, {cfg['loss']} "
                        f"({cfg['n_negatives']} shared neg, {cfg['similarity']}, "
                        f"tau {cfg['temperature']:g}"
                        f"{', item bias' if cfg.get('item_bias') else ''}), "
                        f"batch {tc['batch_size']}, lr {tc['lr']:g} {tc['schedule']}")
        paper = PAPER.get(name)
        target = TARGETS.get(name)
        met = ""
        if target:
            ok = res["test"]["recall@20"] >= target[0] and res["train_seconds"] < target[1]
            met = f">= {target[0]:.4f} in < {target[1] // 60} min: {'met' if ok else 'NOT met'}"
        lines.append(
            f"| {name} | {settings} | {res.get('epochs', '-')} | "
            f"{res['train_seconds'] / 60:.1f} min | {res['train_cpu_seconds'] / 60:.1f} min | "
            f"{res['test']['recall@20']:.4f} | {res['test']['ndcg@20']:.4f} | "
            f"{f'{paper[0]:.4f} / {paper[1]:.4f}' if paper else '-'} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gf-cf,lightgcn,mf")
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--name", default="gowalla_graph")
    args = ap.parse_args()
    ds = gowalla()
    split = split_from_spec(ds, {"method": "given"})
    rows: dict[str, dict[str, Any]] = {}
    partial = RESULTS / f"{args.name}.partial.json"
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        rows[name] = run_gfcf(ds, split) if name == "gf-cf" else run_trainable(
            name, ds, split, args.eval_every)
        RESULTS.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(rows, indent=2, default=str))
    png = RESULTS / f"{args.name}.png"
    plot(rows, png)
    protocol = {
        "dataset": "Gowalla, LightGCN split (../shared/data/gowalla)",
        "users": ds.n_users,
        "items": ds.n_items,
        "train_interactions": int(split.mask("train").sum()),
        "test_interactions": int(split.mask("test").sum()),
        "candidates": "full ranking over all items, training items masked",
        "metrics": "Recall@20 (denominator: all test items of the user), NDCG@20",
        "selection": "none: the final model is reported (test curve for reporting only)",
        "settings": "each model's defaults, as `streamrec train MODEL` runs it",
        "train_time": "wall clock of training on the shared 2-core CPU (test evaluations "
                      "of the curve excluded), plus process CPU time",
    }
    write_result(args.name, {"protocol": protocol, "paper": PAPER, "targets": TARGETS,
                             "results": rows, "curve_png": png.name},
                 table(rows) + f"\n\n![Recall@20 against training time]({png.name})\n",
                 history="no-valid")
    partial.unlink(missing_ok=True)
    np.set_printoptions()


if __name__ == "__main__":
    main()
