"""Benchmark: data-parallel training on 1 and 2 processes and full-ranking evaluation of every
user, on the ``platform`` world (1M users, 200k items, ~40M interactions).

Protocol. For each model (MF, two-tower, transformer) and each process count (1, 2), a fresh
``torch.distributed.run`` launch (gloo, CPU, ``--threads`` torch threads per process) builds the
model on the training part of the default split and runs the shared training loop
(``Trainer``; DDP when there are 2 processes) for ``--steps`` optimizer steps of the global
batch ``--batch-size``: the time per step is measured after ``--warmup`` steps, the epoch time
is that times the loop's steps per epoch, and every rank reports its peak resident memory
(``ru_maxrss``). Scaling efficiency = time per step on 1 process / time per step on N. Then MF
(trained for those steps) ranks the whole catalogue for every user of the test part (full
ranking, training + validation items masked, ``--eval-batch`` users per batch: memory is bounded
by ``eval_batch x n_items`` scores), on 1 process and sharded over 2.

    python benchmarks/distributed_platform.py --data benchmarks/work/platform   # full run
    python benchmarks/distributed_platform.py --quick                          # tiny world

The platform world is made once with ``streamrec world --preset platform --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: model options for the platform scale (sampled softmax for the transformer: a full softmax
#: over 200k items per position does not fit; id features only for the two-tower)
MODELS: dict[str, list[str]] = {
    "mf": ["dim=64"],
    "two-tower": ["text_encoder=none", "dim=64", "id_dim=64"],
    "transformer": ["d_model=64", "max_len=50", "loss=sampled", "n_negatives=1024",
                    "proposal=uniform"],
}
QUICK_MODELS: dict[str, list[str]] = {
    "mf": ["dim=8"],
    "two-tower": ["text_encoder=none", "dim=8", "id_dim=8"],
    "transformer": ["d_model=8", "n_heads=2", "max_len=10", "loss=sampled", "n_negatives=16",
                    "proposal=uniform"],
}


class _Steps(Exception):
    """Raised by :class:`_Clock` after the last measured step (ends the loop early)."""


def worker(args: argparse.Namespace) -> None:
    """One rank: train ``args.model`` for ``args.steps`` steps, optionally evaluate, and write
    this rank's measurements to ``args.result``.rank<r>.json."""
    import torch

    from streamrec.data.dataset import load_dataset
    from streamrec.data.splits import default_split_spec, split_from_spec
    from streamrec.eval.evaluator import evaluate_model
    from streamrec.models import get_model_class
    from streamrec.train import Callback, Trainer
    from streamrec.train.config import build_configs
    from streamrec.train.distributed import init_from_env, shutdown

    torch.set_num_threads(args.threads)
    dist = init_from_env("cpu") if "RANK" in os.environ else None
    rank = dist.rank if dist is not None else 0
    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    split = split_from_spec(ds, default_split_spec(ds))
    train = split.train(ds)
    load_s = time.perf_counter() - t0
    opts = [*json.loads(args.options), f"batch_size={args.batch_size}", "epochs=1",
            "progress=false", f"threads={args.threads}"]
    model_cfg, train_cfg, _ = build_configs(args.model, None, opts)
    torch.manual_seed(0)
    model = get_model_class(args.model)(model_cfg, train)

    class _Clock(Callback):
        def __init__(self) -> None:
            self.marks: dict[int, float] = {}

        def on_batch_end(self, trainer: Any, step: int, loss: torch.Tensor) -> None:
            if step + 1 in (args.warmup, args.steps):
                self.marks[step + 1] = time.perf_counter()
            if step + 1 >= args.steps:
                raise _Steps

    clock = _Clock()
    trainer = Trainer(model, train, train_cfg, None, callbacks=[clock], dist=dist)
    t1 = time.perf_counter()
    try:
        trainer.fit()
    except _Steps:
        pass
    first_s = clock.marks[args.warmup] - t1
    step_s = (clock.marks[args.steps] - clock.marks[args.warmup]) / (args.steps - args.warmup)
    out: dict[str, Any] = {
        "rank": rank, "load_seconds": load_s, "first_steps_seconds": first_s,
        "warmup": args.warmup, "steps": args.steps, "step_seconds": step_s,
        "steps_per_epoch": trainer.steps_per_epoch,
        "epoch_seconds": step_s * trainer.steps_per_epoch,
        "train_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "users": ds.n_users, "items": ds.n_items, "interactions": ds.n_interactions,
    }
    if args.evaluate:
        model.eval()
        t2 = time.perf_counter()
        res = evaluate_model(model, ds, split, "test", (20,), batch_size=args.eval_batch,
                             dist=dist)
        out.update(eval_seconds=time.perf_counter() - t2, eval_metrics=res["metrics"],
                   eval_users=res["protocol"]["users_evaluated"],
                   eval_peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
    Path(f"{args.result}.rank{rank}.json").write_text(json.dumps(out))
    shutdown()


def launch(args: argparse.Namespace, model: str, options: list[str], nproc: int,
           evaluate: bool, result: Path) -> list[dict[str, Any]]:
    """Run :func:`worker` on ``nproc`` processes through torchrun; the ranks' measurements."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", __file__, "--worker", "--model", model,
           "--options", json.dumps(options), "--data", str(args.data),
           "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--eval-batch", str(args.eval_batch), "--result", str(result)]
    cmd += ["--evaluate"] if evaluate else []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, timeout=args.timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return [{"error": f"timed out after {args.timeout:.0f} s"}]
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        killed = "SIGKILL" in proc.stderr or "Signals.SIGKILL" in proc.stderr
        return [{"error": ("killed (out of memory: every rank holds the whole data set)"
                           if killed else f"exit {proc.returncode}: {tail[-300:]}")}]
    ranks = [json.loads(Path(f"{result}.rank{r}.json").read_text()) for r in range(nproc)]
    for r in ranks:
        r["launch_seconds"] = time.perf_counter() - t0
    return ranks


def _key(row: dict[str, Any]) -> tuple[str, int, bool]:
    return row["model"], row["nproc"], "eval_seconds" in row


def merged(name: str, rows: list[dict[str, Any]], models: dict[str, list[str]],
           ) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """``rows`` and the rows of the earlier ``results/NAME.json`` not measured again (same
    model, process count and evaluation or not), in model order; the models' options of both."""
    from common import RESULTS

    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return rows, models
    old = json.loads(path.read_text())
    new_keys = {_key(r) for r in rows}
    kept = [r for r in old["rows"] if _key(r) not in new_keys]
    order = list(MODELS)
    every = sorted(kept + rows, key=lambda r: (order.index(r["model"]), "eval_seconds" in r,
                                               r["nproc"]))
    base = {r["model"]: r["step_seconds"] for r in every
            if r["nproc"] == 1 and "error" not in r and "eval_seconds" not in r}
    for r in every:  # efficiency against the 1-process row, whichever run measured it
        if r["nproc"] > 1 and "error" not in r and r["model"] in base:
            r["speedup"] = base[r["model"]] / r["step_seconds"]
            r["scaling_efficiency"] = r["speedup"] / r["nproc"]
    return every, {**old["protocol"].get("models", {}), **models}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="the platform world's directory")
    p.add_argument("--quick", action="store_true", help="tiny world, few steps (a check)")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--nprocs", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batch-size", type=int, default=8192, help="global batch")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--eval-batch", type=int, default=1024)
    p.add_argument("--no-eval", action="store_true", help="skip the full-ranking evaluation")
    p.add_argument("--eval-nprocs", nargs="+", type=int, default=None,
                   help="the process counts whose launch runs the evaluation (default: all)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per launch")
    p.add_argument("--name", default=None, help="results/NAME.json (default by mode)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of results/NAME.json that this run does not measure "
                        "again (same model, process count and with / without evaluation): "
                        "the table can be measured in pieces")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--options", help=argparse.SUPPRESS)
    p.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if args.steps <= args.warmup or args.warmup < 1:
        sys.exit("error: --steps must exceed --warmup, and --warmup be at least 1")
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        sys.exit(f"error: unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    tmp = Path(tempfile.mkdtemp(prefix="distributed-platform-"))
    options = QUICK_MODELS if args.quick else MODELS
    if args.quick:
        from streamrec.data.world import make_world

        args.data = make_world("tiny", seed=0).save(tmp / "tiny")
        args.batch_size, args.steps, args.warmup = min(args.batch_size, 64), 6, 2
        args.eval_batch = min(args.eval_batch, 64)
    elif args.data is None or not Path(args.data).is_dir():
        sys.exit("error: --data must be the platform world's directory (make it with "
                 "`streamrec world --preset platform --out DIR`), or use --quick")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import write_result

    rows: list[dict[str, Any]] = []
    for model in args.models:
        base = None
        for n in args.nprocs:
            evaluate = (model == "mf" and not args.no_eval
                        and (args.eval_nprocs is None or n in args.eval_nprocs))
            print(f"[{model} x{n}] ...", flush=True)
            ranks = launch(args, model, options[model], n, evaluate, tmp / f"{model}-{n}")
            if "error" in ranks[0]:
                print(f"[{model} x{n}] failed: {ranks[0]['error']}", flush=True)
                rows.append({"model": model, "nproc": n, "error": ranks[0]["error"]})
                continue
            step = max(r["step_seconds"] for r in ranks)
            base = step if n == 1 else base
            row = {"model": model, "nproc": n, "step_seconds": step,
                   "epoch_seconds": step * ranks[0]["steps_per_epoch"],
                   "steps_per_epoch": ranks[0]["steps_per_epoch"],
                   "examples_per_second": args.batch_size / step,
                   "scaling_efficiency": (base / step) if base else None,
                   "speedup": (base / step) if base else None,
                   "peak_rss_gb_per_process": [round(r["train_peak_rss_gb"], 2) for r in ranks],
                   "ranks": ranks}
            if evaluate:
                row["eval_seconds"] = max(r["eval_seconds"] for r in ranks)
                row["eval_users"] = ranks[0]["eval_users"]
                row["eval_peak_rss_gb_per_process"] = [round(r["eval_peak_rss_gb"], 2)
                                                       for r in ranks]
                row["eval_metrics"] = ranks[0]["eval_metrics"]
            rows.append(row)
            print(f"[{model} x{n}] {step * 1000:.1f} ms/step", flush=True)
    for r in rows:
        if r["nproc"] > 1 and r.get("scaling_efficiency") is not None:
            r["scaling_efficiency"] = r["scaling_efficiency"] / r["nproc"]
    name = args.name or ("distributed_platform_quick" if args.quick else "distributed_platform")
    models = {m: options[m] for m in args.models}
    if args.merge:
        rows, models = merged(name, rows, models)
    lines = ["| model | processes | ms / step | epoch (s, est.) | scaling efficiency | "
             "peak RSS / process (GB) | full-ranking eval (s) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['nproc']} | failed: {r['error']} | | | | |")
            continue
        eff = ("-" if r["nproc"] == 1 or r["scaling_efficiency"] is None
               else f"{r['scaling_efficiency']:.2f}")
        ev = f"{r['eval_seconds']:.0f} ({r['eval_users']} users)" if "eval_seconds" in r else "-"
        lines.append(f"| {r['model']} | {r['nproc']} | {r['step_seconds'] * 1000:.1f} | "
                     f"{r['epoch_seconds']:.1f} | {eff} | "
                     f"{', '.join(str(x) for x in r['peak_rss_gb_per_process'])} | {ev} |")
    write_result(name, {
        "protocol": {"data": str(args.data), "global_batch": args.batch_size,
                     "steps": args.steps, "warmup": args.warmup,
                     "threads_per_process": args.threads, "backend": "gloo (CPU)",
                     "eval": f"full ranking of every test user, {args.eval_batch} users/batch",
                     "models": models,
                     "scaling_efficiency": "t_step(1 process) / (N * t_step(N processes)), "
                                           "same global batch"},
        "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
