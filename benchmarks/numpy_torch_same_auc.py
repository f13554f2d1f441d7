"""Benchmark: the numpy and the torch MLP reach the same AUC from the same initialisation.

Protocol: the ``m0`` world (seed 0), impressions split at random 80/10/10 (seed 0), the 20
features standardised with training statistics. Architecture 20 -> 256 -> 128 -> 64 -> 1
(ReLU, He-normal init, float32). The numpy model (``mlp-numpy``) is built first; its weights
are copied into the torch model (``mlp``) with ``nn_numpy.to_torch``. Both train ``--epochs``
epochs with Adam(1e-3), batch 1024 and the *same* batches (both shuffle epoch ``e`` with
``numpy.random.default_rng([seed, e]).permutation``): numpy with its own loop, torch with the
shared training loop. Each keeps the epoch with the best validation AUC; test AUC compared.
Target: |AUC_numpy - AUC_torch| <= 0.003.

    python benchmarks/numpy_torch_same_auc.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from click_oracle_gap import m0_world
from rich.console import Console

from common import write_result


def main() -> None:
    from streamrec.data.dataset import load_dataset
    from streamrec.eval.clicks import evaluate_clicks
    from streamrec.models.click_mlp import MLP
    from streamrec.models.click_mlp_numpy import NumpyMLP
    from streamrec.nn_numpy import to_torch
    from streamrec.train import TrainConfig, Trainer
    from streamrec.train.config import build_configs

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--hidden", default="[256, 128, 64]")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = load_dataset(m0_world())
    # the recipe this comparison was made with: ReLU, He init, a constant lr of 1e-3
    common = [f"hidden={args.hidden}", "activation=relu", "init=he_normal"]
    np_cfg, _, _ = build_configs("mlp-numpy", overrides=common + [
        f"fit_epochs={args.epochs}", f"fit_batch_size={args.batch_size}", "fit_patience=0",
        "fit_lr=1e-3", "fit_schedule=constant", "fit_warmup_epochs=0"])
    t_cfg, _, _ = build_configs("mlp", overrides=common + ["diagnostics=false"])
    np_model = NumpyMLP(np_cfg, ds)
    t_model = MLP(t_cfg, ds)
    t_model.net.load_state_dict(to_torch(np_model.net).state_dict())
    init_diff = max(float((a - b).abs().max()) for a, b in zip(
        to_torch(np_model.net).state_dict().values(), t_model.net.state_dict().values()))

    t0 = time.perf_counter()
    np_model.fit(ds)
    np_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer = Trainer(
        t_model, ds, TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                                 seed=0, patience=0, valid_metric="auc", progress=False),
        validate=lambda m: evaluate_clicks(m, ds, "valid")["metrics"],
        console=Console(stderr=True),
    )
    result = trainer.fit()
    t_seconds = time.perf_counter() - t0

    np_test = evaluate_clicks(np_model, ds, "test")["metrics"]
    t_test = evaluate_clicks(t_model, ds, "test")["metrics"]
    np_valid = [h["valid_auc"] for h in np_model.history]
    t_valid = [h["valid"]["auc"] for h in result.history]
    diff = abs(np_test["auc"] - t_test["auc"])
    per_epoch = "".join(
        f"| {e} | {a:.4f} | {b:.4f} | {abs(a - b):.4f} |\n"
        for e, (a, b) in enumerate(zip(np_valid, t_valid)))
    table = (
        f"m0 impressions (random 80/10/10), MLP 20-{args.hidden.strip('[]').replace(', ', '-')}"
        f"-1, same init and batches, Adam 1e-3, batch {args.batch_size}, {args.epochs} epochs\n\n"
        "| | numpy | torch | abs diff | target |\n|---|---|---|---|---|\n"
        f"| test AUC (best valid epoch) | {np_test['auc']:.4f} | {t_test['auc']:.4f} | "
        f"{diff:.4f} | <= 0.003 |\n"
        f"| test log-loss | {np_test['logloss']:.4f} | {t_test['logloss']:.4f} | "
        f"{abs(np_test['logloss'] - t_test['logloss']):.4f} | |\n"
        f"| train seconds | {np_seconds:.0f} | {t_seconds:.0f} | | |\n\n"
        "| epoch | valid AUC numpy | valid AUC torch | abs diff |\n|---|---|---|---|\n"
        + per_epoch
    )
    write_result("numpy_torch_same_auc", {
        "protocol": {
            "data": "world m0 (seed 0), 20 impression features",
            "split": "impressions at random 80/10/10 (seed 0)",
            "architecture": args.hidden, "init": "he_normal (numpy), copied to torch",
            "optimizer": "adam 1e-3", "batch_size": args.batch_size, "epochs": args.epochs,
            "batches": "identical: default_rng([0, epoch]).permutation in both",
            "selection": "best validation AUC epoch",
            "target": "|test AUC numpy - torch| <= 0.003",
        },
        "max_initial_weight_difference": init_diff,
        "numpy": {"test": np_test, "valid_auc_per_epoch": np_valid, "seconds": np_seconds},
        "torch": {"test": t_test, "valid_auc_per_epoch": t_valid, "seconds": t_seconds},
        "test_auc_abs_diff": diff,
        "max_valid_auc_abs_diff": float(np.max(np.abs(np.subtract(np_valid, t_valid)))),
    }, table, history="click")


if __name__ == "__main__":
    main()
