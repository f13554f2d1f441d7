"""Benchmark: what the models give on the demo world with no options at all.

Protocol: the ``demo`` world (seed 0: 6,000 users, 3,500 items, 20 categories, about 199k
interactions), its default split (leave-last-out per user by time: validation = the second
last interaction, test = the last), full ranking over all 3,500 items with the user's training
items (and, for test, the validation item) masked, K = 10 and 20, test split. Models:

* ``pop``, ``tfidf-svd`` and ``cnn-text`` trained with ``streamrec.run.train_run`` and **no
  overrides**: exactly what ``streamrec train NAME --data D --out R`` gives (``cnn-text``
  early-stops on validation NDCG@20 and keeps its best epoch);
* ``transformer`` with the settings ``streamrec demo`` gives it (``DEMO_MODELS`` in
  ``streamrec.demo``), and its validation NDCG@10 per epoch (from the run's
  ``metrics.jsonl``) drawn in ``results/defaults_demo_transformer.png`` to show where it
  levels off. ``--old-transformer`` also trains the demo's former settings
  (``OLD_TRANSFORMER``) and ``--long-transformer`` the same settings for 24 epochs
  (``LONG_TRANSFORMER``, a reference for the plateau), and draws their curves next to it;
  ``--old-cnn`` trains ``cnn-text``'s former defaults (``OLD_CNN``: Kim's configuration on
  the category objective) for comparison.

Targets: ``cnn-text`` above ``pop`` and at least level with ``tfidf-svd`` on Recall@20 and
NDCG@20; the transformer at its plateau within a few minutes. One torch thread by default
(``--threads``); training seconds are wall clock on a shared 2-core machine, a rough guide only.

    python benchmarks/defaults_demo.py [--models pop tfidf-svd cnn-text transformer]
        [--old-cnn] [--old-transformer] [--long-transformer] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work"
KS = (10, 20)
MODELS = ("pop", "tfidf-svd", "cnn-text", "transformer")
#: the demo's transformer settings before this benchmark (still climbing at their last epoch)
OLD_TRANSFORMER = ["epochs=8", "lr=3e-3", "batch_size=512"]
#: cnn-text's defaults before this benchmark: Kim's configuration on the category objective
OLD_CNN = ["objective=category", "widths=[3, 4, 5]", "n_filters=64", "pooling=max",
           "dropout=0.5", "token_dropout=0", "category_weight=1", "views_weight=1",
           "epochs=15", "batch_size=64"]
#: the demo's settings with 24 epochs: a reference for the plateau
LONG_TRANSFORMER = ["epochs=24", "lr=2e-3", "batch_size=32", "schedule=cosine",
                    "warmup_epochs=1"]
SHOWN = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def demo_world() -> Path:
    """The demo world (seed 0), generated once into ``benchmarks/work/demo-seed0``."""
    from streamrec.data.world import generate_world

    out = WORK / "demo-seed0"
    if not (out / "meta.json").is_file():
        generate_world("demo", out, seed=0, progress=True)
    return out


def overrides_for(model: str) -> list[str]:
    """No options, except the transformer, which gets the demo's settings."""
    if model == "transformer":
        from streamrec.demo import DEMO_MODELS

        return list(DEMO_MODELS["transformer"])
    return []


def read_curve(run_dir: Path, metric: str) -> list[dict[str, Any]]:
    """``[{"epoch", "valid", "lr", "seconds"}]`` from a run's ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if metric in rec.get("valid", {}):
            out.append({"epoch": rec["epoch"] + 1, "valid": rec["valid"][metric],
                        "lr": rec.get("lr"), "seconds": rec.get("seconds")})
    return out


def train(model: str, data: Path, overrides: list[str], tag: str) -> dict[str, Any]:
    from rich.console import Console

    from streamrec.run import train_run

    out = WORK / "runs" / "defaults-demo" / tag
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run = train_run(model, data, out, overrides=overrides, ks=KS, progress=False,
                    console=Console(stderr=True))
    seconds = time.perf_counter() - t0
    test = run.results["test"]
    tr = run.results.get("train", {})
    cfg = run.config
    row = {
        "model": model,
        "tag": tag,
        "overrides": overrides,
        "metrics": test["metrics"],
        "evaluation": test["evaluation"],
        "train_seconds": seconds,
        "epochs_run": tr.get("epochs_run"),
        "best_epoch": tr.get("best_epoch"),
        "model_config": cfg["model_config"],
        "train_config": cfg["train_config"],
        "protocol": test["protocol"],
    }
    if run.model.trainable:
        row["curve_ndcg@10"] = read_curve(out, "ndcg@10")
        row["curve_" + cfg["train_config"]["valid_metric"]] = read_curve(
            out, cfg["train_config"]["valid_metric"])
    shown = {k: round(v, 4) for k, v in test["metrics"].items() if k in SHOWN}
    print(json.dumps({"model": tag, **shown, "train_seconds": round(seconds, 1),
                      "epochs_run": row["epochs_run"], "best_epoch": row["best_epoch"]}),
          flush=True)
    return row


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for row in rows:
        curve = row.get("curve_ndcg@10", [])
        if not curve:
            continue
        label = f"{row['tag']}: {' '.join(row['overrides'])}"
        ax.plot([p["epoch"] for p in curve], [p["valid"] for p in curve], marker="o",
                markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title("transformer on the demo world (leave-last-out, full ranking)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows: list[dict[str, Any]]) -> str:
    proto = rows[0]["protocol"]
    head = (
        f"demo world (seed 0), split {proto['split']['method']} (leave-last-out), "
        f"{proto['candidates']} ({proto['n_items']:,}), {proto['masked']} masked, test "
        f"({proto['users_evaluated']:,} users); K = 10, 20; each model with its `streamrec "
        "train` defaults (transformer: the `streamrec demo` settings)\n\n"
        "| model | options | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 | epochs (best) | "
        "train s |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        m = r["metrics"]
        epochs = (f"{r['epochs_run']} ({r['best_epoch'] + 1})"
                  if r.get("best_epoch") is not None and r.get("epochs_run") else "–")
        opts = " ".join(r["overrides"]) or "defaults"
        lines.append(
            f"| {r['tag']} | {opts} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | "
            f"{m['recall@20']:.4f} | {m['ndcg@20']:.4f} | {epochs} | "
            f"{r['train_seconds']:.0f} |\n"
        )
    text = head + "".join(lines)
    by = {r["tag"]: r["metrics"] for r in rows}
    if {"pop", "tfidf-svd", "cnn-text"} <= set(by):
        c, p, t = by["cnn-text"], by["pop"], by["tfidf-svd"]
        ok = all(c[k] > p[k] and c[k] >= t[k] for k in ("recall@20", "ndcg@20"))
        text += (f"\ncnn-text above pop and at least level with tfidf-svd on Recall@20 and "
                 f"NDCG@20: {'met' if ok else 'NOT met'}\n")
    tr = next((r for r in rows if r["tag"] == "transformer"), None)
    if tr and tr.get("curve_ndcg@10"):
        vals = " ".join(f"{p['valid']:.3f}" for p in tr["curve_ndcg@10"])
        text += f"\ntransformer validation NDCG@10 per epoch: {vals}\n"
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--old-cnn", action="store_true",
                    help="also train cnn-text's former defaults (Kim's configuration)")
    ap.add_argument("--old-transformer", action="store_true",
                    help="also train the demo's former transformer settings, for the plot")
    ap.add_argument("--long-transformer", action="store_true",
                    help="also train the demo's settings for 24 epochs, for the plot")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = demo_world()
    rows = [train(m, data, overrides_for(m), m) for m in args.models]
    if args.old_cnn:
        rows.insert(next((i + 1 for i, r in enumerate(rows) if r["tag"] == "cnn-text"),
                         len(rows)), train("cnn-text", data, OLD_CNN, "cnn-text (old: Kim)"))
    if args.old_transformer:
        rows.append(train("transformer", data, OLD_TRANSFORMER, "transformer (old demo)"))
    if args.long_transformer:
        rows.append(train("transformer", data, LONG_TRANSFORMER, "transformer (24 epochs)"))
    curves = [r for r in rows if r["model"] == "transformer"]
    plot = RESULTS / "defaults_demo_transformer.png"
    if curves:
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot_curves(curves, plot)
    write_result("defaults_demo", {
        "protocol": {
            "data": "world demo (seed 0): 6,000 users, 3,500 items, 20 categories",
            "split": "leave-last-out per user by time (validation = second last, test = last)",
            "candidates": "full ranking over all items; training items (and for test the "
                          "validation item) masked",
            "ks": list(KS),
            "stage": "test",
            "settings": "no overrides (each model's defaults); transformer: "
                        "streamrec.demo.DEMO_MODELS['transformer']",
            "selection": "early stopping on the validation metric of each model's defaults "
                         "(best epoch kept) where the model trains by gradient descent",
            "threads": args.threads,
            "curve_plot": plot.name if curves else None,
        },
        "rows": rows,
    }, table(rows), history="train+valid")


if __name__ == "__main__":
    main()
