"""Benchmark: the spectral board — gf-cf, chebycf and bspm on Gowalla beside the published
closed-form filters, and the same models across datasets (issue 17).

Protocol.

* **Gowalla**: the LightGCN paper's split (``../shared/data/gowalla`` with the ``lightgcn``
  importer, as ``gowalla_graph.py``; 29,858 users, 40,981 items, 810,128 training and 217,242
  test interactions). That split has no validation part, so one is **carved from the training
  file**: for every user with at least 2 training items, one of them (uniformly at random,
  seed 0) becomes validation; the test interactions are dropped from that selection split, so
  nothing in the selection can read them. ``streamrec train NAME`` on this split has no
  validation part, so its defaults are the size rule's (= the papers' values here); that run
  is the **defaults** row. The **tuned** row is the models' own search
  (``k = "auto"``, :mod:`streamrec.models.spectral_auto`) run on the carved split (models
  fitted on the remaining training interactions, NDCG@20 on the validation items of at most
  ``--valid-users`` random users, full ranking, training items masked); the chosen values
  are then fixed, the model is **refitted on the whole training file** and the test split is
  evaluated **once**: full ranking over all 40,981 items, training items masked, Recall@20
  (denominator: all test items of the user) and NDCG@20 over the 29,858 test users, as in the
  papers.
* **Selection** is one way only: the models' own ``k = "auto"`` search (a grid of ``k``
  around the size rule x the model's weights; chebycf: ``beta`` and ``alpha``, bspm:
  ``sharpen_time`` and ``beta``), exactly what ``streamrec train`` runs when the split has a
  validation part. ``gf-cf`` (the published reproduction) has no search: its defaults only.
* **Cross-dataset**: MovieLens-100k and the ``m0`` world (leave-last-out by time: the last
  interaction of a user is test, the second last validation) and Amazon Scientific (the given
  UniSRec split). Each model as ``streamrec train NAME`` runs it: the search on the
  validation part (models fitted on training), test once with training + validation as the
  history the model reads and masks.
* **Time and memory**: the fit time is the wall clock of the constructor and ``fit`` (graph,
  SVD, and the search where there is one) of the final model, the evaluation time that of
  scoring and ranking every test user; the peak memory is the largest resident set size of
  this process during fit + evaluation (sampled every 20 ms from ``/proc/self/statm``) minus
  the size before it, i.e. what the model adds to the loaded dataset; each final model runs
  in a fresh spawned process for this (``--quick``: in this process); ``ru_maxrss`` of the
  whole run is recorded too. Wall clock on a shared 2-core CPU (the load average is
  recorded).
* **LightGCN** is not trained here: a cached run directory (``--lightgcn-run``, a finished
  ``streamrec train lightgcn`` on this Gowalla split) is read when one exists; otherwise the
  figures of ``results/gowalla_lightgcn.json`` are quoted and labelled as such.

Published board (Recall@20 / NDCG@20, LightGCN Gowalla split): ChebyCF 0.1941 / 0.1616,
BSPM-EM 0.1920 / 0.1597, PGSP 0.1917 / 0.1606, LinkProp 0.1908 / 0.1573, SGFCF 0.1898 /
0.1566. Target of issue 17: Recall@20 >= 0.1950 and NDCG@20 >= 0.1625 in < 5 min.

    python benchmarks/spectral_board.py [--datasets gowalla,ml100k,m0,sci]
        [--models gf-cf,chebycf,bspm] [--valid-users 5000] [--name spectral_board]
    python benchmarks/spectral_board.py --quick     # smoke test: MovieLens-100k, ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.data.dataset import Dataset, load_dataset
from streamrec.data.splits import (
    DROPPED,
    TRAIN,
    VALID,
    Split,
    default_split_spec,
    split_from_spec,
)
from streamrec.eval.evaluator import evaluate_ranking, has_stage
from streamrec.models import get_model_class
from streamrec.models.base import Validator
from streamrec.models.spectral_auto import AutoSpectral

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HISTORY, RESULTS, write_result  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
WORK = HERE / "work" / "spectral"
GOWALLA_WORK = HERE / "work" / "graph" / "gowalla"  # shared with gowalla_graph.py
M0_WORK = HERE / "work" / "graph" / "m0"  # shared with m0_graph.py
MODELS = ("gf-cf", "chebycf", "bspm")
DATASETS = ("gowalla", "ml100k", "m0", "sci")
NAMES = {"gowalla": "Gowalla (LightGCN split)", "ml100k": "MovieLens-100k (leave-last-out)",
         "m0": "m0 world (leave-last-out)", "sci": "Amazon Scientific (UniSRec split)"}
#: Recall@20 / NDCG@20 on the LightGCN Gowalla split, as published
PUBLISHED = {
    "ChebyCF (SIGIR 2025)": (0.1941, 0.1616),
    "BSPM-EM (SIGIR 2023)": (0.1920, 0.1597),
    "PGSP (WWW 2023)": (0.1917, 0.1606),
    "LinkProp (2022)": (0.1908, 0.1573),
    "SGFCF (KDD 2024)": (0.1898, 0.1566),
    "GF-CF (CIKM 2021)": (0.1849, 0.1518),
    "LightGCN (SIGIR 2020)": (0.1830, 0.1554),
}
#: our model -> the published row of the same method
SAME_METHOD = {"gf-cf": "GF-CF (CIKM 2021)", "chebycf": "ChebyCF (SIGIR 2025)",
               "bspm": "BSPM-EM (SIGIR 2023)", "lightgcn": "LightGCN (SIGIR 2020)"}
TARGET = {"recall@20": 0.1950, "ndcg@20": 0.1625, "seconds": 5 * 60}
#: the search's validation users on the carved Gowalla split (the models' default)
VALID_USERS = 5000


# ============================================================================ data
def dataset(name: str) -> Dataset:
    """A dataset of the board in StreamRec's format (imported / generated once)."""
    from streamrec.data.importers import import_dataset

    if name == "gowalla":
        if not (GOWALLA_WORK / "meta.json").is_file():
            import_dataset("lightgcn", SHARED / "gowalla", GOWALLA_WORK)
        return load_dataset(GOWALLA_WORK)
    if name == "m0":
        if not (M0_WORK / "meta.json").is_file():
            from streamrec.data.world import generate_world

            generate_world("m0", M0_WORK, seed=0)
        return load_dataset(M0_WORK)
    out = WORK / name
    if not (out / "meta.json").is_file():
        if name == "ml100k":
            import_dataset("movielens-100k", SHARED / "movielens-100k" / "raw", out)
        else:
            import_dataset("unisrec", SHARED / "amazon-scientific", out)
    return load_dataset(out)


def carve_validation(ds: Dataset, split: Split, seed: int = 0) -> Split:
    """A selection split carved from ``split``'s training part: one random training
    interaction of every user with >= 2 of them becomes validation; the held-out (test)
    interactions are dropped, so the selection cannot read them. int8 assignments as
    :class:`~streamrec.data.splits.Split`."""
    assign = split.assign.copy()
    assign[assign != TRAIN] = DROPPED
    train_idx = np.flatnonzero(assign == TRAIN)
    rng = np.random.default_rng(seed)
    order = train_idx[rng.permutation(len(train_idx))]  # random order, then first per user
    users = ds.user[order]
    _, first = np.unique(users, return_index=True)
    counts = np.bincount(ds.user[train_idx], minlength=ds.n_users)
    chosen = order[first]
    chosen = chosen[counts[ds.user[chosen]] >= 2]
    assign[chosen] = VALID
    stats = {"n_train": int((assign == TRAIN).sum()), "n_valid": int((assign == VALID).sum()),
             "n_test": 0, "n_dropped": int((assign == DROPPED).sum())}
    return Split("carved-from-train", {"from": split.method, "seed": seed,
                                       "rule": "one random training item per user with >= 2"},
                 assign, None, stats)


# ============================================================================ measuring
class PeakRSS:
    """Context manager: the peak resident set size of this process while it is open, sampled
    every ``every`` seconds from ``/proc/self/statm`` (``start``, ``peak`` in bytes)."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:  # not Linux: the high-water mark of the whole process
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def added(self) -> int:
        return self.peak - self.start


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# ============================================================================ models
def make_model(name: str, params: dict[str, Any], train: Dataset) -> Any:
    """Model ``name`` with its defaults overridden by ``params``, built on ``train``."""
    cls = get_model_class(name)
    cfg = cls.Config.from_dict({**cls.Config().to_dict(), **params})
    return cls(cfg, train)


def validator(ds: Dataset, split: Split) -> Validator:
    """What ``streamrec train`` hands to a closed-form model's ``fit``: validation NDCG@20 (the
    default ``valid_metric``), full ranking, on a seeded sample when asked for one."""

    def validate(m: Any, max_users: int | None = None) -> dict[str, float]:
        return evaluate_ranking(m, ds, split, "valid", (20,), metrics=("recall", "ndcg"),
                                max_users=max_users)["metrics"]

    return Validator(validate)


def choose(model: str, ds: Dataset, split: Split, valid_users: int) -> dict[str, Any]:
    """The model's own search (``k = "auto"``) on ``split``'s validation part; returns its
    report (:meth:`~streamrec.models.spectral_auto.AutoSpectral.fit_report`): the chosen
    ``k`` and weights, every setting tried and its validation NDCG@20."""
    train = split.train(ds)
    t = time.perf_counter()
    m = make_model(model, {"valid_users": valid_users}, train)
    m.fit(train, validator(ds, split))
    report = {**m.fit_report(), "wall_seconds": time.perf_counter() - t}
    print(f"  {model} search on the carved validation: {_settings(chosen_params(m, report))}, "
          f"valid NDCG@20 {report['valid']:.4f} ({report['settings']} settings, "
          f"{report['wall_seconds']:.0f} s)", flush=True)
    return report


def chosen_params(m: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The options that fix what a search chose (``k`` and each weight)."""
    return {"k": report["k"], **{n: report[n] for n in m.WEIGHTS}}


def final(model: str, params: dict[str, Any], data: str, isolate: bool) -> dict[str, Any]:
    """Fit ``model`` with ``params`` on ``data``'s training part as ``streamrec train`` does
    (with the validation part as its validator, so ``"auto"`` options are searched there, when
    the split has one) and evaluate test once, with its fit time (search included),
    evaluation time and peak memory; in a fresh (spawned) process when ``isolate``, so that
    the memory figure is the model's alone (in this process, memory freed by an earlier model
    and reused by a later one would not show)."""
    if not isolate:
        return _final(model, params, data)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_final, model, params, data).result()


def _final(model: str, params: dict[str, Any], data: str) -> dict[str, Any]:
    ds = dataset(data)
    split = split_from_spec(ds, default_split_spec(ds))
    train = split.train(ds)
    validate = validator(ds, split) if has_stage(None, ds, split, "valid") else None
    load0 = os.getloadavg()[0]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        m = make_model(model, params, train)
        m.fit(train, validate)
        fit_seconds = time.perf_counter() - t0
        res = evaluate_ranking(m.eval(), ds, split, "test", (20,))
    fit = m.fit_report()
    chosen = chosen_params(m, fit) if isinstance(m, AutoSpectral) else {}
    del m
    out = {"model": model, "params": params, "chosen": chosen, "fit": fit,
           "fit_seconds": fit_seconds, "eval_seconds": res["seconds"],
           "peak_rss_added": mem.added, "peak_rss": mem.peak, "test": res["metrics"],
           "protocol": res["protocol"], "torch_threads": torch.get_num_threads(),
           "loadavg_start": load0, "loadavg_end": os.getloadavg()[0]}
    how = fit.get("selection", "")
    print(f"  {model} {params or 'defaults'} -> {_settings(chosen)} ({how or 'no search'}): "
          f"test Recall@20 {res['metrics']['recall@20']:.4f}, "
          f"NDCG@20 {res['metrics']['ndcg@20']:.4f}; fit {fit_seconds:.0f} s, eval "
          f"{res['seconds']:.0f} s, +{_mib(mem.added)}", flush=True)
    return out


def lightgcn_row(run_dir: Path) -> dict[str, Any] | None:
    """LightGCN's Gowalla figures: a cached finished run at ``run_dir`` when there is one,
    else the earlier benchmark's result file (labelled), else None. Nothing is trained."""
    results = run_dir / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        return {"model": "lightgcn", "source": f"cached run {run_dir}",
                "test": r["test"]["metrics"], "fit_seconds": r.get("train_seconds"),
                "protocol": r["test"].get("protocol")}
    earlier = RESULTS / "gowalla_lightgcn.json"
    if earlier.is_file():
        r = json.loads(earlier.read_text())["results"]["lightgcn"]
        return {"model": "lightgcn", "source": "earlier run: results/gowalla_lightgcn.json "
                "(not re-run here)", "test": r["test"], "fit_seconds": r.get("train_seconds")}
    return None


# ============================================================================ per dataset
def run_dataset(data: str, models: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Each model as ``streamrec train`` runs it (its own search where the split has a
    validation part), test once; on Gowalla also the search on the carved validation part,
    then the chosen values refitted on the whole training file, test once."""
    print(f"== {NAMES[data]}", flush=True)
    ds = dataset(data)
    split = split_from_spec(ds, default_split_spec(ds))
    out: dict[str, Any] = {
        "dataset": NAMES[data], "users": ds.n_users, "items": ds.n_items,
        "split": split.protocol(), "has_validation": has_stage(None, ds, split, "valid"),
        "models": {}}
    carved = carve_validation(ds, split) if data == "gowalla" else None
    if carved is not None:
        out["selection_split"] = carved.protocol()
        out["valid_users"] = args.valid_users
    for m in models:
        row: dict[str, Any] = {"defaults": final(m, {}, data, not args.quick)}
        if carved is not None and issubclass(get_model_class(m), AutoSpectral):
            row["search"] = choose(m, ds, carved, args.valid_users)
            tuned = {"k": row["search"]["k"],
                     **{n: row["search"][n] for n in get_model_class(m).WEIGHTS}}
            row["tuned"] = final(m, tuned, data, not args.quick)
        out["models"][m] = row
    return out


# ============================================================================ tables
def _settings(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items()) or "defaults"


def gowalla_table(res: dict[str, Any], lightgcn: dict[str, Any] | None) -> str:
    lines = [
        "| model | options | chosen on validation | fit | eval (29,858 users) | peak memory "
        "added | Recall@20 | NDCG@20 | published R@20 / N@20 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, row in res["models"].items():
        pub = PUBLISHED.get(SAME_METHOD.get(m, ""))
        for label, r in (("defaults", row["defaults"]), ("tuned", row.get("tuned"))):
            if r is None:
                continue
            shown = r["chosen"] or r["params"]
            selection = r["fit"].get("selection", "")
            how = ("yes (carved)" if label == "tuned" else "yes (the split's)"
                   if selection == "validation" else "no (size rule)"
                   if selection.startswith("rule") else "no")
            lines.append(
                f"| {m} | {_settings(shown)} | {how} | "
                f"{r['fit_seconds']:.0f} s | {r['eval_seconds']:.0f} s | "
                f"{_mib(r['peak_rss_added'])} | {r['test']['recall@20']:.4f} | "
                f"{r['test']['ndcg@20']:.4f} | "
                f"{f'{pub[0]:.4f} / {pub[1]:.4f}' if pub else '-'} |")
    if lightgcn:
        pub = PUBLISHED[SAME_METHOD["lightgcn"]]
        fit = f"{lightgcn['fit_seconds'] / 60:.1f} min" if lightgcn.get("fit_seconds") else "-"
        lines.append(f"| lightgcn | {lightgcn['source']} | - | {fit} | - | - | "
                     f"{lightgcn['test']['recall@20']:.4f} | {lightgcn['test']['ndcg@20']:.4f} "
                     f"| {pub[0]:.4f} / {pub[1]:.4f} |")
    lines += ["", "Published board (LightGCN Gowalla split, Recall@20 / NDCG@20):", "",
              *board_lines()]
    return "\n".join(lines)


def board_lines() -> list[str]:
    """The published board and the issue's target, as Markdown table lines."""
    return ["| method | Recall@20 | NDCG@20 |", "|---|---|---|",
            *(f"| {k} | {r:.4f} | {n:.4f} |" for k, (r, n) in PUBLISHED.items()),
            f"| **target (issue 17)** | **{TARGET['recall@20']:.4f}** | "
            f"**{TARGET['ndcg@20']:.4f}** |"]


def cross_table(results: dict[str, Any]) -> str:
    lines = ["| dataset | model | chosen on validation (`k = auto`) | valid NDCG@20 | "
             "Recall@20 | NDCG@20 | fit (search included) | peak memory added |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results.values():
        for m, row in res["models"].items():
            d = row["defaults"]
            valid = d["fit"].get("valid")
            chosen = _settings(d["chosen"]) if d["chosen"] else "-"
            lines.append(f"| {res['dataset']} | {m} | {chosen}"
                         f" | {f'{valid:.4f}' if valid is not None else '-'} | "
                         f"{d['test']['recall@20']:.4f} | {d['test']['ndcg@20']:.4f} | "
                         f"{d['fit_seconds']:.1f} s | {_mib(d['peak_rss_added'])} |")
    return "\n".join(lines)


# ============================================================================ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--valid-users", type=int, default=VALID_USERS,
                    help="Gowalla: at most this many carved validation users in the search "
                         "(a seeded sample; the models' valid_users)")
    ap.add_argument("--lightgcn-run", type=Path, default=WORK / "gowalla" / "runs" / "lightgcn",
                    help="a finished lightgcn run on the Gowalla split, read if it exists")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: MovieLens-100k only, in this process (~1 min)")
    ap.add_argument("--name", default=None, help="result name (default: spectral_board, "
                                                  "or spectral_board_quick with --quick)")
    args = ap.parse_args()
    datasets = ["ml100k"] if args.quick else args.datasets.split(",")
    models = args.models.split(",")
    name = args.name or ("spectral_board_quick" if args.quick else "spectral_board")
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"unknown dataset(s) / model(s): {', '.join(unknown)}")
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    partial = RESULTS / f"{name}.partial.json"
    for data in datasets:
        results[data] = run_dataset(data, models, args)
        RESULTS.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(results, indent=2, default=str))
    lightgcn = lightgcn_row(args.lightgcn_run) if "gowalla" in results else None
    parts = []
    if "gowalla" in results:
        parts += ["## Gowalla (LightGCN split), test, full ranking", "",
                  gowalla_table(results["gowalla"], lightgcn), ""]
    others = {d: r for d, r in results.items() if d != "gowalla"}
    if others:
        parts += ["## Across datasets, test, full ranking (train + valid items masked)", "",
                  cross_table(others), ""]
    protocol = {
        "gowalla": "LightGCN split (no validation part: defaults = the size rule = the "
                   "papers' values); tuned = the models' own search on a validation part "
                   "carved from the training file (one random training item per user with "
                   ">= 2, seed 0; test dropped), at most "
                   f"{args.valid_users} sampled validation users; the chosen values refitted "
                   "on the whole training file; test evaluated once",
        "others": "each dataset's split (leave-last-out by time; UniSRec's given split for "
                  "Amazon Scientific); each model as `streamrec train` runs it (its search "
                  "on the validation part); test once",
        "selection": "the models' own k = 'auto' search (streamrec.models.spectral_auto): a "
                     "geometric grid of k around the size rule x the model's weights, by "
                     "validation NDCG@20 on at most valid_users sampled users; gf-cf: none",
        "metrics": "Recall@20 (denominator: all test items of the user), NDCG@20; full "
                   "ranking over all items, seen items masked",
        "time": "wall clock of constructor + fit (graph, SVD) and of the test evaluation, "
                "shared 2-core CPU",
        "memory": "peak resident set size during fit + evaluation minus the size before, "
                  + ("in this process (--quick: memory freed by an earlier model and reused "
                     "by a later one does not show)" if args.quick else
                     "each final model in a fresh process"),
        "quick": args.quick and "smoke test: MovieLens-100k, in this process",
    }
    payload = {"protocol": protocol, "published": PUBLISHED, "target": TARGET,
               "results": results,
               "lightgcn": lightgcn, "total_seconds": time.perf_counter() - t0,
               "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    write_result(name, payload, "\n".join(parts),
                 history=f"Gowalla: {HISTORY['no-valid']}; the other data sets: "
                         f"{HISTORY['train+valid']}")
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
