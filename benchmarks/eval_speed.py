"""Benchmark: full-ranking evaluation speed.

Protocol: a random MF model (dim 64) over 6,000 users x 3,500 items; every user has 30
training items (masked) and 5 held-out test items; full ranking over all 3,500 items,
K = 10, 20 (all six metrics); CPU threads as the machine allows. Target: under 2 s.

    python benchmarks/eval_speed.py [--users 6000 --items 3500 --repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from streamrec.data.dataset import Dataset
from streamrec.data.splits import make_split
from streamrec.eval.evaluator import evaluate_ranking
from streamrec.models.mf import MF, MFConfig

from common import write_result


def build(n_users: int, n_items: int, n_train: int, n_test: int) -> Dataset:
    rng = np.random.default_rng(0)
    per = n_train + n_test
    items = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :per].ravel()
    users = np.repeat(np.arange(n_users), per)
    ts = np.tile(np.arange(per), n_users)
    return Dataset(
        name=f"random-{n_users}x{n_items}",
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        inter={"user": users, "item": items, "timestamp": ts},
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=3500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ds = build(args.users, args.items, 30, 5)
    split = make_split(ds, "temporal", valid_quantile=0.8571, test_quantile=0.8572)
    torch.manual_seed(0)
    model = MF(MFConfig(dim=64), split.train(ds)).eval()
    evaluate_ranking(model, ds, split, "test", ks=(10, 20))  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = evaluate_ranking(model, ds, split, "test", ks=(10, 20))
        times.append(time.perf_counter() - t0)
    best, median = min(times), float(np.median(times))
    table = (
        "| users | items | candidates | K | metrics | median s | best s | target |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {args.users:,} | {args.items:,} | all items (train masked) | 10, 20 | "
        f"{len(res['metrics'])} | {median:.3f} | {best:.3f} | < 2 s |"
    )
    write_result(
        "eval_speed",
        {
            "protocol": {
                "data": "random MF scores; 30 train (masked) + 5 test items per user",
                "users": args.users,
                "items": args.items,
                "candidates": "full ranking, all items",
                "ks": [10, 20],
                "users_evaluated": res["protocol"]["users_evaluated"],
            },
            "seconds": times,
            "median_seconds": median,
            "target_seconds": 2.0,
            "meets_target": median < 2.0,
        },
        table,
        history="train+valid",
    )


if __name__ == "__main__":
    main()
