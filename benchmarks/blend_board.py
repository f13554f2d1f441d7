"""Benchmark: ``blend`` (LightGCN + a spectral filter, scores mixed per user) on Gowalla beside
the published board, and across datasets against the closed-form filters (issue 17).

Protocol.

* **Gowalla**, the LightGCN paper's split (29,858 users, 40,981 items, 810,128 training and
  217,242 test interactions; ``spectral_board.py`` imports it). The split has no validation
  part, so ``streamrec train blend`` there uses the default filter and weight
  (:data:`streamrec.models.blend.DEFAULT_FILTER`,
  :data:`~streamrec.models.blend.DEFAULT_WEIGHT`). That pair is **chosen here, on a validation
  part carved from the training file**: for every user with at least 2 training items one of
  them (uniformly at random, seed 0: the same carving as ``spectral_board.py`` and
  ``generative.py``) becomes validation, and the test interactions are **dropped** from that
  selection data set, so nothing in the selection can read them. On it ``streamrec train blend
  --set filter_search=false`` trains LightGCN on the remaining training interactions with its
  defaults, fits every filter of :data:`~streamrec.models.blend.FILTERS` with the settings the
  final run uses without validation (their size rules: chebycf ``k=512, alpha=0.2, beta=0.4``,
  bspm ``k=448, sharpen_time=2.5, beta=0.2``) and picks the filter and the weight of the grid
  :data:`~streamrec.models.blend.WEIGHT_GRID` with the best validation NDCG@20 (the blend's
  ``valid_metric``; at most 5,000 seeded validation users). The benchmark checks that the chosen
  pair is the model's default. Then ``streamrec train blend`` with **no options** on the real
  split: LightGCN trained on the whole training file, the default filter fitted, the default
  weight, and the test part evaluated **once**: full ranking over all items, training items
  masked, Recall@20 / NDCG@20 over the 29,858 test users, as in the papers.
* **Across datasets** (MovieLens-100k and the ``m0`` world, leave-last-out by time; Amazon
  Scientific, UniSRec's given split): ``streamrec train blend`` with no options; these splits
  have a validation part, so every filter searches its own options there and the filter and
  weight are chosen there; test once (training + validation history). Beside it, the closed-form
  filters' figures of ``results/spectral_board.json`` (same data, split and protocol).
* **Time and memory**: the wall clock of the whole ``train_run`` (LightGCN's training with its
  validations, the filter's fit and the choice of the weight, and the test evaluation), each
  part reported; the peak resident set size during it minus the size before (each run in a
  fresh spawned process). Shared 2-core CPU; the load average is recorded.

    python benchmarks/blend_board.py [--datasets gowalla,ml100k,m0,sci]
    python benchmarks/blend_board.py --quick    # smoke test: MovieLens-100k, ~1 min
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from spectral_board import (  # noqa: E402
    GOWALLA_WORK,
    NAMES,
    PUBLISHED,
    TARGET,
    WORK,
    PeakRSS,
    _mib,
    board_lines,
    dataset,
)

from common import HISTORY, RESULTS, with_holdout, write_result  # noqa: E402

DATASETS = ("gowalla", "ml100k", "m0", "sci")
#: the selection on the carved part: the filters as the final run uses them without
#: validation (their size rules), the filter and the weight chosen
CARVED_OVERRIDES = ["filter=auto", "weight=auto", "filter_search=false"]


def carved_gowalla() -> Path:
    """Gowalla's training file with one random training item per user (>= 2) as validation
    and the test part dropped, saved once under ``work/spectral/gowalla-carved``."""
    dataset("gowalla")
    return with_holdout(GOWALLA_WORK, WORK / "gowalla-carved", seed=0, drop_test=True)


def train_blend(data: str, overrides: list[str]) -> dict[str, Any]:
    """``streamrec train blend`` (plus ``overrides``) on ``data`` (a board name or a dataset
    directory), in memory; its figures, times and peak memory."""
    from rich.console import Console

    from streamrec.data.dataset import load_dataset
    from streamrec.run import train_run

    ds = dataset(data) if data in DATASETS else load_dataset(data)
    load0 = os.getloadavg()[0]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        run = train_run("blend", ds, None, overrides=overrides, progress=False,
                        console=Console(stderr=True))
        seconds = time.perf_counter() - t0
    res = run.results
    train = res["train"]
    out = {"data": data, "overrides": overrides, "seconds": seconds,
           "train_seconds": res["train_seconds"], "fit": train.get("fit") or {},
           "epochs_run": train["epochs_run"], "budget": train.get("budget"),
           "valid": res.get("valid", {}).get("metrics"),
           "test": res.get("test", {}).get("metrics"),
           "eval_seconds": res.get("test", {}).get("seconds"),
           "protocol": res.get("test", {}).get("protocol"),
           "peak_rss_added": mem.added, "peak_rss": mem.peak,
           "loadavg_start": load0, "loadavg_end": os.getloadavg()[0]}
    fit = out["fit"]
    test = out["test"] or {}
    print(f"  blend on {data} {overrides or 'defaults'}: weight {fit.get('weight')} "
          f"({fit.get('selection')}); test R@20 {test.get('recall@20', float('nan')):.4f} "
          f"N@20 {test.get('ndcg@20', float('nan')):.4f}; {seconds:.0f} s, "
          f"+{_mib(mem.added)}", flush=True)
    return out


def isolated(data: str, overrides: list[str], quick: bool) -> dict[str, Any]:
    """:func:`train_blend` in a fresh spawned process (in this one with ``quick``)."""
    if quick:
        return train_blend(data, overrides)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(train_blend, data, overrides).result()


def board_rows(data: str) -> dict[str, Any]:
    """The closed-form filters' test figures on ``data`` from ``results/spectral_board.json``
    (their defaults rows), or nothing."""
    path = RESULTS / "spectral_board.json"
    if not path.is_file():
        return {}
    res = json.loads(path.read_text())["results"].get(data, {})
    return {m: row["defaults"]["test"] for m, row in res.get("models", {}).items()}


def gowalla_table(sel: dict[str, Any], final: dict[str, Any], default: tuple[str, float]) -> str:
    tried = ", ".join(f"{t['filter']} {t['weight']:g}: {t[sel['fit']['metric']]:.4f}"
                      for t in sel["fit"].get("tried", []))
    t = final["test"]
    met = (t["recall@20"] >= TARGET["recall@20"] and t["ndcg@20"] >= TARGET["ndcg@20"])
    board = board_rows("gowalla")
    lines = [
        "| model | Recall@20 | NDCG@20 | time (train + fit + test eval) | peak memory added |",
        "|---|---|---|---|---|",
        f"| **blend** (LightGCN + {final['fit'].get('filter')} at w = "
        f"{final['fit'].get('weight'):g}, `streamrec train blend`, no options) | "
        f"**{t['recall@20']:.4f}** | **{t['ndcg@20']:.4f}** | {final['seconds']:.0f} s "
        f"({final['train_seconds']:.0f} s + {final['eval_seconds']:.0f} s) | "
        f"{_mib(final['peak_rss_added'])} |",
    ]
    lines += [f"| {m} (spectral_board.json) | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | - | - |"
              for m, r in board.items()]
    lines += ["", *board_lines()]
    lines += ["", f"Filter and weight chosen on the carved validation part "
              f"({sel['fit'].get('metric')}, at most {sel['fit'].get('valid_users_max')} "
              f"users): **{sel['fit']['filter']} at {sel['fit']['weight']:g}** (the model's "
              f"default: {default[0]} at {default[1]:g}); every pair tried: {tried}. Selection "
              f"run: {sel['seconds']:.0f} s.",
              "", f"Target Recall@20 >= {TARGET['recall@20']} and NDCG@20 >= "
              f"{TARGET['ndcg@20']} in < {TARGET['seconds'] // 60} min: "
              f"{'met' if met and final['seconds'] < TARGET['seconds'] else 'NOT met'} "
              f"(figures {'met' if met else 'not met'}; whole run {final['seconds']:.0f} s)."]
    return "\n".join(lines)


def cross_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| dataset | model | filter and weight (chosen on validation) | Recall@20 | NDCG@20 | "
             "time | peak memory added |", "|---|---|---|---|---|---|---|"]
    for data, r in rows.items():
        fit, t = r["fit"], r["test"]
        lines.append(f"| {NAMES[data]} | **blend** | {fit.get('filter')} at "
                     f"{fit.get('weight'):g} | **{t['recall@20']:.4f}** | "
                     f"**{t['ndcg@20']:.4f}** | {r['seconds']:.0f} s | "
                     f"{_mib(r['peak_rss_added'])} |")
        for m, b in board_rows(data).items():
            lines.append(f"| {NAMES[data]} | {m} (spectral_board.json) | - | "
                         f"{b['recall@20']:.4f} | {b['ndcg@20']:.4f} | - | - |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: MovieLens-100k, 2 epochs, in this process")
    ap.add_argument("--name", default=None, help="result name (default: blend_board, or "
                                                  "blend_board_quick with --quick)")
    args = ap.parse_args()
    datasets = ["ml100k"] if args.quick else args.datasets.split(",")
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        ap.error(f"unknown dataset(s): {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    from streamrec.models.blend import DEFAULT_FILTER, DEFAULT_WEIGHT

    name = args.name or ("blend_board_quick" if args.quick else "blend_board")
    extra = ["epochs=2"] if args.quick else []
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    parts: list[str] = []
    if "gowalla" in datasets:
        print("== Gowalla: the filter and weight on the carved validation part", flush=True)
        sel = isolated(str(carved_gowalla()), CARVED_OVERRIDES + extra, args.quick)
        chosen = (sel["fit"]["filter"], sel["fit"]["weight"])
        if chosen != (DEFAULT_FILTER, DEFAULT_WEIGHT) and not args.quick:
            # the test part is read only with the validated default
            sys.exit(f"error: the carved validation chose {chosen[0]} at {chosen[1]:g}, the "
                     f"model's default is {DEFAULT_FILTER} at {DEFAULT_WEIGHT:g}: set "
                     "streamrec.models.blend.DEFAULT_FILTER / DEFAULT_WEIGHT to the choice "
                     "and run again")
        print("== Gowalla: streamrec train blend (no options), test once", flush=True)
        final = isolated("gowalla", [], args.quick)
        results["gowalla"] = {"selection": sel, "final": final}
        parts += ["## Gowalla (LightGCN split), test, full ranking", "",
                  gowalla_table(sel, final, (DEFAULT_FILTER, DEFAULT_WEIGHT)), ""]
    cross = {}
    for data in (d for d in datasets if d != "gowalla"):
        print(f"== {NAMES[data]}", flush=True)
        cross[data] = isolated(data, extra, args.quick)
    if cross:
        results.update(cross)
        parts += ["## Across datasets, test, full ranking (train + valid items masked)", "",
                  cross_table(cross), ""]
    protocol = {
        "gowalla": "LightGCN split; filter and weight chosen on a validation part carved "
                   "from the training file (one random training item per user with >= 2, "
                   "seed 0, test dropped), the filters at their size rules "
                   f"({', '.join(CARVED_OVERRIDES)}); final run: streamrec train blend with no "
                   "options on the real split, test once",
        "others": "each dataset's split with its validation part; streamrec train blend with "
                  "no options (each filter's own search, then the filter and the weight, on "
                  "validation); test once",
        "metrics": "Recall@20, NDCG@20; full ranking over all items, seen items masked",
        "time": "wall clock of the whole train_run (training + fit + test evaluation), "
                "shared 2-core CPU",
        "memory": "peak RSS during the run minus before it, each run in a fresh process"
                  + (" (--quick: in this process)" if args.quick else ""),
        "quick": args.quick and "smoke test: MovieLens-100k, 2 epochs, in this process",
    }
    write_result(name, {"protocol": protocol, "published": PUBLISHED, "target": TARGET,
                        "default_filter": DEFAULT_FILTER, "default_weight": DEFAULT_WEIGHT,
                        "results": results,
                        "total_seconds": time.perf_counter() - t0}, "\n".join(parts),
                 history=f"Gowalla: {HISTORY['no-valid']}; the other data sets: "
                         f"{HISTORY['train+valid']}")


if __name__ == "__main__":
    main()
