"""Benchmark: published figures reproduced under their own protocol, and the same models
under every test-stage protocol (issue 20).

Two choices of the test stage change the figures of one model on one data set: the history
the model **reads** (``train+valid`` or ``train``; training and validation items are masked
either way) and the users the metrics are **averaged** over (``users-with-test`` or
``all-users``, users without test items counting 0). ``docs/evaluation.md`` explains both.
Every row below names its protocol.

Protocol.

* **Gowalla, the published protocol**: the LightGCN paper's split (``../shared/data/gowalla``
  with the ``lightgcn`` importer, as ``gowalla_graph.py``; 29,858 users, 40,981 items,
  810,128 training and 217,242 test interactions). The split has **no validation part**, so
  the model reads the training history only (``train`` and ``train+valid`` are the same
  history), the training items are masked, and Recall@20 (denominator: all of the user's
  test items) and NDCG@20 are averaged over the users with test items (all 29,858): the
  protocol of the LightGCN and GF-CF papers' code. GF-CF and LightGCN run with the settings
  ``streamrec train NAME`` uses by default (nothing overridden; LightGCN's final model, no
  selection on test). Published: GF-CF 0.1849 / 0.1518, LightGCN 0.1830 / 0.1554.
* **MovieLens-100k, both protocols**: ``../shared/data/movielens-100k/raw`` (943 users, 1,682
  items, 100,000 ratings, all kept as interactions), split two ways: leave-last-out by time
  (``loo``: last interaction = test, second last = validation; every user has a test item,
  so both averages are equal there) and a global temporal cut (``temporal``: validation from
  the 80% time quantile, test from the 90%; many users have no test item, so the averages
  differ). GF-CF and Mult-VAE (a trained model that reads its input history; early-stopped
  on validation NDCG@20) with ``streamrec train`` defaults, each model fitted **once** per
  split, its test stage then evaluated under the four protocols (history x average).
* Full ranking over all items, K = 20. Times are wall clock on this machine (shared CPU; the
  load average is recorded).

    python benchmarks/protocols.py [--parts gowalla,ml100k] [--models gf-cf,mult-vae]
        [--splits loo,temporal]
    python benchmarks/protocols.py --quick     # smoke test on the tiny world, ~1 min
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streamrec.data.dataset import Dataset  # noqa: E402
from streamrec.eval.evaluator import AVERAGES, TEST_HISTORIES, protocol_note  # noqa: E402
from streamrec.run import Run, train_run  # noqa: E402

from common import write_result  # noqa: E402

#: the published Recall@20 / NDCG@20 on the LightGCN Gowalla split
PUBLISHED = {"gf-cf": ("GF-CF (CIKM 2021)", 0.1849, 0.1518),
             "lightgcn": ("LightGCN (SIGIR 2020)", 0.1830, 0.1554)}
#: the protocol of those papers' code (and RecBole's)
PUBLISHED_PROTOCOL = ("train", "users-with-test")
SPLITS = {"loo": ["split.method=loo"],
          "temporal": ["split.method=temporal", "split.valid_quantile=0.8",
                       "split.test_quantile=0.9"]}
#: the quick mode's stand-in for Gowalla: a split with no validation part
NO_VALID = ["split.method=random", "split.ratios=[0.8, 0.0, 0.2]"]
QUICK_EPOCHS = ["epochs=3"]


def fit(name: str, ds: Dataset, overrides: list[str]) -> tuple[Run, float]:
    """``name`` trained as ``streamrec train NAME`` would (plus ``overrides``), in memory;
    ``(run, seconds)``."""
    from rich.console import Console

    t0 = time.perf_counter()
    run = train_run(name, ds, None, overrides=overrides, progress=False,
                    console=Console(stderr=True))
    return run, time.perf_counter() - t0


def row(part: str, split_name: str, name: str, run: Run, seconds: float,
        history: str, average: str) -> dict[str, Any]:
    """One evaluated row: the model's test metrics under one protocol, and that protocol."""
    res = run.evaluate("test", ks=(20,), test_history=history, average=average)
    p = res["protocol"]
    out = {
        "part": part, "split": split_name, "model": name, "history": history,
        "average": average, "recall@20": res["metrics"]["recall@20"],
        "ndcg@20": res["metrics"]["ndcg@20"], "fit_seconds": seconds,
        "eval_seconds": res["seconds"], "protocol_note": protocol_note(res), "protocol": p,
        "has_valid_part": bool(run.split.mask("valid").any()),
        "loadavg": os.getloadavg()[0],
    }
    print(f"{part} / {split_name} / {name}: R@20 {out['recall@20']:.4f} "
          f"N@20 {out['ndcg@20']:.4f}  ({out['protocol_note']})", flush=True)
    return out


def gowalla_part(models: list[str], quick: bool) -> list[dict[str, Any]]:
    """The published protocol on Gowalla (quick: the tiny world, a split without validation)."""
    if quick:
        from streamrec.data.world import make_world

        ds, extra = make_world("tiny", seed=0), NO_VALID + QUICK_EPOCHS
        split_name = "random 80/0/20"
    else:
        from gowalla_graph import gowalla

        ds, extra, split_name = gowalla(), [], "given (LightGCN)"
    rows = []
    for name in (m for m in models if m in PUBLISHED):
        run, seconds = fit(name, ds, extra)
        rows.append(row("gowalla" if not quick else "gowalla (quick: tiny)", split_name, name,
                        run, seconds, *PUBLISHED_PROTOCOL))
    return rows


def ml100k_part(models: list[str], splits: list[str], quick: bool) -> list[dict[str, Any]]:
    """Every model fitted once per split, its test stage under the four protocols."""
    if quick:
        from streamrec.data.world import make_world

        ds, extra = make_world("tiny", seed=0), QUICK_EPOCHS
    else:
        from spectral_board import dataset

        ds, extra = dataset("ml100k"), []
    rows = []
    for split_name in splits:
        for name in models:
            overrides = SPLITS[split_name] + (extra if name != "gf-cf" else [])
            run, seconds = fit(name, ds, overrides)
            for history in TEST_HISTORIES:
                for average in AVERAGES:
                    rows.append(row("ml100k" if not quick else "ml100k (quick: tiny)",
                                    split_name, name, run, seconds, history, average))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["## The published protocol (no validation part)", "",
             "| data | split | model | history read | masked | averaged over | Recall@20 "
             "| NDCG@20 | published R@20 / N@20 | fit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["part"].startswith("gowalla")):
        p = r["protocol"]
        label, rec, ndcg = PUBLISHED[r["model"]]
        lines.append(f"| {r['part']} | {r['split']} | {r['model']} | {r['history']} (no "
                     f"validation part) | train items | {p['users_averaged']:,} "
                     f"({r['average']}) | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | "
                     f"{rec:.4f} / {ndcg:.4f} ({label}) | {r['fit_seconds']:.0f} s |")
    lines += ["", "## Every protocol on one data set with a validation part", "",
              "Each model is fitted once per split; only the test stage's protocol changes. "
              "Masked: train + valid items in every row.", "",
              "| data | split | model | history read | averaged over | Recall@20 | NDCG@20 "
              "| R@20 vs train+valid, users-with-test |",
              "|---|---|---|---|---|---|---|---|"]
    ml = [r for r in rows if r["part"].startswith("ml100k")]
    for r in ml:
        base = next(b for b in ml if (b["split"], b["model"]) == (r["split"], r["model"])
                    and (b["history"], b["average"]) == (TEST_HISTORIES[0], AVERAGES[0]))
        rel = (r["recall@20"] / base["recall@20"] - 1) * 100 if base["recall@20"] else 0.0
        lines.append(f"| {r['part']} | {r['split']} | {r['model']} | {r['history']} | "
                     f"{r['protocol']['users_averaged']:,} ({r['average']}) | "
                     f"{r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {rel:+.1f}% |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="gowalla,ml100k")
    ap.add_argument("--models", default="gf-cf,lightgcn,mult-vae",
                    help="Gowalla runs those of gf-cf, lightgcn; ml100k every other one but "
                         "lightgcn (history-free: its rows would all be equal)")
    ap.add_argument("--splits", default="loo,temporal")
    ap.add_argument("--quick", action="store_true", help="the tiny world, a few epochs")
    ap.add_argument("--name", default=None, help="results/NAME.json (default: protocols, "
                    "or protocols_quick with --quick)")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    models = [m for m in args.models.split(",") if m]
    splits = [s for s in args.splits.split(",") if s]
    bad = ([p for p in parts if p not in ("gowalla", "ml100k")]
           + [s for s in splits if s not in SPLITS])
    if bad:
        raise SystemExit(f"error: unknown part or split {', '.join(bad)}; parts: gowalla, "
                         f"ml100k; splits: {', '.join(SPLITS)}")
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if "gowalla" in parts:
        rows += gowalla_part(models, args.quick)
    if "ml100k" in parts:
        rows += ml100k_part([m for m in models if m != "lightgcn"], splits, args.quick)
    payload = {
        "protocol": __doc__.split("Protocol.", 1)[1].split("    python", 1)[0].strip(),
        "published": {m: {"source": s, "recall@20": r, "ndcg@20": n}
                      for m, (s, r, n) in PUBLISHED.items()},
        "published_protocol": {"history": PUBLISHED_PROTOCOL[0],
                               "average": PUBLISHED_PROTOCOL[1]},
        "quick": args.quick,
        "rows": rows,
        "total_seconds": time.perf_counter() - t0,
    }
    write_result(args.name or ("protocols_quick" if args.quick else "protocols"), payload,
                 table(rows))


if __name__ == "__main__":
    main()
