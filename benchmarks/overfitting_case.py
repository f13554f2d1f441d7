"""Benchmark / experiment: the book's over-fitting case, then each remedy one at a time.

Protocol: the ``m0`` world (seed 0), impressions split at random 80/10/10 (seed 0); the model
trains on a seeded 10% of the training impressions (``train_fraction=0.1``: 24,000 rows,
which is what makes the book's network over-fit within 50 epochs on this world) and is
validated / tested on the full 30,000 + 30,000 held-out impressions. Baseline = the book's
case: MLP [512, 256, 128, 64], ReLU, He init, Adam lr 1e-3, batch 512, 50 epochs, constant
LR, no regularisation, no early stopping (the *last* epoch's weights are the model). Then
each remedy is added to the baseline on its own (plus one run with the remedies together):

    weight decay     Adam L2 weight_decay, ``--wd`` and a tenth of it
    dropout          0.3 after every ReLU
    batchnorm        BatchNorm1d between Linear and ReLU
    early stopping   patience 5 on validation AUC, best epoch's weights kept
    cosine + warmup  cosine decay to 0 after 2 warm-up epochs
    smaller net      [128, 64]
    all              weight decay + dropout + early stopping + cosine/warmup

Every epoch a callback records the log-loss on a fixed sample of 5,000 *training*
impressions (eval mode, so dropout does not inflate it) and the validation AUC / log-loss; the
test AUC is taken once, of the weights the run ends with (it never selects anything). The
table reports the best validation AUC (and its epoch), the last epoch's validation AUC, the
test AUC of the weights the run ends with, and the train-minus-validation log-loss gap at the
end. The PNG puts the train and
validation log-loss curves of every configuration side by side.

    python benchmarks/overfitting_case.py [--epochs 50 --train-fraction 0.1]

    # or one process per configuration (what produced the results), then the report:
    python benchmarks/overfitting_case.py --threads 1 --only "baseline (book)"   # etc.
    python benchmarks/overfitting_case.py --merge
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from click_oracle_gap import WORK, m0_world
from rich.console import Console

from common import RESULTS, write_result

BOOK = ["hidden=[512, 256, 128, 64]", "activation=relu", "init=he_normal",
        "diagnostics=false"]
BOOK_TRAIN = ["optimizer=adam", "lr=1e-3", "batch_size=512", "schedule=constant", "patience=0",
              "warmup_epochs=0"]


def configs(wd: float) -> dict[str, list[str]]:
    return {
        "baseline (book)": [],
        f"+ weight decay {wd / 10:g}": [f"weight_decay={wd / 10:g}"],
        f"+ weight decay {wd:g}": [f"weight_decay={wd:g}"],
        "+ dropout 0.3": ["dropout=0.3"],
        "+ batchnorm": ["norm=batchnorm"],
        "+ early stopping": ["patience=5"],
        "+ cosine + warmup": ["schedule=cosine", "warmup_epochs=2"],
        "+ smaller net": ["hidden=[128, 64]"],
        "all (wd + dropout + ES + cosine)": [f"weight_decay={wd}", "dropout=0.3", "patience=5",
                                             "schedule=cosine", "warmup_epochs=2"],
    }


class Curves:
    """Per-epoch train (fixed sample, eval mode) / valid / test metrics, for the curves."""

    def __init__(self, ds: Any, sample: int = 5_000) -> None:
        from streamrec.train import Callback

        self.ds = ds
        self.sample = sample
        self.rows: list[dict[str, float]] = []
        outer = self

        class _CB(Callback):
            def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
                outer.record(trainer.model, epoch, logs, last=epoch + 1 == trainer.cfg.epochs)

        self.callback = _CB()

    @torch.no_grad()
    def record(self, model: Any, epoch: int, logs: dict[str, Any], last: bool) -> None:
        from streamrec.data.clicks import click_arrays
        from streamrec.eval.clicks import evaluate_clicks, predict_click_logits
        from streamrec.eval.metrics import log_loss_from_logits

        was = model.training
        model.eval()
        tr = click_arrays(self.ds, "train", model.assign)
        idx = np.random.default_rng(0).permutation(len(tr))[: self.sample]
        z = predict_click_logits(model, tr.user[idx], tr.item[idx], tr.features[idx])
        # the last epoch's test AUC (the model of a run without early stopping); never used
        # to select anything
        test_auc = evaluate_clicks(model, self.ds, "test")["metrics"]["auc"] if last else None
        model.train(was)
        self.rows.append({
            "epoch": epoch,
            "train_logloss": log_loss_from_logits(tr.clicked[idx], z),
            "train_loss_minibatch": logs["loss"],
            "valid_auc": logs["valid"]["auc"],
            "valid_logloss": logs["valid"]["logloss"],
            "test_auc": test_auc,
            "lr": logs["lr"],
        })


def run_one(name: str, extra: list[str], ds: Any, epochs: int, fraction: float) -> dict[str, Any]:
    from streamrec.eval.clicks import evaluate_clicks
    from streamrec.models.click_mlp import MLP
    from streamrec.train import Trainer
    from streamrec.train.config import build_configs

    sets = BOOK + BOOK_TRAIN + [f"epochs={epochs}", f"train_fraction={fraction}",
                                "valid_metric=auc", "progress=false"] + extra
    model_cfg, train_cfg, _ = build_configs("mlp", overrides=sets)
    torch.manual_seed(train_cfg.seed)
    model = MLP(model_cfg, ds)
    curves = Curves(ds)
    t0 = time.perf_counter()
    trainer = Trainer(model, ds, train_cfg, callbacks=[curves.callback],
                      validate=lambda m: evaluate_clicks(m, ds, "valid")["metrics"],
                      console=Console(quiet=True))
    early_stopping = train_cfg.patience > 0
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    if not early_stopping:
        # no early stopping: the model is the last epoch's (the loop restored the best one;
        # the last one's test AUC is in the curves)
        final = curves.rows[-1]
        end_test_auc = final["test_auc"]
    else:
        end_test_auc = evaluate_clicks(model, ds, "test")["metrics"]["auc"]
    rows = curves.rows
    best = max(rows, key=lambda r: r["valid_auc"])
    row = {
        "config": name, "overrides": extra, "epochs_run": len(rows),
        "best_valid_auc": best["valid_auc"], "best_epoch": best["epoch"],
        "last_valid_auc": rows[-1]["valid_auc"],
        "end_test_auc": end_test_auc,
        "end_weights": "best validation epoch" if early_stopping else "last epoch",
        "end_gap_logloss": rows[-1]["valid_logloss"] - rows[-1]["train_logloss"],
        "seconds": seconds, "n_parameters": model.n_parameters, "curves": rows,
        "stopped_early": result.stopped_early,
    }
    print(json.dumps({k: v for k, v in row.items() if k != "curves"}), flush=True)
    return row


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(rows)
    cols = 4
    r = -(-n // cols) + 1
    fig = Figure(figsize=(4.2 * cols, 3.3 * r), dpi=90)
    FigureCanvasAgg(fig)
    lo = min(min(c["train_logloss"] for c in row["curves"]) for row in rows)
    hi = max(max(c["valid_logloss"] for c in row["curves"]) for row in rows)
    for k, row in enumerate(rows):
        ax = fig.add_subplot(r, cols, k + 1)
        ep = [c["epoch"] for c in row["curves"]]
        ax.plot(ep, [c["train_logloss"] for c in row["curves"]], label="train")
        ax.plot(ep, [c["valid_logloss"] for c in row["curves"]], label="valid")
        ax.axvline(row["best_epoch"], color="grey", ls=":", lw=1)
        ax.set_ylim(lo - 0.01, min(hi, 0.6) + 0.01)
        ax.set_title(f"{row['config']}\nbest valid AUC {row['best_valid_auc']:.4f}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("log-loss", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax = fig.add_subplot(r, 1, r)
    for row in rows:
        ax.plot([c["epoch"] for c in row["curves"]], [c["valid_auc"] for c in row["curves"]],
                label=row["config"])
    ax.set_title("validation AUC per epoch", fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def report(rows: list[dict[str, Any]], args: argparse.Namespace, n_train: int) -> None:
    png = RESULTS / "overfitting_case.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, png)
    table = (
        f"m0 impressions: train on {n_train:,} (train_fraction {args.train_fraction}), "
        "valid 30,000, test 30,000; MLP [512, 256, 128, 64], Adam 1e-3, batch 512, "
        f"{args.epochs} epochs; each remedy alone on top of the baseline\n\n"
        "| configuration | best valid AUC (epoch) | last-epoch valid AUC | test AUC of final "
        "model | final weights | valid - train log-loss at end | s |\n"
        "|---|---|---|---|---|---|---|\n"
        + "".join(
            f"| {r['config']} | {r['best_valid_auc']:.4f} ({r['best_epoch']}) | "
            f"{r['last_valid_auc']:.4f} | {r['end_test_auc']:.4f} | {r['end_weights']}"
            f"{' (stopped at ' + str(r['epochs_run'] - 1) + ')' if r['stopped_early'] else ''} | "
            f"{r['end_gap_logloss']:+.4f} | {r['seconds']:.0f} |\n"
            for r in rows)
        + f"\nCurves: `benchmarks/results/{png.name}`\n"
    )
    write_result("overfitting_case", {
        "protocol": {
            "data": "world m0 (seed 0), 20 impression features",
            "split": "impressions at random 80/10/10 (seed 0); training on a seeded "
                     f"{args.train_fraction:.0%} of the training rows",
            "baseline": BOOK + BOOK_TRAIN + [f"epochs={args.epochs}"],
            "metric": "AUC (valid for selection, test reported), log-loss curves",
            "png": str(png.relative_to(RESULTS.parent.parent)),
            "threads": args.threads,
        },
        "results": rows,
    }, table, history="click")


def main() -> None:
    from streamrec.data.dataset import load_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--train-fraction", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=1e-3)
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only these configs and save each to work/overfit/ (then --merge)")
    ap.add_argument("--merge", action="store_true",
                    help="write the table and PNG from the configs saved in work/overfit/")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    parts = WORK / "overfit"
    ds = load_dataset(m0_world())
    n_train = int(round(args.train_fraction * round(0.8 * len(ds.impressions["clicked"]))))
    todo = configs(args.wd)
    if args.merge:
        rows = [json.loads((parts / f"{slug(k)}.json").read_text()) for k in todo
                if (parts / f"{slug(k)}.json").is_file()]
        report(rows, args, n_train)
        return
    if args.only:
        unknown = set(args.only) - set(todo)
        if unknown:
            raise SystemExit(f"unknown config(s) {sorted(unknown)}; choose from {list(todo)}")
        parts.mkdir(parents=True, exist_ok=True)
        for name in args.only:
            row = run_one(name, todo[name], ds, args.epochs, args.train_fraction)
            (parts / f"{slug(name)}.json").write_text(json.dumps(row))
        return
    rows = [run_one(name, extra, ds, args.epochs, args.train_fraction)
            for name, extra in todo.items()]
    report(rows, args, n_train)


if __name__ == "__main__":
    main()
