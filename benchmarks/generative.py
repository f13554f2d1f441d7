"""Benchmark: the generative recommenders (issue 16, section 3) against EASE, the published
figures and RecBole, and their synthetic users against real ones.

Three parts; each writes ``results/generative_PART.json`` (+ ``.md``, the table) through
``common.write_result``, with its protocol and the machine (``common.machine()``):

``gowalla``
    ease, mult-vae, mult-dae, diffrec (l-diffrec instead when diffrec's training would not fit
    in memory) and cfgan on Gowalla, the LightGCN split (``../shared/data/gowalla``: 29,858
    users, 40,981 items, 810,128 train / 217,242 test). Full ranking over all items, the
    user's training items masked, Recall@20 (denominator: all the user's test items) and
    NDCG@20 over the test users, as BARS (reczoo's open benchmark) reports them beside
    Mult-VAE 0.1641 / 0.1335 and EASE 0.1765 / 0.1467. Targets: at least those figures, and
    DiffRec above Mult-VAE (Recall@20 and NDCG@20). The split has no validation part; with
    ``--gowalla-valid holdout`` (the default) one random training interaction of every user
    with two or more becomes validation (seed 0; 29,858 interactions, the training part keeps
    780,270): it picks the epoch (early stopping), Mult-VAE's beta and EASE's lambda, and is
    part of the history at test time, so it is masked like the training items. BARS's own
    runs had no validation set (EASE's lambda = 80 was "searched" on the test set). With
    ``--gowalla-valid none`` the models train on all of the training part for their fixed
    epochs and the final model is tested (EASE lambda = 80, Mult-VAE beta capped at 0.2).
``small``
    MovieLens-100k (943 users, 1,682 items, 100k ratings as interactions) and the ``m0`` world
    (10,000 users, 5,000 items, ~397k interactions, ``generate_world("m0", seed=0)``),
    leave-last-out by time (test = last, validation = second last), full ranking with training
    and validation items masked. The generative models with mf, lightgcn and gf-cf beside
    them, every model with its defaults (``streamrec train MODEL``; early stopping on
    validation NDCG@20) and EASE's lambda chosen on validation. RecBole 1.2.1 MultiVAE runs on
    the same files and split (``streamrec.data.export.export_recbole`` -> benchmark files)
    through the peer harness (``../shared/peers/recbole_peer.py``, its own virtualenv
    ``.peer-venv``; without it the table says so and how to create it), validating NDCG@20
    every epoch with patience 10, at most ``--peer-epochs`` (100) epochs. Target: mult-vae at
    least RecBole's NDCG@20, in no more time (RecBole's epochs' and validations' seconds against
    ours plus our checkpoint writes, the time ``--time-budget`` counts). ``--models`` re-runs
    those models and keeps the saved rows of the others (and RecBole's run, unless mult-vae is
    among them).
``synthetic``
    Synthetic users from the trained Mult-VAE (``MultVAE.sample``: z ~ N(0, I) -> decoder ->
    that many distinct items, the count drawn from the real users' counts), DiffRec
    (``DiffRec.sample``: x_T ~ N(0, I) -> the reverse process -> a Bernoulli draw with the
    model's own counts, or a weighted draw of a real count) and L-DiffRec (latent noise), with
    a popularity sampler as the null model, against real users, on the ``m0`` world (which has
    item categories). The real users (their training rows) are split in three at random: the
    reference, a control set (real users the comparison never saw: the noise floor of every
    statistic) and a basis for the classifier's item features. Each set is compared with the
    reference: the item-popularity distribution (Jensen-Shannon divergence of the item shares,
    KS statistic of the per-item frequencies, coverage, Gini), the category mix (JS divergence,
    mean per-user category entropy), interactions per user (KS statistic), and the held-out ROC
    AUC of two classifiers at telling the set from the reference (logistic regression on the
    binary rows; gradient boosting on per-user summaries: count, mean and spread of log item
    popularity, category entropy and top share, coherence = mean pairwise cosine of the
    user's items in an SVD space of the basis users). 0.5 = indistinguishable.
    Plot: ``results/generative_synthetic.png`` and ``docs/generative_synthetic.png``.

Every model trains and is evaluated in a child process of its own (this file, ``_worker``),
so its peak memory is that process's ``ru_maxrss`` (from ``wait4``), next to its wall and CPU
time; ``train time`` is the run's training wall time, validation included.

    python benchmarks/generative.py gowalla|small|synthetic|all [--quick] [--models a,b]
        [--data ml100k,m0] [--set MODEL:key=value] [--device cuda] [--gowalla-valid holdout|none]

``--quick`` runs every part on the ``tiny`` world (2 epochs a model) into a temporary
directory that is deleted at the end (``--keep`` keeps it): a check of the whole pipeline in
about a minute, nothing under ``results/`` or ``docs/`` is touched.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.train import Callback

import common
from common import write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
DOCS = ROOT / "docs"
WORK = HERE / "work" / "generative"
PEER = SHARED / "peers" / "recbole_peer.py"
PEER_PYTHON = ROOT / ".peer-venv" / "bin" / "python"
PEER_INSTALL = (
    "python3 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 'numpy>=1.17.2' "
    "'scipy>=1.6' 'pandas>=1.3,<3' 'scikit-learn>=0.23.2' 'pyyaml>=5.1' 'tqdm>=4.48.2' "
    "colorlog==4.7.2 colorama==0.4.4 texttable && .peer-venv/bin/pip install --no-deps "
    "recbole==1.2.1  (../shared/peers/README.md)"
)

#: BARS (reczoo) on Gowalla, the LightGCN split: (Recall@20, NDCG@20)
BARS = {"mult-vae": (0.1641, 0.1335), "ease": (0.1765, 0.1467)}
GOWALLA_MODELS = ("ease", "mult-vae", "mult-dae", "diffrec", "cfgan")
SMALL_MODELS = ("ease", "mult-vae", "mult-dae", "diffrec", "l-diffrec", "cfgan",
                "mf", "lightgcn", "gf-cf")
SMALL_DATA = ("ml100k", "m0")
CLOSED_FORM = ("ease", "gf-cf", "pop")
#: the models the synthetic part samples from (their small-part runs are kept on disk)
SAMPLERS = ("mult-vae", "diffrec", "l-diffrec")
#: EASE's lambda is chosen on validation from these
EASE_GRID = {
    "gowalla": [40, 80, 160],
    "ml100k": [10, 30, 100, 300, 1000],
    "m0": [30, 100, 300, 1000, 3000],
    "tiny": [10, 100],
}
#: settings beyond each model's defaults on Gowalla, where a model's epoch (and DiffRec's
#: validation: T = 5 denoiser passes over 29,858 x 40,981) is long on a CPU: validate every 5
#: epochs (patience in validations); CFGAN with one D and two G passes an epoch (DiffRec in
#: bfloat16, ``--set diffrec:precision=bf16``, also fits 10 epochs in 30 minutes, and tests
#: lower: results/generative_gowalla_diffrec_bf16.json)
GOWALLA_SETTINGS = {
    "mult-vae": ["eval_every=5", "patience=4"],
    "mult-dae": ["eval_every=5", "patience=4"],
    "diffrec": ["epochs=40", "eval_every=5", "patience=3"],
    "l-diffrec": ["eval_every=5", "patience=4"],
    "cfgan": ["batch_size=256", "d_steps=1", "g_steps=2", "epochs=50", "eval_every=5",
              "patience=4"],
}
#: without validation (``--gowalla-valid none``): fixed settings, the final model tested
GOWALLA_NO_VALID = {"ease": ["l2=80"], "mult-vae": ["anneal_cap=0.2"]}
QUICK_SETTINGS = ["epochs=2"]
PROTOCOL_COMMON = {
    "candidates": "full ranking over all items; the user's training (and validation) items "
                  "masked",
    "metrics": "Recall@20 (denominator: all the user's test items) and NDCG@20 (binary "
               "gains), averaged over the test users",
    "timing": "train time = the run's training wall time, validation included; peak RSS, "
              "wall and CPU time of the model's own child process (wait4); against RecBole "
              "(its epochs' and validations' summed seconds) the time is the same sum plus "
              "the checkpoint writes (what --time-budget counts)",
}


@dataclass
class Context:
    """Where a part reads and writes, and what every model gets."""

    quick: bool
    work: Path  # datasets and kept runs
    tmp: Path  # specs, child results, logs
    suffix: str  # results name suffix ("_quick" in quick mode)
    extra: list[str]  # overrides for every model (``--device``)
    sets: list[str]  # ``--set`` strings
    peer_python: Path
    peer_epochs: int
    gowalla_valid: str
    seed: int = 0
    diffrec_noise: float = 1.0
    docs: bool = True


# ============================================================================ child processes
def run_child(cmd: list[str], stdout: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` to its end (stderr inherited; stdout inherited or into ``stdout``); its
    exit code, wall time, CPU time and peak resident memory (``ru_maxrss`` from ``wait4``)."""
    t0 = time.perf_counter()
    out = open(stdout, "w") if stdout is not None else None  # noqa: SIM115
    try:
        proc = subprocess.Popen(cmd, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if out is not None:
            out.close()
    return {
        "returncode": proc.returncode,
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: kilobytes
    }


class EpochLog(Callback):
    """Training callback keeping every epoch's log line (loss, validation, the model's own
    numbers, e.g. CFGAN's two players) for the JSON."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        self.rows.append(json.loads(json.dumps({"epoch": epoch + 1, **logs}, default=str)))


def grid_points(grid: dict[str, list[Any]] | None) -> list[list[str]]:
    if not grid:
        return [[]]
    keys = list(grid)
    return [[f"{k}={v}" for k, v in zip(keys, combo)]
            for combo in itertools.product(*(grid[k] for k in keys))]


def worker(spec_file: str, out_file: str) -> None:
    """The child: train (every grid point), evaluate, write the chosen point's results."""
    import resource

    import torch
    from rich.console import Console

    from streamrec.run import train_run

    spec = json.loads(Path(spec_file).read_text())
    points = grid_points(spec.get("grid"))
    tried, best, best_key = [], None, -math.inf
    for point in points:
        log = EpochLog()
        out = spec["out"] if len(points) == 1 else None
        r = train_run(spec["model"], spec["data"], out, overrides=[*spec["overrides"], *point],
                      overwrite=True, progress=False, console=Console(stderr=True),
                      callbacks=[log], test_history=spec.get("test_history", "train+valid"))
        res = r.results
        row = {
            "model": spec["model"],
            "overrides": spec["overrides"],
            "grid_point": point,
            "model_config": r.config["model_config"],
            "train_config": r.config["train_config"],
            "split": r.config["split"],
            "train_seconds": res["train_seconds"],
            # epochs + validations + checkpoint writes: what --time-budget counts, and what
            # RecBole's train + valid seconds (its epochs' and validations' sums) compare with
            "loop_seconds": res["train"]["train_seconds"],
            "epochs_run": res["train"]["epochs_run"],
            "best_epoch": res["train"]["best_epoch"],
            "stopped_early": res["train"].get("stopped_early"),
            "valid_tail_std": res["train"].get("valid_tail_std"),
            "valid": res.get("valid", {}).get("metrics"),
            "test": res["test"]["metrics"],
            "test_seconds": res["test"].get("seconds"),
            "protocol": res["test"].get("protocol"),
            "curve": log.rows,
        }
        if spec["model"] == "mult-vae":
            row["selected_beta"] = float(r.model.selected_beta)
        key = (row["valid"] or {}).get("ndcg@20", -math.inf)
        tried.append({k: row[k] for k in ("grid_point", "valid", "test", "train_seconds")})
        if best is None or key > best_key:
            best, best_key = row, key
        del r
        gc.collect()
    assert best is not None
    best["grid"] = tried if len(points) > 1 else None
    best["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        best["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(out_file).write_text(json.dumps(best, indent=2, default=str))


def overrides_for(name: str, base: list[str], ctx: Context) -> list[str]:
    """``base`` + the quick settings + ``--device`` + the ``--set`` strings for ``name``
    (``key=value``: every trainable model; ``MODEL:key=value``: that one)."""
    out = list(base)
    trainable = name not in CLOSED_FORM
    if ctx.quick and trainable:
        out += QUICK_SETTINGS
    out += ctx.extra
    for s in ctx.sets:
        target, _, kv = s.partition(":") if ":" in s.split("=", 1)[0] else ("", "", s)
        if (target == name) or (not target and trainable):
            out.append(kv)
    return out


def run_model(name: str, data: Path, overrides: list[str], ctx: Context,
              grid: dict[str, list[Any]] | None = None, out: Path | None = None,
              test_history: str = "train+valid") -> dict[str, Any]:
    """Train and evaluate ``name`` on ``data`` in a child process; its results + process.
    ``test_history``: the history its test stage reads (``train+valid`` or ``train``)."""
    tag = f"{data.name}-{name}-{len(list(ctx.tmp.glob('spec-*')))}"
    spec_file, result_file = ctx.tmp / f"spec-{tag}.json", ctx.tmp / f"result-{tag}.json"
    spec_file.write_text(json.dumps({"model": name, "data": str(data), "overrides": overrides,
                                     "grid": grid, "out": str(out) if out else None,
                                     "test_history": test_history}))
    shown = " ".join(overrides) or "defaults"
    if grid:
        shown += f"; grid {grid}"
    print(f"== {name} on {data.name} ({shown})", flush=True)
    proc = run_child([sys.executable, str(Path(__file__).resolve()), "_worker", str(spec_file),
                      str(result_file)])
    if proc["returncode"] != 0 or not result_file.is_file():
        print(f"   {name} FAILED (exit {proc['returncode']})", flush=True)
        return {"model": name, "overrides": overrides, "error": f"exit {proc['returncode']}",
                "process": proc}
    row = json.loads(result_file.read_text())
    row["process"] = proc
    t = row["test"]
    print(f"   {name}: Recall@20 {t['recall@20']:.4f}, NDCG@20 {t['ndcg@20']:.4f}, train "
          f"{row['train_seconds']:.1f} s, peak RSS {proc['peak_rss_mb']:.0f} MB", flush=True)
    return row


# ============================================================================ data
def tiny_world(work: Path) -> Path:
    """The ``tiny`` world (seed 0) on disk: the stand-in for every data set with --quick."""
    from streamrec.data.world import make_world

    out = work / "tiny"
    if not (out / "meta.json").is_file():
        make_world("tiny", seed=0).save(out, overwrite=True)
    return out


def tiny_given(work: Path) -> Path:
    """The tiny world with a fixed random 80/20 train/test split as its ``given`` split (no
    validation), the shape of the Gowalla files."""
    from streamrec.data.dataset import Dataset, load_dataset

    out = work / "tiny-given"
    if not (out / "meta.json").is_file():
        ds = load_dataset(tiny_world(work))
        test = np.random.default_rng(0).random(ds.n_interactions) < 0.2
        Dataset(name="tiny-given", user_ids=ds.user_ids, item_ids=ds.item_ids,
                inter={**ds.inter, "given_split": (2 * test).astype(np.int8)},
                items=ds.items, users=ds.users, meta=dict(ds.meta)).save(out, overwrite=True)
    return out


def gowalla_data(ctx: Context) -> Path:
    if ctx.quick:
        base = tiny_given(ctx.work)
    else:
        from gowalla_graph import WORK as GOWALLA_WORK
        from gowalla_graph import gowalla

        gowalla()  # imported once into work/graph/gowalla
        base = GOWALLA_WORK
    if ctx.gowalla_valid == "none":
        return base
    return common.with_holdout(base, ctx.work / f"{base.name}-holdout")


def small_data(name: str, ctx: Context) -> Path:
    if ctx.quick:
        return tiny_world(ctx.work)
    if name == "m0":
        from m0_graph import m0_world

        return m0_world()
    if name == "ml100k":
        from streamrec.data.importers import import_dataset

        out = ctx.work / "ml100k"
        if not (out / "meta.json").is_file():
            import_dataset("movielens-100k", SHARED / "data" / "movielens-100k" / "raw", out)
        return out
    raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(SMALL_DATA)}")


def data_protocol(data: Path) -> dict[str, Any]:
    from streamrec.data.dataset import load_dataset
    from streamrec.data.splits import default_split_spec, split_from_spec

    ds = load_dataset(data)
    spec = default_split_spec(ds)
    split = split_from_spec(ds, spec)
    return {"data": str(data), "name": ds.name, "users": ds.n_users, "items": ds.n_items,
            "interactions": ds.n_interactions, "split": spec,
            "parts": {p: int(split.mask(p).sum()) for p in ("train", "valid", "test")}}


def diffrec_training_bytes(n_items: int, hidden: list[int], batch: int) -> int:
    """About what training DiffRec takes: weights, gradients and Adam's two moments of the
    denoiser (4 x 4 bytes a parameter) and ~8 float32 [batch, n_items] activations."""
    widths = [n_items + 10, *hidden, *reversed(hidden[:-1]), n_items]
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    return 16 * params + 8 * 4 * batch * n_items


# ============================================================================ tables
def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def _minutes(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _settings(row: dict[str, Any]) -> str:
    parts = [o for o in row.get("overrides", []) if not o.startswith(("device=", "threads="))]
    if row.get("grid"):
        chosen = ", ".join(row["grid_point"])
        options = "/".join(str(g["grid_point"][0].split("=", 1)[1]) for g in row["grid"])
        parts.append(f"{chosen} (of {options}, on validation)")
    if "selected_beta" in row:
        parts.append(f"beta {row['selected_beta']:.3f}")
    return ", ".join(parts) or "defaults"


def _epochs(row: dict[str, Any]) -> str:
    if not row.get("epochs_run"):
        return "closed form"
    return f"{row['epochs_run']} ({row['best_epoch'] + 1})"


def machine_line() -> str:
    m = common.machine()
    gpu = f", {m['cuda']}" if m.get("cuda") else ", no GPU"
    return (f"Machine: {m['cpu']}, {m['cores']} cores{gpu}; torch {m['torch']} "
            f"({m['torch_threads']} threads); {m['date']}.")


def protocol_text(protocol: dict[str, Any]) -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in protocol.items())


# ============================================================================ gowalla
def gowalla_targets(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (r20, n20) in BARS.items():
        row = rows.get(name)
        if row and "test" in row:
            t = row["test"]
            out[name] = {"bars": {"recall@20": r20, "ndcg@20": n20},
                         "got": {"recall@20": t["recall@20"], "ndcg@20": t["ndcg@20"]},
                         # the published figures have 4 decimals: compare at 4 decimals
                         "met": (round(t["recall@20"], 4) >= r20
                                 and round(t["ndcg@20"], 4) >= n20)}
    vae = rows.get("mult-vae")
    for diff_name in ("diffrec", "l-diffrec"):
        diff = rows.get(diff_name)
        if vae and diff and "test" in vae and "test" in diff:
            out[f"{diff_name} > mult-vae"] = {
                "met": all(diff["test"][k] > vae["test"][k] for k in ("recall@20", "ndcg@20"))}
    return out


def gowalla_table(rows: dict[str, dict[str, Any]], targets: dict[str, Any]) -> str:
    lines = [
        "| model | settings | epochs (best) | train time | process wall / CPU | peak RSS "
        "| Recall@20 | NDCG@20 | BARS R@20 / N@20 | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        proc = row.get("process", {})
        if "error" in row:
            rss = proc.get("peak_rss_mb")
            lines.append(f"| {name} | {_settings(row)} | failed ({row['error']}) | - | - | "
                         f"{'-' if rss is None else f'{rss / 1024:.1f} GB'} | - | - | - | - |")
            continue
        bars = BARS.get(name)
        target = ""
        if name in targets:
            target = f">= BARS: {'met' if targets[name]['met'] else 'NOT met'}"
        elif f"{name} > mult-vae" in targets:
            met = targets[f"{name} > mult-vae"]["met"]
            target = f"> mult-vae: {'met' if met else 'NOT met'}"
        lines.append(
            f"| {name} | {_settings(row)} | {_epochs(row)} | {_minutes(row['train_seconds'])} "
            f"| {_minutes(proc.get('wall_seconds'))} / {_minutes(proc.get('cpu_seconds'))} "
            f"| {proc.get('peak_rss_mb', 0) / 1024:.1f} GB | {row['test']['recall@20']:.4f} "
            f"| {row['test']['ndcg@20']:.4f} "
            f"| {f'{bars[0]:.4f} / {bars[1]:.4f}' if bars else '-'} | {target} |")
    return "\n".join(lines)


def part_gowalla(args: argparse.Namespace, ctx: Context) -> None:
    from streamrec.models.ease import available_memory

    data = gowalla_data(ctx)
    key = "tiny" if ctx.quick else "gowalla"
    models = args.models.split(",") if args.models else list(GOWALLA_MODELS)
    notes = []
    if "diffrec" in models and not ctx.quick and not any("cuda" in e for e in ctx.extra):
        from streamrec.data.dataset import load_dataset

        n_items = load_dataset(data).n_items
        need, have = diffrec_training_bytes(n_items, [1000], 400), available_memory()
        if need > have:
            models[models.index("diffrec")] = "l-diffrec"
            notes.append(f"diffrec needs ~{need / 2**30:.1f} GiB to train on {n_items:,} items "
                         f"but {have / 2**30:.1f} GiB is available: l-diffrec runs instead")
        else:
            notes.append(f"diffrec fits: ~{need / 2**30:.1f} GiB to train, "
                         f"{have / 2**30:.1f} GiB available")
    rows: dict[str, dict[str, Any]] = {}
    novalid = "_novalid" if ctx.gowalla_valid == "none" else ""
    name_out = f"generative_gowalla{novalid}{ctx.suffix}"
    partial = common.RESULTS / f"{name_out}.partial.json"
    saved_path = common.RESULTS / f"{name_out}.json"
    if args.rerender:  # the table again from the saved results (after a change of this code)
        saved = json.loads(saved_path.read_text())
        models, rows, notes = [], saved["results"], saved["notes"]
    elif args.models and saved_path.is_file():  # a subset re-run: the other rows are kept
        saved = json.loads(saved_path.read_text())
        rows = {k: v for k, v in saved["results"].items() if k not in models}
        notes = [*saved["notes"], *notes]
    memory = [n for n in notes if n.startswith("diffrec ")]  # the latest memory note only
    notes = [*(n for n in notes if not n.startswith("diffrec ")), *memory[-1:]]
    for name in models:
        base = [] if ctx.quick else list(GOWALLA_SETTINGS.get(name, []))
        grid = None
        if ctx.gowalla_valid == "none":
            base += GOWALLA_NO_VALID.get(name, [])
        elif name == "ease":
            grid = {"l2": EASE_GRID[key]}
        rows[name] = run_model(name, data, overrides_for(name, base, ctx), ctx, grid)
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(rows, indent=2, default=str))
    targets = gowalla_targets(rows)
    protocol = {
        **data_protocol(data),
        "source": "stand-in: the tiny world with a random 80/20 given split (--quick)"
                  if ctx.quick else "Gowalla, the LightGCN split (../shared/data/gowalla)",
        "validation": ("one random training interaction per user (>= 2), seed 0: early "
                       "stopping, Mult-VAE's beta, EASE's lambda; masked at test time"
                       if ctx.gowalla_valid == "holdout" else
                       "none: fixed epochs, the final model tested"),
        "K": 20,
        **PROTOCOL_COMMON,
        "published": "BARS (reczoo Open-CF-Benchmarks), Gowalla x0/x1 = the LightGCN split",
    }
    table = (gowalla_table(rows, targets) + "".join(f"\n\n*{n}*" for n in notes)
             + "\n\nProtocol:\n\n" + protocol_text(protocol) + "\n\n" + machine_line())
    history = ("the test stage reads training + the held-out validation item (`--test-history "
               "train+valid`), i.e. the whole training file as in the published protocol; "
               "training + validation items masked; averaged over the users with test items"
               if ctx.gowalla_valid == "holdout" else "no-valid")
    write_result(name_out, {"protocol": protocol, "bars": BARS, "targets": targets,
                            "notes": notes, "results": rows}, table, history=history)
    partial.unlink(missing_ok=True)


# ============================================================================ small + RecBole
def run_peer(data: Path, name: str, ctx: Context) -> dict[str, Any]:
    """RecBole 1.2.1 MultiVAE on ``data``'s own split (exported as benchmark files)."""
    if not ctx.peer_python.is_file() or not PEER.is_file():
        missing = ctx.peer_python if not ctx.peer_python.is_file() else PEER
        return {"status": "not run", "reason": f"{missing} does not exist",
                "how": f"create the peer virtualenv: {PEER_INSTALL}"}
    from streamrec.data.dataset import load_dataset
    from streamrec.data.export import export_recbole
    from streamrec.data.splits import default_split_spec, split_from_spec

    ds = load_dataset(data)
    split = split_from_spec(ds, default_split_spec(ds))
    files = export_recbole(ds, ctx.work / "recbole" / name, split, name=name, overwrite=True)
    json_out, log = ctx.tmp / f"recbole-{name}.json", ctx.tmp / f"recbole-{name}.log"
    cmd = [str(ctx.peer_python), str(PEER), "--model", "MultiVAE", "--data-dir", str(files),
           "--dataset", name, "--split", "benchmark", "--epochs", str(ctx.peer_epochs),
           "--eval-step", "1", "--stopping-step", "10", "--valid-metric", "NDCG@20",
           "--topk", "10,20", "--set", "train_neg_sample_args=None", "--quiet",
           "--json-out", str(json_out)]
    print(f"== RecBole 1.2.1 MultiVAE on {name}", flush=True)
    proc = run_child(cmd, stdout=log)
    if proc["returncode"] != 0 or not json_out.is_file():
        return {"status": "failed", "command": cmd, "process": proc,
                "log_tail": log.read_text()[-2000:] if log.is_file() else ""}
    res = json.loads(json_out.read_text())
    res.update(status="ok", command=cmd, process=proc)
    print(f"   RecBole MultiVAE: NDCG@20 {res['metrics']['ndcg@20']:.4f}, train "
          f"{res['train_seconds']:.1f} s", flush=True)
    return res


def small_table(name: str, block: dict[str, Any]) -> str:
    rows, peer = block["rows"], block["recbole"]
    ease = rows.get("ease", {}).get("test")
    lines = [
        f"**{name}** ({block['protocol']['users']:,} users, {block['protocol']['items']:,} "
        f"items, {block['protocol']['interactions']:,} interactions)",
        "",
        "| model | settings | Recall@20 | NDCG@20 | NDCG@20 vs EASE | epochs (best) "
        "| train time | process wall | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, row in rows.items():
        proc = row.get("process", {})
        if "error" in row:
            lines.append(f"| {model} | {_settings(row)} | failed ({row['error']}) | - | - | - "
                         f"| - | - | - |")
            continue
        t = row["test"]
        vs = f"{100 * (t['ndcg@20'] / ease['ndcg@20'] - 1):+.1f}%" if ease and model != "ease" \
            else "-"
        lines.append(f"| {model} | {_settings(row)} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} "
                     f"| {vs} | {_epochs(row)} | {_minutes(row['train_seconds'])} "
                     f"| {_minutes(proc.get('wall_seconds'))} "
                     f"| {proc.get('peak_rss_mb', 0):.0f} MB |")
    if peer.get("status") == "ok":
        m, proc = peer["metrics"], peer["process"]
        peer_time = peer["train_seconds"] + (peer.get("valid_seconds") or 0.0)
        vs = f"{100 * (m['ndcg@20'] / ease['ndcg@20'] - 1):+.1f}%" if ease else "-"
        lines.append(f"| RecBole 1.2.1 MultiVAE | RecBole defaults, early stopping on NDCG@20 "
                     f"| {m['recall@20']:.4f} | {m['ndcg@20']:.4f} | {vs} "
                     f"| {peer['epochs_run']} ({peer.get('best_epoch') or '-'}) "
                     f"| {_minutes(peer_time)} | {_minutes(proc['wall_seconds'])} "
                     f"| {proc['peak_rss_mb']:.0f} MB |")
        target = block.get("target")
        if target:
            lines += ["", f"Target (mult-vae NDCG@20 >= RecBole's; its seconds of epochs, "
                          f"validations and checkpoint writes <= RecBole's of epochs and "
                          f"validations): **{'met' if target['met'] else 'NOT met'}**"
                          f" ({target['ours_ndcg@20']:.4f} vs {target['recbole_ndcg@20']:.4f}; "
                          f"{target['ours_seconds']:.0f} s vs {target['recbole_seconds']:.0f} s)"]
            if "timed_ndcg" in target:
                walls = ""
                if target.get("recbole_fit_seconds") is not None:
                    walls = (f" (wall of the whole fit, setup and final save included: ours "
                             f"{target['timed_fit_seconds']:.1f} s, RecBole's "
                             f"{target['recbole_fit_seconds']:.1f} s)")
                lines += ["", f"With RecBole's time as its budget (`--time-budget "
                              f"{target['recbole_seconds']:.1f}s`; its best validated epoch "
                              f"kept): NDCG@20 {target['timed_ndcg']:.4f} in "
                              f"{target['timed_seconds']:.1f} s of epochs, validations and "
                              f"checkpoint writes{walls}: **"
                              f"{'met' if target['timed_met'] else 'NOT met'}**"]
    else:
        why = peer.get("reason") or f"exit {peer.get('process', {}).get('returncode')}"
        how = f"; {peer['how']}" if peer.get("how") else ""
        lines += ["", f"RecBole 1.2.1 MultiVAE: **{peer.get('status')}** ({why}){how}"]
    return "\n".join(lines)


def part_small(args: argparse.Namespace, ctx: Context) -> None:
    datasets = ["tiny"] if ctx.quick else (args.data.split(",") if args.data else
                                           list(SMALL_DATA))
    models = args.models.split(",") if args.models else list(SMALL_MODELS)
    name_out = f"generative_small{ctx.suffix}"
    partial = common.RESULTS / f"{name_out}.partial.json"
    blocks: dict[str, Any] = {}
    saved = common.RESULTS / f"{name_out}.json"
    saved_blocks: dict[str, Any] = {}
    if saved.is_file():  # what is not run now keeps its saved figures (run in pieces)
        saved_blocks = json.loads(saved.read_text())["results"]
        blocks = {k: v for k, v in saved_blocks.items() if k not in datasets}
    for data_name in datasets:
        data = small_data(data_name, ctx)
        old = saved_blocks.get(data_name, {})
        # the models not run now keep their saved rows (in the table's order)
        rows: dict[str, dict[str, Any]] = {
            k: v for k, v in old.get("rows", {}).items()
            if k not in models and not (k.startswith("mult-vae,") and "mult-vae" in models)}
        if "mult-vae" not in models and "recbole" in old:  # RecBole's run compares with it
            blocks[data_name] = old | {"rows": rows}
        for name in models:
            grid = {"l2": EASE_GRID[data_name]} if name == "ease" else None
            out = ctx.work / data_name / "runs" / name if name in SAMPLERS else None
            # the test stage reads the training history, as RecBole's MultiVAE does
            rows[name] = run_model(name, data, overrides_for(name, [], ctx), ctx, grid, out,
                                   test_history="train")
            common.RESULTS.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({**blocks, data_name: rows}, indent=2, default=str))
        order = [*SMALL_MODELS, "mult-vae, RecBole's time"]
        rows = dict(sorted(rows.items(), key=lambda kv: order.index(kv[0])
                           if kv[0] in order else len(order)))
        if data_name in blocks:  # mult-vae not re-run: RecBole's run and the target stand
            blocks[data_name]["rows"] = rows
            continue
        peer = run_peer(data, data_name, ctx)
        block = {"protocol": {**data_protocol(data), "K": 20, **PROTOCOL_COMMON},
                 "rows": rows, "recbole": peer}
        vae = rows.get("mult-vae", {})
        if peer.get("status") == "ok" and "test" in vae:
            peer_seconds = peer["train_seconds"] + (peer.get("valid_seconds") or 0.0)
            # the same model given no more than RecBole's time (--time-budget): it keeps its
            # best validated epoch when the budget runs out
            timed = run_model("mult-vae", data, overrides_for(
                "mult-vae", [f"time_budget={peer_seconds:.2f}"], ctx), ctx, None,
                test_history="train")
            if "test" in timed:
                rows["mult-vae, RecBole's time"] = timed
            ours_seconds = vae["loop_seconds"]
            block["target"] = {
                "ours_ndcg@20": vae["test"]["ndcg@20"],
                "recbole_ndcg@20": peer["metrics"]["ndcg@20"],
                "ours_seconds": ours_seconds, "recbole_seconds": peer_seconds,
                "met": (vae["test"]["ndcg@20"] >= peer["metrics"]["ndcg@20"]
                        and ours_seconds <= peer_seconds)}
            if "test" in timed:
                timed_seconds = timed["loop_seconds"]
                block["target"].update(
                    timed_ndcg=timed["test"]["ndcg@20"], timed_seconds=timed_seconds,
                    timed_fit_seconds=timed["train_seconds"],
                    recbole_fit_seconds=peer.get("fit_seconds"),
                    timed_met=(timed["test"]["ndcg@20"] >= peer["metrics"]["ndcg@20"]
                               and timed_seconds <= peer_seconds))
        blocks[data_name] = block
    protocol = {
        "data": "MovieLens-100k (GroupLens u.data, ratings as interactions) and the m0 world "
                "(generate_world('m0', seed=0))" if not ctx.quick else "the tiny world (--quick)",
        "split": "leave-last-out by time: test = last, validation = second last interaction",
        "selection": "each model's defaults (streamrec train MODEL), early stopping on "
                     "validation NDCG@20, the best validation epoch tested; EASE's lambda "
                     "on validation",
        "K": 20,
        **PROTOCOL_COMMON,
        "recbole": "RecBole 1.2.1 MultiVAE with its defaults on the same split (benchmark "
                   "files from export_recbole), validation NDCG@20 every epoch, patience 10, "
                   f"at most {ctx.peer_epochs} epochs; RecBole masks train + validation items "
                   "at test time as StreamRec does; its time = train + validation seconds",
        "history": "StreamRec's test stage reads the training history only (--test-history "
                   "train): the history RecBole's MultiVAE reads (AutoEncoderMixin's "
                   "history_item_matrix of the training split; docs/evaluation.md)",
    }
    table = ("\n\n".join(small_table(n, b) for n, b in blocks.items())
             + "\n\nProtocol:\n\n" + protocol_text(protocol) + "\n\n" + machine_line())
    write_result(name_out, {"protocol": protocol, "results": blocks}, table, history="recbole")
    partial.unlink(missing_ok=True)


# ============================================================================ synthetic users
def item_freq(rows: Any) -> np.ndarray:
    """How many of the rows hold each item: float64 [n_items]."""
    return np.asarray(rows.sum(0), dtype=np.float64).ravel()


def user_counts(rows: Any) -> np.ndarray:
    return np.diff(rows.indptr)


def js_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two count vectors, normalised."""
    from scipy.spatial.distance import jensenshannon

    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    return float(jensenshannon(a / a.sum(), b / b.sum(), base=2) ** 2)


def gini(x: np.ndarray) -> float:
    x = np.sort(np.asarray(x, dtype=np.float64))
    if x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def category_counts(rows: Any, cats: np.ndarray, n_cats: int) -> np.ndarray:
    """Per-user counts of items in each category: float64 [n_users, n_cats]."""
    import scipy.sparse as sp

    onehot = sp.csr_matrix((np.ones(len(cats)), (np.arange(len(cats)), cats)),
                           shape=(len(cats), n_cats))
    return np.asarray((rows @ onehot).todense(), dtype=np.float64)


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)


class Features:
    """Per-user summaries for the classifier, from item statistics of the basis users."""

    def __init__(self, basis: Any, cats: np.ndarray | None, n_cats: int, seed: int) -> None:
        from sklearn.utils.extmath import randomized_svd

        self.cats, self.n_cats = cats, n_cats
        self.logpop = np.log1p(item_freq(basis))
        k = max(1, min(32, min(basis.shape) - 1))
        _, s, vt = randomized_svd(basis.astype(np.float64), k, random_state=seed)
        v = vt.T * s
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        self.vecs = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)

    def __call__(self, rows: Any) -> np.ndarray:
        n = user_counts(rows).astype(np.float64)
        nn = np.maximum(n, 1)
        mean = rows @ self.logpop / nn
        std = np.sqrt(np.maximum(rows @ self.logpop**2 / nn - mean**2, 0))
        s = rows @ self.vecs
        pairs = np.maximum(n * (n - 1), 1)
        own = np.asarray(rows @ (self.vecs**2).sum(1)).ravel()  # sum of |v_i|^2 (1 or 0)
        coherence = np.where(n >= 2, ((s**2).sum(1) - own) / pairs, 0.0)  # mean v_i . v_j
        cols = [np.log1p(n), mean, std, coherence]
        if self.cats is not None:
            c = category_counts(rows, self.cats, self.n_cats)
            cols += [entropy_bits(c), c.max(1) / nn]
        return np.column_stack(cols)


def classifier_aucs(ref: Any, other: Any, features: Features, seed: int) -> dict[str, float]:
    """Held-out ROC AUC (30 %, stratified) of telling ``other``'s rows from ``ref``'s:
    logistic regression on the binary rows, gradient boosting on the summaries."""
    import scipy.sparse as sp
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    x = sp.vstack([ref, other]).tocsr()
    y = np.r_[np.zeros(ref.shape[0]), np.ones(other.shape[0])]
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y,
                                           random_state=seed)
    lr = LogisticRegression(max_iter=2000).fit(x[idx_train], y[idx_train])
    auc_rows = roc_auc_score(y[idx_test], lr.predict_proba(x[idx_test])[:, 1])
    f = np.vstack([features(ref), features(other)])
    gb = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
    gb.fit(f[idx_train], y[idx_train])
    auc_feat = roc_auc_score(y[idx_test], gb.predict_proba(f[idx_test])[:, 1])
    return {"auc_rows_logreg": float(auc_rows), "auc_summaries_gbdt": float(auc_feat)}


def describe(rows: Any, cats: np.ndarray | None, n_cats: int) -> dict[str, Any]:
    n = user_counts(rows)
    freq = item_freq(rows)
    out = {"users": int(rows.shape[0]), "items_per_user_mean": float(n.mean()),
           "items_per_user_median": float(np.median(n)), "coverage": float((freq > 0).mean()),
           "gini": gini(freq)}
    if cats is not None:
        c = category_counts(rows, cats, n_cats)
        out["category_entropy_mean"] = float(entropy_bits(c).mean())
    return out


def compare(ref: Any, other: Any, cats: np.ndarray | None, n_cats: int,
            features: Features, seed: int) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    f_ref, f_other = item_freq(ref), item_freq(other)
    out = describe(other, cats, n_cats)
    out["js_item_popularity"] = js_divergence(f_ref, f_other)
    out["ks_item_frequency"] = float(ks_2samp(f_ref / ref.shape[0],
                                              f_other / other.shape[0]).statistic)
    out["ks_items_per_user"] = float(ks_2samp(user_counts(ref), user_counts(other)).statistic)
    if cats is not None:
        out["js_category_mix"] = js_divergence(np.bincount(cats[ref.indices], minlength=n_cats),
                                               np.bincount(cats[other.indices],
                                                           minlength=n_cats))
        ent_ref = entropy_bits(category_counts(ref, cats, n_cats))
        ent_other = entropy_bits(category_counts(other, cats, n_cats))
        out["ks_category_entropy"] = float(ks_2samp(ent_ref, ent_other).statistic)
    out.update(classifier_aucs(ref, other, features, seed))
    return out


def generate(fn: Any, counts: np.ndarray, seed: int, batch: int = 1024) -> tuple[Any, float]:
    """Rows of ``fn(counts_batch, generator)`` for all ``counts``, as a CSR; and the seconds."""
    import scipy.sparse as sp
    import torch

    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    parts = []
    with torch.no_grad():
        for s in range(0, len(counts), batch):
            x = fn(counts[s : s + batch], g)
            parts.append(sp.csr_matrix(x.cpu().numpy().astype(np.float32)))
    return sp.vstack(parts).tocsr(), time.perf_counter() - t0


def synthetic_runs(ctx: Context, data_name: str) -> dict[str, Any]:
    """The trained samplers of the small part on ``data_name`` (trained now when missing)."""
    from streamrec.run import load_run

    data = small_data(data_name, ctx)
    runs = {}
    for name in SAMPLERS:
        path = ctx.work / data_name / "runs" / name
        if not (path / "results.json").is_file():
            row = run_model(name, data, overrides_for(name, [], ctx), ctx, None, path)
            if "error" in row:
                print(f"   no {name} to sample from", flush=True)
                continue
        runs[name] = load_run(path)
    return runs


def plot_synthetic(ref: Any, sets: dict[str, Any], cats: np.ndarray | None,
                   cat_names: list[str] | None, n_cats: int, title: str,
                   paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 3 if cats is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.4))
    everything = {"real (reference)": ref, **sets}
    styles = {"real (reference)": dict(color="black", lw=2.2)}
    for i, (name, rows) in enumerate(everything.items()):
        style = styles.get(name, dict(color=f"C{i}", lw=1.3))
        f = np.sort(item_freq(rows) / rows.shape[0])[::-1]
        f = f[f > 0]
        axes[0].loglog(np.arange(1, len(f) + 1), f, label=name, **style)
        n = np.sort(user_counts(rows))
        axes[1].plot(n, np.arange(1, len(n) + 1) / len(n), label=name, **style)
    axes[0].set_xlabel("item rank (by its own popularity)")
    axes[0].set_ylabel("share of users holding the item")
    axes[0].set_title("item popularity")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("items per user")
    axes[1].set_ylabel("share of users (CDF)")
    axes[1].set_title("interactions per user")
    axes[0].legend(fontsize=7)
    if cats is not None:
        shares = {name: np.bincount(cats[rows.indices], minlength=n_cats) / max(1, rows.nnz)
                  for name, rows in everything.items()}
        top = np.argsort(shares["real (reference)"])[::-1][:10]
        width = 0.8 / len(shares)
        for i, (name, share) in enumerate(shares.items()):
            axes[2].bar(np.arange(len(top)) + i * width, share[top], width,
                        color="black" if i == 0 else f"C{i}", label=name)
        labels = [cat_names[c] if cat_names and c < len(cat_names) else str(c) for c in top]
        axes[2].set_xticks(np.arange(len(top)) + 0.4 - width / 2, labels, rotation=45,
                           ha="right", fontsize=8)
        axes[2].set_ylabel("share of interactions")
        axes[2].set_title("category mix (10 largest)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)


def synthetic_table(block: dict[str, Any]) -> str:
    ref = block["reference"]
    has_cat = "category_entropy_mean" in ref
    head = ("| set | users | items / user (median) | KS items / user | JS item popularity "
            "| KS item frequency | coverage | Gini |")
    sep = "|---|---|---|---|---|---|---|---|"
    if has_cat:
        head += " JS category mix | category entropy (bits) | KS category entropy |"
        sep += "---|---|---|"
    head += " AUC rows (logreg) | AUC summaries (GBDT) | seconds |"
    sep += "---|---|---|"
    lines = [head, sep]
    cells = (f"| real: reference | {ref['users']:,} | {ref['items_per_user_mean']:.1f} "
             f"({ref['items_per_user_median']:.0f}) | - | - | - | {ref['coverage']:.3f} "
             f"| {ref['gini']:.3f} |")
    if has_cat:
        cells += f" - | {ref['category_entropy_mean']:.2f} | - |"
    lines.append(cells + " - | - | - |")
    for name, s in block["sets"].items():
        cells = (f"| {name} | {s['users']:,} | {s['items_per_user_mean']:.1f} "
                 f"({s['items_per_user_median']:.0f}) | {s['ks_items_per_user']:.3f} "
                 f"| {s['js_item_popularity']:.4f} | {s['ks_item_frequency']:.3f} "
                 f"| {s['coverage']:.3f} | {s['gini']:.3f} |")
        if has_cat:
            cells += (f" {s['js_category_mix']:.4f} | {s['category_entropy_mean']:.2f} "
                      f"| {s['ks_category_entropy']:.3f} |")
        cells += (f" {s['auc_rows_logreg']:.3f} | {s['auc_summaries_gbdt']:.3f} "
                  f"| {_num(s.get('seconds'), '.1f')} |")
        lines.append(cells)
    return "\n".join(lines)


def part_synthetic(args: argparse.Namespace, ctx: Context) -> None:
    import torch

    from streamrec.models.multvae import draw_without_replacement

    data_name = "tiny" if ctx.quick else (args.synthetic_data or "m0")
    runs = synthetic_runs(ctx, data_name)
    if not runs:
        raise SystemExit("no trained sampler to draw from")
    first = next(iter(runs.values()))
    ds, split = first.dataset, first.split
    x = split.train(ds).csr().astype(np.float32)
    x.data[:] = 1.0
    cats = ds.items.get("category")
    cats = np.asarray(cats, dtype=np.int64) if cats is not None and np.ndim(cats) == 1 else None
    n_cats = int(cats.max()) + 1 if cats is not None else 0
    cat_names = ds.meta.get("categories") if cats is not None else None
    rng = np.random.default_rng(ctx.seed)
    active = np.flatnonzero(user_counts(x) > 0)
    ref_idx, control_idx, basis_idx = np.array_split(rng.permutation(active), 3)
    ref, control, basis = x[np.sort(ref_idx)], x[np.sort(control_idx)], x[np.sort(basis_idx)]
    n = control.shape[0]
    counts = rng.choice(user_counts(x)[active], size=n).astype(np.int64)
    pop_logits = torch.log(torch.as_tensor(item_freq(x), dtype=torch.float32))

    sets: dict[str, Any] = {"real: held-out users (control)": (control, 0.0)}
    sets["popularity sampler (null model)"] = generate(
        lambda c, g: draw_without_replacement(pop_logits.expand(len(c), -1), c, g),
        counts, ctx.seed)
    noise = ctx.diffrec_noise
    if "mult-vae" in runs:
        vae = runs["mult-vae"].model.eval()
        sets["mult-vae: z ~ N(0, I), real counts"] = generate(
            lambda c, g: vae.sample(c, g), counts, ctx.seed)
    if "diffrec" in runs:
        diff = runs["diffrec"].model.eval()
        sets[f"diffrec: x_T ~ N(0, {noise:g}² I), Bernoulli draw"] = generate(
            lambda c, g: diff.sample(len(c), draw="bernoulli", noise_std=noise, generator=g),
            counts, ctx.seed)
        sets[f"diffrec: x_T ~ N(0, {noise:g}² I), weighted draw, real counts"] = generate(
            lambda c, g: diff.sample(len(c), c, draw="weighted", noise_std=noise, generator=g),
            counts, ctx.seed)
    if "l-diffrec" in runs:
        ldiff = runs["l-diffrec"].model.eval()
        sets["l-diffrec: z_T ~ N(0, I), real counts"] = generate(
            lambda c, g: ldiff.sample(c, g), counts, ctx.seed)

    features = Features(basis, cats, n_cats, ctx.seed)
    results: dict[str, Any] = {}
    for name, (rows, seconds) in sets.items():
        print(f"== comparing {name}", flush=True)
        results[name] = {**compare(ref, rows, cats, n_cats, features, ctx.seed),
                         "seconds": seconds}
    block = {"reference": describe(ref, cats, n_cats), "sets": results,
             "runs": {k: {"path": str(r.path), "test": r.results.get("test", {}).get("metrics"),
                          "model_config": r.config["model_config"]} for k, r in runs.items()}}
    name_out = f"generative_synthetic{ctx.suffix}"
    png = common.RESULTS / f"{name_out}.png"
    paths = [png] + ([DOCS / "generative_synthetic.png"] if ctx.docs and not ctx.quick else [])
    plot_synthetic(ref, {k: v[0] for k, v in sets.items()}, cats, cat_names, n_cats,
                   f"{ds.name}: real users against synthetic ones", paths)
    protocol = {
        "data": f"{ds.name} ({ds.n_users:,} users, {ds.n_items:,} items): the users' training "
                "rows (binary, distinct items)",
        "split": f"{split.method}; the models trained on its training part (small part's runs)",
        "real users": f"{len(active):,} with a training row, split at random (seed "
                      f"{ctx.seed}) in three: reference {ref.shape[0]:,}, control {n:,}, "
                      f"classifier basis {basis.shape[0]:,}",
        "synthetic users": f"{n:,} per set; 'real counts' = each a count drawn from the real "
                           "users' counts (Mult-VAE and L-DiffRec do not model it); "
                           "Bernoulli: the model's own counts",
        "statistics": "against the reference: JS divergence (base 2) of item shares and of "
                      "category shares; KS statistics of per-item frequencies, items per user "
                      "and per-user category entropy; coverage = share of items drawn at "
                      "least once; Gini of item frequencies",
        "classifiers": "held-out ROC AUC (30 %, stratified) at telling the set from the "
                       "reference: logistic regression on the binary rows; gradient boosting "
                       "on [log count, mean / std of log item popularity, coherence (mean "
                       "pairwise cosine in a 32-factor SVD of the basis users), category "
                       "entropy, top-category share]; 0.5 = indistinguishable",
        "K": "-",
    }
    table = (synthetic_table(block) + f"\n\n![real against synthetic users]({png.name})\n\n"
             "Protocol:\n\n" + protocol_text(protocol) + "\n\n" + machine_line())
    write_result(name_out, {"protocol": protocol, "results": block, "plot": png.name}, table,
                 history="no held-out ranking evaluation (generated users compared with real "
                         "ones)")


# ============================================================================ main
def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_worker":
        worker(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("gowalla", "small", "synthetic", "all"))
    ap.add_argument("--quick", action="store_true",
                    help="every part on the tiny world, 2 epochs, into a temporary directory")
    ap.add_argument("--keep", action="store_true", help="with --quick: keep its directory")
    ap.add_argument("--rerender", action="store_true",
                    help="gowalla: write the table again from the saved results, running nothing")
    ap.add_argument("--models", help="comma-separated models (default: the part's); gowalla: "
                                     "the saved rows of the other models are kept")
    ap.add_argument("--data", help="small part: comma-separated, from ml100k,m0")
    ap.add_argument("--synthetic-data", help="synthetic part: ml100k or m0 (default m0)")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="MODEL:key=value (one model) or key=value (every trainable model)")
    ap.add_argument("--device", default=None, help="training device, e.g. cuda")
    ap.add_argument("--gowalla-valid", choices=("holdout", "none"), default="holdout")
    ap.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    ap.add_argument("--peer-epochs", type=int, default=100,
                    help="RecBole's epoch cap (its own default is 300; early stopping with "
                         "patience 10 usually ends sooner)")
    ap.add_argument("--diffrec-noise", type=float, default=1.0,
                    help="synthetic part: standard deviation of DiffRec's starting noise")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    quick_dir = Path(tempfile.mkdtemp(prefix="generative-quick-")) if args.quick else None
    tmp = Path(tempfile.mkdtemp(prefix="generative-", dir=quick_dir))
    if quick_dir is not None:
        common.RESULTS = quick_dir / "results"
    ctx = Context(
        quick=args.quick,
        work=quick_dir / "work" if quick_dir else WORK,
        tmp=tmp,
        suffix="_quick" if args.quick else "",
        # quick: one torch thread a child (tiny models spin-wait with two)
        extra=([f"device={args.device}"] if args.device else [])
        + (["threads=1"] if args.quick else []),
        sets=args.sets,
        peer_python=args.peer_python,
        peer_epochs=2 if args.quick else args.peer_epochs,
        gowalla_valid=args.gowalla_valid,
        seed=args.seed,
        diffrec_noise=args.diffrec_noise,
    )
    ctx.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        parts = ("gowalla", "small", "synthetic") if args.part == "all" else (args.part,)
        for part in parts:
            print(f"######## {part}{' (quick)' if args.quick else ''}", flush=True)
            {"gowalla": part_gowalla, "small": part_small,
             "synthetic": part_synthetic}[part](args, ctx)
    finally:
        if quick_dir is not None and not args.keep:
            shutil.rmtree(quick_dir, ignore_errors=True)
        elif quick_dir is not None:
            print(f"quick results kept in {quick_dir}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
