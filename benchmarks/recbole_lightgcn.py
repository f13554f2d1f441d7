"""Side by side: RecBole 1.2.1's LightGCN and StreamRec's ``lightgcn`` on Gowalla.

Protocol: the Gowalla LightGCN split (``../shared/data/gowalla``: 29,858 users, 40,981 items,
810,128 train / 217,242 test interactions), the same number of epochs for every row, no
validation, the final model tested; full ranking over all items with training items masked;
Recall@20 / NDCG@20 as in the LightGCN paper (both systems use the same definitions). Wall
time on the shared 2-core CPU.

Rows:

* RecBole 1.2.1 LightGCN, run by ``../shared/peers/recbole_peer.py`` in its own virtualenv
  (``/work/main/.peer-venv``, see ``../shared/peers/README.md``) with the paper's settings
  (embedding 64, 3 layers, batch 2,048, Adam lr 1e-3, ``reg_weight=1e-4, require_pow=True``);
* StreamRec ``lightgcn`` with the same paper recipe (``loss=bpr n_negatives=1 similarity=dot
  l2=1e-4 user_balance=false init=normal item_bias=false``, batch 2,048, lr 1e-3): the same
  algorithm, so this row compares implementations;
* StreamRec ``lightgcn`` with its defaults (the CPU recipe), for the same number of epochs.

RecBole's LightGCN costs about 185 s per epoch here (3 min x 1,000 epochs = 51 h for the
paper's schedule), so the shared epoch count is small (``--epochs``, default 2); the full
default StreamRec run is in ``gowalla_graph.json``.

    python benchmarks/recbole_lightgcn.py [--epochs 2] [--peer-python .peer-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from gowalla_graph import SRC, gowalla

from streamrec.data.splits import split_from_spec
from streamrec.eval.evaluator import evaluate_ranking
from streamrec.models import get_model_class
from streamrec.train import Trainer
from streamrec.train.config import build_configs

from common import RESULTS, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER = ROOT.parent / "shared" / "peers" / "recbole_peer.py"
PAPER_RECIPE = ["loss=bpr", "n_negatives=1", "similarity=dot", "temperature=1", "l2=1e-4",
                "user_balance=false", "init=normal", "item_bias=false",
                "batch_size=2048", "lr=1e-3"]
#: RecBole's figures measured by the peers README (2 epochs, same settings).
README_RECBOLE = {"epochs": 2, "seconds_per_epoch": 185.0, "recall@20": 0.0922,
                  "ndcg@20": 0.0794, "extrapolated_1000_epochs_hours": 51.4}


def run_recbole(peer_python: Path, epochs: int, threads: int | None) -> dict[str, Any]:
    cmd = [str(peer_python), str(PEER), "--model", "LightGCN", "--from-lightgcn", str(SRC),
           "--epochs", str(epochs), "--embedding-size", "64", "--n-layers", "3",
           "--batch-size", "2048", "--lr", "0.001", "--set", "reg_weight=1e-4",
           "--set", "require_pow=True", "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"recbole_peer.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = time.perf_counter() - t0
    return out


def run_ours(overrides: list[str], epochs: int) -> dict[str, Any]:
    from rich.console import Console

    ds = gowalla()
    split = split_from_spec(ds, {"method": "given"})
    train = split.train(ds)
    model_cfg, train_cfg, _ = build_configs("lightgcn", None, [*overrides, f"epochs={epochs}"])
    train_cfg.progress = False
    torch.manual_seed(train_cfg.seed)
    model = get_model_class("lightgcn")(model_cfg, train)
    result = Trainer(model, train, train_cfg, None, console=Console()).fit()
    model.eval()
    # the history RecBole's general models read at test time (the split has no validation
    # part, so it is the training history either way; docs/evaluation.md)
    res = evaluate_ranking(model, ds, split, "test", (10, 20), test_history="train")
    return {
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "epochs_run": result.epochs_run,
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / result.epochs_run,
        "metrics": res["metrics"],
        "test_seconds": res["seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--peer-python", type=Path, default=ROOT / ".peer-venv" / "bin" / "python")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reuse-peer", action="store_true",
                    help="reuse results/recbole_lightgcn_peer_<epochs>ep.json if present")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: recbole,paper,"
                                               "default")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rows: dict[str, dict[str, Any]] = {}
    peer_json = RESULTS / f"recbole_lightgcn_peer_{args.epochs}ep.json"
    if "recbole" not in skip:
        if args.reuse_peer and peer_json.is_file():
            rows["recbole"] = json.loads(peer_json.read_text())
        elif args.peer_python.is_file():
            print("== RecBole LightGCN", flush=True)
            rows["recbole"] = run_recbole(args.peer_python, args.epochs, args.threads)
            RESULTS.mkdir(parents=True, exist_ok=True)
            peer_json.write_text(json.dumps(rows["recbole"], indent=2))
        else:
            print(f"no peer venv at {args.peer_python}: RecBole row from the peers README only")
    if "paper" not in skip:
        print("== streamrec lightgcn, paper recipe", flush=True)
        rows["paper"] = run_ours(PAPER_RECIPE, args.epochs)
    if "default" not in skip:
        print("== streamrec lightgcn, defaults", flush=True)
        rows["default"] = run_ours([], args.epochs)
    full = RESULTS / "gowalla_graph.json"
    full_default = None
    if full.is_file():
        full_default = json.loads(full.read_text())["results"].get("lightgcn")

    lines = [
        "| system | recipe | epochs | s / epoch | train s | Recall@20 | NDCG@20 |",
        "|---|---|---|---|---|---|---|",
    ]
    if "recbole" in rows:
        r = rows["recbole"]
        lines.append(f"| RecBole 1.2.1 LightGCN | paper: BPR, batch 2048, lr 1e-3 | "
                     f"{r['epochs_run']} | {r['seconds_per_epoch']:.1f} | {r['train_seconds']:.0f} "
                     f"| {r['metrics']['recall@20']:.4f} | {r['metrics']['ndcg@20']:.4f} |")
    rb = README_RECBOLE
    lines.append(f"| RecBole 1.2.1 LightGCN (peers README) | paper: BPR, batch 2048, lr 1e-3 | "
                 f"{rb['epochs']} | {rb['seconds_per_epoch']:.1f} | "
                 f"{rb['epochs'] * rb['seconds_per_epoch']:.0f} | {rb['recall@20']:.4f} | "
                 f"{rb['ndcg@20']:.4f} |")
    for key, recipe in (("paper", "paper: BPR, batch 2048, lr 1e-3"), ("default", "defaults")):
        if key in rows:
            r = rows[key]
            tc = r["train_config"]
            mc = r["model_config"]
            if key == "default":
                recipe = (f"defaults: {mc['loss']}, {mc['n_negatives'] or 'all'} negatives, "
                          f"batch {tc['batch_size']}, lr {tc['lr']:g}")
            lines.append(f"| StreamRec lightgcn | {recipe} | {r['epochs_run']} | "
                         f"{r['seconds_per_epoch']:.1f} | {r['train_seconds']:.0f} | "
                         f"{r['metrics']['recall@20']:.4f} | {r['metrics']['ndcg@20']:.4f} |")
    if full_default:
        lines.append(f"| StreamRec lightgcn (gowalla_graph.json) | defaults, full run | "
                     f"{full_default['epochs']} | "
                     f"{full_default['train_seconds'] / full_default['epochs']:.1f} | "
                     f"{full_default['train_seconds']:.0f} | "
                     f"{full_default['test']['recall@20']:.4f} | "
                     f"{full_default['test']['ndcg@20']:.4f} |")
    lines.append("| LightGCN paper (Table 4) | BPR, 1000 epochs | 1000 | - | - | 0.1830 | 0.1554 |")
    protocol = {
        "dataset": "Gowalla, LightGCN split; same files for both systems",
        "epochs": args.epochs,
        "selection": "none: final model tested (RecBole --eval-step 0 via --from-lightgcn)",
        "candidates": "full ranking over all items, training items masked",
        "metrics": "Recall@20 (denominator: all test items of the user), NDCG@20",
        "history": "StreamRec's side reads the training history at test (--test-history "
                   "train), as RecBole's LightGCN (built on the training split's graph); no "
                   "validation part here, so the same as train+valid",
        "time": "wall clock on the shared 2-core CPU; RecBole train_seconds excludes data "
                "loading and testing, like ours",
    }
    write_result("recbole_lightgcn", {"protocol": protocol, "rows": rows,
                                      "recbole_readme": README_RECBOLE,
                                      "streamrec_full_default": full_default},
                 "\n".join(lines), history="recbole")


if __name__ == "__main__":
    main()
