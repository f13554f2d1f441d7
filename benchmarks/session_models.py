"""Session models against their baselines and against RecBole 1.2.1 (issue 5, M4a + M4).

Protocol: leave-last-out per user by time (``loo``: last event test, second-last validation)
on the demo world and MovieLens-100k (all ratings as interactions, time-ordered, ties broken by
file order), and the given UniSRec split on Amazon Scientific. Full ranking over the whole
catalogue; the stage's history items are masked (StreamRec's evaluator). Because RecBole's
sequential models rank *all* items (no history masking), the test metrics are also reported
unmasked for a like-for-like comparison. NDCG@10, HR@10, MRR@10 on the test split; the
checkpoint with the best validation NDCG@10 is tested (early stopping, patience 5).
Train seconds = the training loop (with its per-epoch validation), one torch thread.

Usage (one process per dataset, then the report)::

    python benchmarks/session_models.py run --dataset ml100k [--models gru,transformer]
    python benchmarks/session_models.py report

RecBole rows are not run here: they are the figures measured by the peers harness
(``../shared/peers/recbole_peer.py``) on this machine, read from ``shared/peers/results``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HISTORY, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "seq"
SHARED = ROOT.parent.parent / "shared"
PEERS = SHARED / "peers" / "results"
DATASETS = {"demo": "loo", "ml100k": "loo", "sci": "given"}
NAMES = {"demo": "demo world", "ml100k": "MovieLens-100k", "sci": "Amazon Scientific"}
MODELS = ("pop", "mf", "gru", "lstm", "transformer")
#: per-model overrides (everything else: the model's own defaults)
SETTINGS: dict[str, list[str]] = {
    "pop": [],
    "mf": ["train.lr=5e-3", "train.batch_size=1024", "train.epochs=30"],
    "gru": ["train.epochs=20"],
    "lstm": ["train.epochs=20"],
    "transformer": ["train.epochs=40"],
}
COMMON = ["train.valid_metric=ndcg@10", "train.patience=5", "train.threads=1"]
PEER_FILES = {
    ("ml100k", "GRU4Rec"): "ml100k_GRU4Rec_loo.json",
    ("ml100k", "SASRec"): "ml100k_SASRec_loo.json",
    ("sci", "GRU4Rec"): "sci_GRU4Rec_benchmark.json",
    ("sci", "SASRec"): "sci_SASRec_benchmark_converged.json",
}


def prepare(name: str) -> Path:
    """The dataset directory (generated / imported on first use)."""
    out = WORK / name
    if (out / "meta.json").is_file():
        return out
    from streamrec.data.importers import import_dataset
    from streamrec.data.world import generate_world

    if name == "demo":
        generate_world("demo", out)
    elif name == "ml100k":
        import_dataset("movielens-100k", SHARED / "data" / "movielens-100k" / "raw", out)
    elif name == "sci":
        import_dataset("unisrec", SHARED / "data" / "amazon-scientific", out)
    return out


def unmasked_test(run: Any) -> dict[str, float]:
    """HR/NDCG/MRR@10 on test ranking *all* items (no history masking), as RecBole does."""
    from streamrec.eval.evaluator import rank_users

    ds, split = run.dataset, run.split
    history = split.history(ds, "test")
    test = split.part(ds, "test")
    users, first = np.unique(test.user, return_index=True)
    target = test.item[first]
    empty = sp.csr_matrix((ds.n_users, ds.n_items), dtype=np.float32)
    items, _ = rank_users(run.model, users, history, 10, exclude=empty)
    hit = items == target[:, None]
    rank = np.where(hit.any(1), hit.argmax(1) + 1, 0)
    found = rank > 0
    ndcg = np.where(found, 1.0 / np.log2(np.maximum(rank, 1) + 1.0), 0.0)
    mrr = np.where(found, 1.0 / np.maximum(rank, 1), 0.0)
    return {"hit@10": float(found.mean()), "ndcg@10": float(ndcg.mean()),
            "mrr@10": float(mrr.mean()), "rows": int(len(users))}


def run_dataset(name: str, models: list[str], extra: list[str]) -> None:
    import shutil

    import torch
    from rich.console import Console

    from streamrec.run import train_run

    torch.set_num_threads(1)
    data = prepare(name)
    for model in models:
        part_file = WORK / f"result_{name}_{model}.json"
        out = WORK / "runs" / f"{name}-{model}"
        if out.exists():
            shutil.rmtree(out)
        overrides = [*COMMON, *SETTINGS[model], f"split.method={DATASETS[name]}", *extra]
        load = os.getloadavg()
        t0 = time.perf_counter()
        run = train_run(model, data, out, overrides=overrides, ks=(10,), progress=False,
                        console=Console(stderr=True))
        wall = time.perf_counter() - t0
        res = run.results
        test = res["test"]["metrics"]
        row = {
            "model": model,
            "overrides": overrides,
            "model_config": run.config["model_config"],
            "train_config": run.config["train_config"],
            "test": {k: test[k] for k in ("ndcg@10", "hit@10", "mrr@10")},
            "valid": {k: res["valid"]["metrics"][k] for k in ("ndcg@10", "hit@10", "mrr@10")},
            "test_unmasked": unmasked_test(run),
            "train_seconds": res["train_seconds"],
            "wall_seconds": wall,
            "best_epoch": res["train"].get("best_epoch"),
            "epochs_run": res["train"].get("epochs_run"),
            "protocol": res["test"]["protocol"],
            "loadavg_start": load,
            "loadavg_end": os.getloadavg(),
        }
        part_file.write_text(json.dumps(row, indent=2, default=str))
        print(f"{name} {model}: {row['test']} unmasked {row['test_unmasked']} "
              f"{row['train_seconds']:.1f}s load {load[0]:.1f}", flush=True)


def evaluate_partial(name: str, model: str) -> None:
    """Evaluate a run whose training was stopped at the time budget (best weights so far)."""
    import torch

    from streamrec.run import load_run

    torch.set_num_threads(1)
    out = WORK / "runs" / f"{name}-{model}"
    run = load_run(out)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
    best = max(range(len(lines)), key=lambda e: lines[e]["valid"]["ndcg@10"])
    test = run.evaluate("test", ks=(10,))
    valid = run.evaluate("valid", ks=(10,))
    row = {
        "model": model,
        "overrides": run.config["train_config"],
        "model_config": run.config["model_config"],
        "train_config": run.config["train_config"],
        "test": {k: test["metrics"][k] for k in ("ndcg@10", "hit@10", "mrr@10")},
        "valid": {k: valid["metrics"][k] for k in ("ndcg@10", "hit@10", "mrr@10")},
        "test_unmasked": unmasked_test(run),
        "train_seconds": float(sum(x["seconds"] for x in lines)),
        "best_epoch": best,
        "epochs_run": len(lines),
        "stopped": "killed at the benchmark's time budget; best validation epoch so far tested",
        "protocol": test["protocol"],
        "loadavg_start": os.getloadavg(),
        "loadavg_end": os.getloadavg(),
    }
    (WORK / f"result_{name}_{model}.json").write_text(json.dumps(row, indent=2, default=str))
    print(f"{name} {model} (partial, {len(lines)} epochs): {row['test']}", flush=True)


def explain_demo(name: str, user: str, k: int = 10) -> None:
    """Explain one user's recommendations of the dataset's transformer run (table + PNGs)."""
    from streamrec.run import load_run
    from streamrec.serve.explain import explain_user, format_table, plot_attention

    run = load_run(WORK / "runs" / f"{name}-transformer")
    out = {}
    for rollout in (False, True):
        ex = explain_user(run, user, k=k, rollout=rollout)
        tag = "rollout" if rollout else "last_layer"
        plot_attention(ex, ROOT / "results" / f"session_attention_{name}_{tag}.png")
        out[tag] = ex
        print(ex["method"])
        for row in format_table(ex):
            print(" | ".join(row))
    (ROOT / "results" / f"session_explain_{name}.json").write_text(
        json.dumps(out, indent=2, default=str)
    )


def peer_rows() -> list[dict[str, Any]]:
    out = []
    for (name, model), fname in PEER_FILES.items():
        f = PEERS / fname
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        m = r["metrics"]
        out.append({
            "dataset": name,
            "model": f"RecBole {model}",
            "test": {"ndcg@10": m["ndcg@10"], "hit@10": m["hit@10"], "mrr@10": m["mrr@10"]},
            "train_seconds": r["train_seconds"],
            "epochs_run": r.get("epochs_run"),
            "best_epoch": r.get("best_epoch"),
            "file": str(f.relative_to(SHARED.parent)) if SHARED.parent in f.parents else str(f),
            "note": "RecBole 1.2.1, measured by the peers harness on this machine "
                    "(no history masking; 2 torch threads; "
                    + ("converged, early stopping" if "converged" in fname
                       else f"{r.get('epochs_run')} epochs only, not converged") + ")",
        })
    return out


def report() -> None:
    results: dict[str, Any] = {}
    for name in DATASETS:
        rows = {}
        for model in MODELS:
            f = WORK / f"result_{name}_{model}.json"
            if f.is_file():
                rows[model] = json.loads(f.read_text())
        if rows:
            results[name] = rows
    peers = peer_rows()
    lines = [
        "| dataset | model | NDCG@10 | HR@10 | MRR@10 | NDCG@10 unmasked | HR@10 unmasked "
        "| train s | epochs (best) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for model in MODELS:
            if model not in rows:
                continue
            r = rows[model]
            t, u = r["test"], r["test_unmasked"]
            mark = "†" if "stopped" in r else ""
            best = "–" if r["best_epoch"] is None else r["best_epoch"] + 1  # 1-based, as RecBole
            lines.append(
                f"| {NAMES[name]} ({DATASETS[name]}) | {model} | {t['ndcg@10']:.4f} | "
                f"{t['hit@10']:.4f} | {t['mrr@10']:.4f} | {u['ndcg@10']:.4f} | "
                f"{u['hit@10']:.4f} | {r['train_seconds']:.1f} | {r['epochs_run']} "
                f"({best}){mark} | {r['loadavg_start'][0]:.1f} |"
            )
        for p in peers:
            if p["dataset"] != name:
                continue
            t = p["test"]
            lines.append(
                f"| {NAMES[name]} ({DATASETS[name]}) | {p['model']}* | – | – | – | "
                f"{t['ndcg@10']:.4f} | {t['hit@10']:.4f} | {p['train_seconds']:.1f} | "
                f"{p['epochs_run']} ({p['best_epoch']}) | – |"
            )
    table = "\n".join(lines) + (
        "\n\n*RecBole 1.2.1, measured by the peers harness on this machine "
        "(shared/peers/README.md); RecBole ranks all items without history masking, so its "
        "figures sit in the 'unmasked' columns. Protocol: full ranking, K=10, test split; "
        "loo = leave-last-out per user by time, given = the UniSRec split. Train seconds of "
        "StreamRec include per-epoch validation, 1 torch thread, measured under the load "
        "average shown (2 shared cores). † = stopped at the benchmark's time budget before "
        "convergence or early stopping; the best validation epoch so far was tested. "
        "Epochs: run (best, 1-based).\n"
    )
    write_result("session_models", {
        "protocol": {
            "evaluation": "full ranking, all items; history items masked (StreamRec); "
                          "'unmasked' = no masking (RecBole's sequential protocol)",
            "splits": DATASETS,
            "ks": [10],
            "selection": "best validation NDCG@10, patience 5",
            "threads": 1,
        },
        "results": results,
        "recbole": peers,
    }, table, history=HISTORY["train+valid"] + " (RecBole's sequential models also read the "
                 "validation item at test time: their test sequences are every earlier item)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    r.add_argument("--models", default=",".join(MODELS))
    r.add_argument("--set", action="append", default=[], help="extra overrides, e.g. "
                   "train.epochs=10 (recorded with the result)")
    e = sub.add_parser("evaluate-partial")
    e.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    e.add_argument("--model", required=True)
    x = sub.add_parser("explain")
    x.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    x.add_argument("--user", required=True)
    sub.add_parser("report")
    args = p.parse_args()
    if args.cmd == "run":
        run_dataset(args.dataset, [m for m in args.models.split(",") if m], args.set)
    elif args.cmd == "explain":
        explain_demo(args.dataset, args.user)
    elif args.cmd == "evaluate-partial":
        evaluate_partial(args.dataset, args.model)
    else:
        report()


if __name__ == "__main__":
    main()
