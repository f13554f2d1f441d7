"""Understanding: over-smoothing of LightGCN and GCN with 1, 2, 3 and 4 layers.

Each propagation layer averages a node with its neighbours; stacking layers makes every
user's representation drift towards the same (degree-weighted) average, so users become
indistinguishable. We measure that directly: the **mean pairwise cosine similarity** of the
user embeddings used for scoring (over a fixed sample of users, self-pairs excluded), next to
test Recall@20.

Protocol: the ``demo`` world (``generate_world("demo")``, seed 0: 6,000 users, 3,500 items,
200k interactions; ``--world m0`` for the M0 world), leave-last-out split, every model
trained with its defaults except ``n_layers``, ``combine`` and a fixed budget of ``--epochs``
epochs with early stopping on validation Recall@20; full ranking, train + valid masked,
test Recall@20. Variants:

* ``lightgcn / last``: the L-th propagation alone (``x = Ã^L x0``), the pure smoothing effect;
* ``lightgcn / mean``: LightGCN as published, the mean of layers 0..L (its remedy);
* ``gcn / last``: a plain L-layer GCN stack (weights + LeakyReLU), last layer.

"at init" is the same similarity for the untrained model: its initial ego embeddings (the
spectral initialisation, both models' default) propagated through the untrained layers (GCN:
random weights): what the propagation alone does before any learning.

    python benchmarks/oversmoothing.py [--world demo] [--epochs 12] [--users 2000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamrec.data.world import generate_world
from streamrec.run import train_run

from common import RESULTS, write_result

HERE = Path(__file__).resolve().parent
VARIANTS = (("lightgcn", "last"), ("lightgcn", "mean"), ("gcn", "last"))


@torch.no_grad()
def mean_user_cosine(model: Any, users: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of distinct users of ``users`` (final embeddings)."""
    was_training = model.training
    model.eval()
    emb, _ = model.propagate()
    model.train(was_training)
    e = F.normalize(emb[torch.as_tensor(users)].double(), dim=-1)
    sim = e @ e.T
    n = len(users)
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default="demo")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--layers", default="1,2,3,4")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--name", default="oversmoothing")
    args = ap.parse_args()
    data = HERE / "work" / "graph" / args.world
    if not (data / "meta.json").is_file():
        generate_world(args.world, data, seed=0)
    rows: list[dict[str, Any]] = []
    sample = None
    for model_name, combine in VARIANTS:
        for n_layers in [int(x) for x in args.layers.split(",")]:
            overrides = [f"n_layers={n_layers}", f"combine={combine}", f"epochs={args.epochs}"]
            from rich.console import Console

            # untrained: the same architecture with its random initial embeddings
            init_run = train_run(model_name, data, None, overrides=[*overrides[:2], "epochs=1",
                                 "lr=1e-12"], progress=False, console=Console(quiet=True))
            if sample is None:
                rng = np.random.default_rng(0)
                sample = np.sort(rng.choice(init_run.dataset.n_users, args.users, replace=False))
            cos_init = mean_user_cosine(init_run.model, sample)
            r = train_run(model_name, data, None, overrides=overrides, progress=False,
                          console=Console(quiet=True))
            row = {
                "model": model_name,
                "combine": combine,
                "n_layers": n_layers,
                "recall@20": r.results["test"]["metrics"]["recall@20"],
                "ndcg@20": r.results["test"]["metrics"]["ndcg@20"],
                "user_cosine": mean_user_cosine(r.model, sample),
                "user_cosine_at_init": cos_init,
                "epochs_run": r.results["train"]["epochs_run"],
                "best_epoch": r.results["train"]["best_epoch"],
                "train_seconds": r.results["train_seconds"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    png = RESULTS / f"{args.name}.png"
    plot(rows, png)
    lines = [
        "| model | layer output | layers | Recall@20 | NDCG@20 | mean user cosine (trained) "
        "| mean user cosine (at init) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['combine']} | {r['n_layers']} | {r['recall@20']:.4f} "
                     f"| {r['ndcg@20']:.4f} | {r['user_cosine']:.3f} | "
                     f"{r['user_cosine_at_init']:.3f} |")
    protocol = {
        "dataset": f"{args.world} world (seed 0), leave-last-out split",
        "candidates": "full ranking, train + valid items masked; test Recall@20 / NDCG@20",
        "training": f"model defaults except n_layers / combine; at most {args.epochs} epochs, "
                    "early stopping on validation Recall@20",
        "similarity": f"mean cosine over all pairs of {args.users} sampled users (fixed "
                      "sample), final user embeddings",
    }
    write_result(args.name, {"protocol": protocol, "rows": rows, "png": png.name},
                 "\n".join(lines) + f"\n\n![over-smoothing]({png.name})\n", history="train+valid")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for k, (model_name, combine) in enumerate(VARIANTS):
        sel = [r for r in rows if r["model"] == model_name and r["combine"] == combine]
        layers = [r["n_layers"] for r in sel]
        label = f"{model_name} ({combine})"
        ax1.plot(layers, [r["recall@20"] for r in sel], marker="o", color=f"C{k}", label=label)
        ax2.plot(layers, [r["user_cosine"] for r in sel], marker="o", color=f"C{k}",
                 label=f"{label}, trained")
        ax2.plot(layers, [r["user_cosine_at_init"] for r in sel], marker="x", ls="--",
                 color=f"C{k}", alpha=0.6, label=f"{label}, at init")
    ax1.set(xlabel="layers", ylabel="test Recall@20", title="quality")
    ax2.set(xlabel="layers", ylabel="mean pairwise cosine of user embeddings",
            title="over-smoothing")
    for ax in (ax1, ax2):
        ax.set_xticks(sorted({r["n_layers"] for r in rows}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
