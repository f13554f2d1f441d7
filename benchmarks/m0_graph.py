"""Benchmark: every graph model against MF on the M0 world (the book's M6 data).

Protocol: the ``m0`` synthetic world (``generate_world("m0")``, seed 0: 10,000 users, 5,000
items, ~397k interactions), leave-last-out split by time (the last interaction of each user is
test, the second last validation). Each model trains with its defaults (as ``streamrec train
MODEL`` runs it), early-stopping on the validation split (``valid_metric`` of the model's
defaults, patience 5) and keeping the best validation epoch; the test split is evaluated once,
at the end. Full ranking over all 5,000 items, training + validation items masked; Recall@20
and NDCG@20 over the 10,000 test users; "% over MF" is relative to MF's Recall@20 / NDCG@20.
Train time is wall clock on the shared 2-core CPU, validation included.

The book expects +40-60% Recall@20 over MF for the graph models.

    python benchmarks/m0_graph.py [--models mf,lightgcn,gcn,graphsage,gat,gf-cf] [--set k=v]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from streamrec.data.dataset import load_dataset
from streamrec.data.world import generate_world
from streamrec.run import train_run

from common import HISTORY, RESULTS, write_result

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "graph" / "m0"
MODELS = ("mf", "lightgcn", "gcn", "graphsage", "gat", "gf-cf")


def m0_world(path: Path = WORK) -> Path:
    """The M0 world on disk (generated once)."""
    if not (path / "meta.json").is_file():
        generate_world("m0", path, seed=0)
    return path


def run(name: str, data: Path, overrides: list[str]) -> dict[str, Any]:
    from rich.console import Console

    load0 = os.getloadavg()[0]
    r = train_run(name, data, None, overrides=overrides, progress=False, console=Console())
    extra = {}
    if name == "gf-cf":  # the same model reading the training history only, as MF and the
        # GNNs, whose user vectors come from the training graph, cannot use the validation item
        res = r.evaluate("test", (20,), test_history="train")
        extra["test_training_history"] = res["metrics"]
    return {
        **extra,
        "model": name,
        "model_config": r.config["model_config"],
        "train_config": r.config["train_config"],
        "train_seconds": r.results["train_seconds"],
        "epochs_run": r.results["train"]["epochs_run"],
        "best_epoch": r.results["train"]["best_epoch"],
        "valid": r.results.get("valid", {}).get("metrics"),
        "test": r.results["test"]["metrics"],
        "protocol": r.results["test"]["protocol"],
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg()[0],
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    base = rows.get("mf")
    lines = [
        "| model | Recall@20 | NDCG@20 | Recall@20 vs MF | NDCG@20 vs MF | epochs (best) "
        "| train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in rows.items():
        rec, ndcg = res["test"]["recall@20"], res["test"]["ndcg@20"]
        if base and name != "mf":
            d_rec = f"{100 * (rec / base['test']['recall@20'] - 1):+.1f}%"
            d_ndcg = f"{100 * (ndcg / base['test']['ndcg@20'] - 1):+.1f}%"
        else:
            d_rec = d_ndcg = "-"
        epochs = (f"{res['epochs_run']} ({res['best_epoch'] + 1})"
                  if res["epochs_run"] else "closed form")
        lines.append(f"| {name} | {rec:.4f} | {ndcg:.4f} | {d_rec} | {d_ndcg} | {epochs} | "
                     f"{res['train_seconds']:.0f} s |")
        if "test_training_history" in res and base:
            t = res["test_training_history"]
            lines.append(
                f"| {name}, scored from the training history only | {t['recall@20']:.4f} | "
                f"{t['ndcg@20']:.4f} | "
                f"{100 * (t['recall@20'] / base['test']['recall@20'] - 1):+.1f}% | "
                f"{100 * (t['ndcg@20'] / base['test']['ndcg@20'] - 1):+.1f}% | - | - |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="override for every trainable model, e.g. epochs=10")
    ap.add_argument("--name", default="m0_graph")
    args = ap.parse_args()
    data = m0_world()
    ds = load_dataset(data)
    rows: dict[str, dict[str, Any]] = {}
    partial = RESULTS / f"{args.name}.partial.json"
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        overrides = [] if name == "gf-cf" else list(args.overrides)
        rows[name] = run(name, data, overrides)
        print(json.dumps({"model": name, **rows[name]["test"]}), flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(rows, indent=2, default=str))
    protocol = {
        "dataset": "m0 world (generate_world('m0', seed=0))",
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "split": "leave-last-out by time (test = last, valid = second last per user)",
        "candidates": "full ranking over all items, train + valid items masked",
        "metrics": "Recall@20, NDCG@20 on the test split; % relative to MF",
        "selection": "best validation epoch (early stopping, patience 5); test evaluated once",
        "settings": "each model's defaults" + (f" with {args.overrides}" if args.overrides
                                                else ""),
        "train_time": "wall clock on the shared 2-core CPU, validation included",
    }
    write_result(args.name, {"protocol": protocol, "results": rows}, table(rows),
                 history=HISTORY["train+valid"] + "; the gf-cf row's `test_training_history` "
                 "reads the training history only (`--test-history train`)")
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
