"""Benchmark M5: two-tower retrieval quality, cold start, and Amazon Scientific (issue 6).

Protocol
--------
* ``m5``: the synthetic ``m5`` world (seed 0; 50,000 users, 20,000 items, 498,712
  interactions, 15 categories). Leave-last-out per user by time (last event test, second-last
  validation). Full ranking over all 20,000 items; the user's train (+ validation for test)
  items are masked. Recall@100/@200/@500 and NDCG@100 on the test part. Models: ``pop``,
  ``mf`` (BPR), the id-only two-tower (``text_encoder=none``: item id + category, no text)
  and the two-tower with frozen MiniLM text (``text_encoder=minilm``). Every model selects its
  epoch on validation Recall@100 (early stopping); the test part is used once.
* ``cold``: the same world with the ``cold-items`` split (seed 0): 20% of the items with
  interactions never reach training, all their interactions are the test set; validation is a
  random 10% of the warm interactions. Recall@100 on cold items = the test part, ranked among
  **all** items (full catalogue) and among the cold items only; Recall@100 on warm items = the
  validation part (full catalogue; also used for early stopping, so it is slightly optimistic).
  Models: two-tower with MiniLM, with the CNN (trained with the towers) and id-only.
* ``sci``: Amazon 2018 Industrial & Scientific (UniSRec files, the given split: the last item
  of each user is test, the second last validation). Recall@20 / NDCG@20, full ranking over
  all items, train + validation items masked. Models: pop, mf, two-tower id-only and MiniLM.

Training: one torch thread, Adam, batch 1,024 (two-tower), the settings in ``SETTINGS``.
MiniLM vectors are computed once per catalogue and cached in ``benchmarks/work/two_tower/``.

    OMP_NUM_THREADS=1 python benchmarks/two_tower.py run --part m5     # m5 | cold | sci
    python benchmarks/two_tower.py report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "two_tower"
DATA = ROOT.parent.parent / "shared" / "data"
CACHE = str(WORK / "minilm-cache")
TT_COMMON = ["train.threads=1", "train.batch_size=1024", "train.lr=1e-3", f"text_cache_dir={CACHE}"]
SMALL_CNN = ["cnn_filters=32", "cnn_token_dim=32", "cnn_max_len=48"]
PARTS: dict[str, dict[str, Any]] = {
    "m5": {
        "data": "m5",
        "split": "loo",
        "ks": (100, 200, 500),
        "valid_metric": "recall@100",
        "models": {
            "pop": ("pop", []),
            "mf": ("mf", ["train.epochs=40", "train.patience=3"]),
            "two-tower id-only": (
                "two-tower",
                [*TT_COMMON, "text_encoder=none", "train.epochs=8", "train.patience=2"],
            ),
            "two-tower MiniLM": (
                "two-tower",
                [*TT_COMMON, "text_encoder=minilm", "train.epochs=8", "train.patience=2"],
            ),
        },
    },
    "cold": {
        "data": "m5",
        "split": "cold-items",
        "ks": (100,),
        "valid_metric": "recall@100",
        "models": {
            "two-tower id-only": (
                "two-tower",
                [*TT_COMMON, "text_encoder=none", "train.epochs=4", "train.patience=2"],
            ),
            "two-tower MiniLM": (
                "two-tower",
                [*TT_COMMON, "text_encoder=minilm", "train.epochs=4", "train.patience=2"],
            ),
            "two-tower CNN": (
                "two-tower",
                [*TT_COMMON, *SMALL_CNN, "text_encoder=cnn", "train.epochs=3", "train.patience=2"],
            ),
            "two-tower MiniLM id_dropout=0.5": (
                "two-tower",
                [*TT_COMMON, "text_encoder=minilm", "id_dropout=0.5", "train.epochs=4",
                 "train.patience=2"],
            ),
        },
    },
    "sci": {
        "data": "sci",
        "split": "given",
        "ks": (20,),
        "valid_metric": "ndcg@20",
        "models": {
            "pop": ("pop", []),
            "mf": ("mf", ["train.lr=5e-3", "train.batch_size=1024", "train.epochs=30"]),
            "two-tower id-only": (
                "two-tower",
                [*TT_COMMON, "text_encoder=none", "train.epochs=40", "train.patience=5"],
            ),
            "two-tower MiniLM": (
                "two-tower",
                [*TT_COMMON, "text_encoder=minilm", "train.epochs=40", "train.patience=5"],
            ),
        },
    },
}


def prepare(name: str) -> Path:
    out = WORK / name
    if (out / "meta.json").is_file():
        return out
    from streamrec.data.importers import import_dataset
    from streamrec.data.world import generate_world

    if name == "m5":
        generate_world("m5", out, seed=0)
    elif name == "sci":
        import_dataset("unisrec", DATA / "amazon-scientific", out)
    return out


class OnlyItems:
    """A model wrapper that scores only the items in ``allowed`` (the rest get -inf)."""

    def __init__(self, model: Any, allowed: np.ndarray) -> None:
        import torch

        self.model, self.n_items, self.name = model, model.n_items, model.name
        mask = torch.full((model.n_items,), float("-inf"))
        mask[torch.as_tensor(allowed)] = 0.0
        self.mask = mask.to(model.device)

    @property
    def device(self) -> Any:
        return self.model.device

    def score(self, users: Any, history: Any) -> Any:
        return self.model.score(users, history) + self.mask


def run_part(part: str, only: list[str] | None) -> None:
    import torch
    from rich.console import Console

    from streamrec.eval.evaluator import evaluate_ranking
    from streamrec.run import train_run

    torch.set_num_threads(1)
    spec = PARTS[part]
    data = prepare(spec["data"])
    for label, (model, settings) in spec["models"].items():
        if only and label not in only:
            continue
        slug = label.replace(" ", "_").replace("=", "")
        out = WORK / "runs" / f"{part}-{slug}"
        if out.exists():
            shutil.rmtree(out)
        overrides = [
            *settings,
            f"split.method={spec['split']}",
            f"train.valid_metric={spec['valid_metric']}",
        ]
        load = os.getloadavg()
        t0 = time.perf_counter()
        run = train_run(
            model, data, out, overrides=overrides, ks=spec["ks"], progress=False,
            console=Console(stderr=True),
        )  # fmt: skip
        wall = time.perf_counter() - t0
        res = run.results
        row: dict[str, Any] = {
            "label": label,
            "model": model,
            "overrides": overrides,
            "model_config": run.config["model_config"],
            "test": res["test"]["metrics"],
            "valid": res["valid"]["metrics"],
            "protocol": res["test"]["protocol"],
            "train_seconds": res["train_seconds"],
            "wall_seconds": wall,
            "best_epoch": res["train"].get("best_epoch"),
            "epochs_run": res["train"].get("epochs_run"),
            "loadavg_start": load,
            "loadavg_end": os.getloadavg(),
        }
        if hasattr(run.model, "temperature"):
            row["temperature"] = run.model.temperature
        if part == "cold":
            cold = run.split.cold_items
            only_cold = evaluate_ranking(OnlyItems(run.model, cold), run.dataset, run.split,
                                         "test", (100,))  # fmt: skip
            row["test_cold_candidates"] = only_cold["metrics"]
            row["n_cold_items"] = int(len(cold))
        (WORK / f"result_{part}_{slug}.json").write_text(json.dumps(row, indent=2, default=str))
        shown = {k: round(v, 4) for k, v in row["test"].items() if k.split("@")[0] in
                 ("recall", "ndcg")}  # fmt: skip
        print(f"{part} {label}: test {shown} ({row['train_seconds']:.0f}s, load {load[0]:.1f})",
              flush=True)  # fmt: skip


def _rows(part: str) -> list[dict[str, Any]]:
    rows = []
    for label in PARTS[part]["models"]:
        f = WORK / f"result_{part}_{label.replace(' ', '_').replace('=', '')}.json"
        if f.is_file():
            rows.append(json.loads(f.read_text()))
    return rows


def report() -> None:
    payload: dict[str, Any] = {"protocol": __doc__.split("Protocol\n--------\n")[1].split(
        "\n    OMP")[0].strip()}  # fmt: skip
    lines = ["# Two-tower retrieval (M5)", ""]
    m5 = _rows("m5")
    if m5:
        payload["m5"] = m5
        lines += [
            "## m5 world (50k users, 20k items, 499k interactions): leave-last-out, "
            "full ranking over 20k items, test",
            "",
            "| model | Recall@100 | Recall@200 | Recall@500 | NDCG@100 | epochs (best) | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in m5:
            t = r["test"]
            lines.append(
                f"| {r['label']} | {t['recall@100']:.4f} | {t['recall@200']:.4f} | "
                f"{t['recall@500']:.4f} | {t['ndcg@100']:.4f} | "
                f"{r['epochs_run']} ({r['best_epoch']}) | {r['train_seconds']:.0f} |"
            )
        lines.append("")
    cold = _rows("cold")
    if cold:
        payload["cold"] = cold
        n_cold = cold[0].get("n_cold_items")
        lines += [
            f"## Cold start on m5 ({n_cold:,} of the items held out of training; retrieved "
            "from text + category alone)",
            "",
            "| model | cold Recall@100 (all items) | cold Recall@100 (cold items only) | "
            "warm Recall@100 (all items) | train s |",
            "|---|---|---|---|---|",
        ]
        for r in cold:
            lines.append(
                f"| {r['label']} | {r['test']['recall@100']:.4f} | "
                f"{r['test_cold_candidates']['recall@100']:.4f} | "
                f"{r['valid']['recall@100']:.4f} | {r['train_seconds']:.0f} |"
            )
        lines.append("")
    sci = _rows("sci")
    if sci:
        payload["sci"] = sci
        lines += [
            "## Amazon Scientific (given split), full ranking, test",
            "",
            "| model | Recall@20 | NDCG@20 | epochs (best) | train s |",
            "|---|---|---|---|---|",
        ]
        for r in sci:
            t = r["test"]
            lines.append(
                f"| {r['label']} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} | "
                f"{r['epochs_run']} ({r['best_epoch']}) | {r['train_seconds']:.0f} |"
            )
        lines.append("")
    lines.append("Protocol: see `benchmarks/two_tower.py` (and the JSON); one torch thread, "
                 "2-core CPU shared with other work.")  # fmt: skip
    write_result("two_tower", payload, "\n".join(lines), history="train+valid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--part", choices=sorted(PARTS), required=True)
    r.add_argument("--models", default=None, help="comma-separated labels (default: all)")
    sub.add_parser("report")
    args = ap.parse_args()
    if args.cmd == "run":
        run_part(args.part, args.models.split(",") if args.models else None)
    else:
        report()


if __name__ == "__main__":
    main()
