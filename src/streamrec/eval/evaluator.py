"""Full-ranking evaluation: every item is a candidate, seen items are masked.

For each evaluated user the model scores **all** items; the items the user interacted with in
the history of that stage (training for ``valid``; training + validation for ``test``) are set
to ``-inf`` so they can never be recommended, and the top-K list is compared with the held-out
items of the stage. Users are processed in batches, so memory is bounded by
``batch_users x n_items`` scores whatever the number of users.

Sampled-negative evaluation (rank the held-out items among ``N`` random unseen items) is
available only on request (``sampled=N``) and is labelled as such in the protocol of every
result, because its numbers are not comparable with full ranking.

Two more choices of protocol are recorded in every result (``docs/evaluation.md``):

* ``test_history``: what the model **reads** as the users' history at the test stage,
  ``"train+valid"`` (the default) or ``"train"`` (the published protocol of most papers and
  of RecBole's general models); the masking stays train + validation either way.
* ``average``: ``"users-with-test"`` (the default: the mean over the users with held-out items
  of the stage) or ``"all-users"`` (the sum over them divided by every user of the dataset, or
  of ``users``, so that a user without held-out items counts as 0, as some published code
  does).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from streamrec.data.dataset import Dataset
from streamrec.data.splits import Split
from streamrec.eval.metrics import ALL_RANKING_METRICS, RankingAccumulator
from streamrec.models.base import CapabilityError, ClickModel

#: what a model reads as the users' history at the test stage (the first is the default)
TEST_HISTORIES = ("train+valid", "train")
#: over which users the metrics are averaged (the first is the default)
AVERAGES = ("users-with-test", "all-users")


def check_protocol(test_history: str, average: str) -> None:
    """Raise ``ValueError`` (one line, with the choices) for an unknown ``test_history`` or
    ``average``."""
    if test_history not in TEST_HISTORIES:
        raise ValueError(f"test history (--test-history) must be {' or '.join(TEST_HISTORIES)}, "
                         f"got {test_history!r}")
    if average not in AVERAGES:
        raise ValueError(f"average (--average) must be {' or '.join(AVERAGES)}, got {average!r}")


def protocol_note(result: dict[str, Any]) -> str:
    """One line that says how a result's figures were obtained, to print beside them: the
    evaluation kind, the history the model read, the masking and the users averaged over (the
    history and average appear only for ranking results)."""
    proto = result.get("protocol", {})
    parts = [str(result.get("evaluation", ""))]
    if "history" in proto:
        parts.append(f"history read: {proto['history']}; masked: {proto['masked']}")
    if "average" in proto:
        parts.append(f"averaged over {proto['users_averaged']:,} users ({proto['average']})")
    return "; ".join(p for p in parts if p)


def _mask_rows(scores: torch.Tensor, rows: sp.csr_matrix) -> None:
    """Set ``scores[i, j] = -inf`` for every stored (i, j) of ``rows`` ([B, n_items] CSR)."""
    if rows.nnz == 0:
        return
    r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    ri = torch.as_tensor(r, device=scores.device)
    ci = torch.as_tensor(rows.indices.astype(np.int64), device=scores.device)
    scores[ri, ci] = float("-inf")


def _sampled_candidates(
    n_rows: int,
    n_items: int,
    excluded: sp.csr_matrix,
    truth: sp.csr_matrix,
    n_negatives: int,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Bool [B, n_items]: each row's truth items plus ``n_negatives`` random unseen items."""
    keys = torch.rand(n_rows, n_items, generator=generator).to(device)
    forbidden = (excluded + truth).tocsr()
    _mask_rows(keys, forbidden)  # -inf, i.e. never among the largest keys
    n_neg = min(n_negatives, n_items)
    neg = torch.topk(keys, n_neg, dim=1).indices
    valid = torch.gather(keys, 1, neg) > float("-inf")
    cand = torch.zeros(n_rows, n_items, dtype=torch.bool, device=device)
    cand.scatter_(1, neg, valid)
    if truth.nnz:
        r = np.repeat(np.arange(n_rows), np.diff(truth.indptr))
        cand[torch.as_tensor(r, device=device), torch.as_tensor(truth.indices, device=device)] = (
            True
        )
    return cand


@torch.no_grad()
def rank_users(
    model: Any,
    users: np.ndarray,
    history: Dataset,
    k: int,
    exclude: sp.csr_matrix | None = None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items and their scores for ``users``, excluding the items in ``exclude``.

    users: int [U]; exclude: CSR [n_users, n_items] of items never to recommend (default:
    every item in ``history``). Returns ``(items int64 [U, k], scores float32 [U, k])``;
    slots with no remaining candidate hold item ``-1`` and score ``-inf``.
    """
    if exclude is None:
        exclude = history.csr()
    device = model.device
    k = min(k, model.n_items)
    out_items = np.empty((len(users), k), dtype=np.int64)
    out_scores = np.empty((len(users), k), dtype=np.float32)
    for start in range(0, len(users), batch_size):
        batch = np.asarray(users[start : start + batch_size])
        scores = model.score(torch.as_tensor(batch, dtype=torch.long, device=device), history)
        scores = scores.float()
        _mask_rows(scores, exclude[batch])
        top = torch.topk(scores, k, dim=1)
        items, vals = top.indices, top.values
        items = torch.where(torch.isneginf(vals), torch.full_like(items, -1), items)
        out_items[start : start + len(batch)] = items.cpu().numpy()
        out_scores[start : start + len(batch)] = vals.cpu().numpy()
    return out_items, out_scores


@torch.no_grad()
def evaluate_ranking(
    model: Any,
    ds: Dataset,
    split: Split,
    stage: str = "test",
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = ALL_RANKING_METRICS,
    batch_size: int = 1024,
    sampled: int | None = None,
    seed: int = 0,
    max_users: int | None = None,
    users: np.ndarray | None = None,
    test_history: str = "train+valid",
    average: str = "users-with-test",
    dist: Any = None,
) -> dict[str, Any]:
    """Evaluate a recommender on one stage of a split, by full ranking unless ``sampled``.

    ``model`` is a :class:`~streamrec.models.base.Recommender` (or any object with its
    ``score``, ``device``, ``n_items`` and ``name``, such as a wrapper that restricts the
    candidates).

    Returns ``{"metrics": {"recall@20": ..., ...}, "protocol": {...}, "seconds": ...}`` where
    the protocol names the dataset, split, stage, candidate set, masking, K and the number of
    users evaluated. ``max_users`` evaluates a deterministic random subset of users, ``users``
    only these internal users (among those with held-out items); both are labelled in the
    protocol (``users_evaluated`` against ``users_eligible``, ``user_subset``).

    ``test_history`` (``"train+valid"`` or ``"train"``) is the history the model reads at the
    ``test`` stage (the ``valid`` stage always reads training); what is masked does not change.
    ``average`` (``"users-with-test"`` or ``"all-users"``) is the denominator of every
    per-user metric: the users with held-out items, or every user of the dataset (of
    ``users`` when given; ``max_users`` then samples among them), those without held-out
    items counting 0; coverage is not averaged and does not change. Both are recorded in the
    protocol (``history``, ``average``, ``users_averaged``).

    ``dist`` (a :class:`~streamrec.train.distributed.Dist`, every rank calling): the users are
    sharded across the ranks, each ranks its share, and the accumulators are gathered, so every
    rank returns exactly the single-process metrics (``protocol["shards"]`` says how many).
    """
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError("ks must be positive integers")
    if sampled is not None and (isinstance(sampled, bool) or int(sampled) != sampled
                                or sampled < 1):
        raise ValueError(f"sampled must be a positive number of negatives, got {sampled!r}")
    if isinstance(model, ClickModel):
        raise CapabilityError(f"{model.name} is a click model: it is evaluated by AUC on "
                              "held-out impressions, not by ranking the catalogue")
    check_protocol(test_history, average)
    t0 = time.perf_counter()
    history = split.history(ds, stage)
    seen = history.csr()
    read = "train" if stage == "valid" else test_history
    if read != "train+valid" and stage == "test":
        history = split.train(ds)  # what the model reads; `seen` (masked) stays train + valid
    truth = split.part(ds, stage).csr()
    # A held-out item the user already saw cannot be recommended; it is not counted as truth.
    truth = (truth - truth.multiply(seen)).tocsr()
    truth.eliminate_zeros()
    eligible = np.flatnonzero(np.diff(truth.indptr) > 0)
    n_eligible = len(eligible)
    subset = None
    # the users a metric is averaged over: those with held-out items, or all of them
    population = eligible if average == "users-with-test" else np.arange(ds.n_users)
    if users is not None:
        population = np.intersect1d(population, np.asarray(users, dtype=np.int64))
        subset = "given users"
    if max_users is not None and len(population) > max_users:
        subset = f"random {max_users} (seed {seed})"
        population = np.sort(
            np.random.default_rng(seed).choice(population, max_users, replace=False))
    users = np.intersect1d(population, eligible)
    n_items = ds.n_items
    acc = RankingAccumulator(ks, n_items, metrics)
    kmax = min(ks[-1], n_items)
    device = model.device
    gen = torch.Generator().manual_seed(seed)
    sharded = dist is not None and dist.world_size > 1
    mine = users
    if sharded:
        from streamrec.train.distributed import gather_objects, shard

        mine = shard(users, dist)
        gen.manual_seed(seed + dist.rank)  # sampled negatives: each shard its own draws
    for start in range(0, len(mine), batch_size):
        batch = mine[start : start + batch_size]
        scores = model.score(torch.as_tensor(batch, dtype=torch.long, device=device), history)
        scores = scores.float()
        if sampled is not None:
            cand = _sampled_candidates(
                len(batch), n_items, seen[batch], truth[batch], sampled, gen, scores.device
            )
            scores = scores.masked_fill(~cand, float("-inf"))
        else:
            _mask_rows(scores, seen[batch])
        top = torch.topk(scores, kmax, dim=1)
        items = torch.where(
            torch.isneginf(top.values), torch.full_like(top.indices, -1), top.indices
        )
        acc.update(items.cpu().numpy(), truth[batch])
    if sharded:
        parts = gather_objects(acc, dist)
        acc = RankingAccumulator(ks, n_items, metrics)
        for part in parts:
            acc.merge(part)
    has_history = np.diff(history.csr().indptr)[users] > 0
    protocol = {
        "dataset": ds.name,
        "split": split.protocol(),
        "stage": stage,
        "candidates": f"sampled: truth + {sampled} random unseen items"
        if sampled is not None
        else "full ranking: all items",
        "sampled_negatives": sampled,
        "history": read,
        "masked": "train items" if stage == "valid" else "train + valid items",
        "average": average,
        "users_averaged": int(len(population)),
        "ks": ks,
        "n_items": n_items,
        "users_evaluated": int(len(users)),
        "users_eligible": int(n_eligible),
        "users_without_history": int((~has_history).sum()),
        "user_subset": subset,
        "model": model.name,
    }
    if sharded:
        protocol["shards"] = dist.world_size
    result = {k: float(v) for k, v in acc.result().items()}
    if len(population) > len(users):  # all-users: the users without held-out items add 0
        scale = len(users) / len(population)
        result = {k: v if k.startswith("coverage@") else (v * scale if len(users) else 0.0)
                  for k, v in result.items()}
    evaluation = (
        f"SAMPLED ({sampled} negatives; not comparable with full ranking)"
        if sampled is not None
        else "full ranking"
    )
    return {
        "metrics": result,
        "evaluation": evaluation,
        "protocol": protocol,
        "seconds": time.perf_counter() - t0,
    }


def evaluate_model(
    model: Any,
    ds: Dataset,
    split: Split,
    stage: str = "test",
    ks: Sequence[int] = (10, 20),
    sampled: int | None = None,
    batch_size: int = 1024,
    test_history: str = "train+valid",
    average: str = "users-with-test",
    dist: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate any model by its task: full ranking (or ``sampled``) for a
    :class:`~streamrec.models.base.Recommender`, AUC / log-loss on the held-out impressions for
    a :class:`~streamrec.models.base.ClickModel` (see :mod:`streamrec.eval.clicks`).
    ``test_history`` and ``average``: see :func:`evaluate_ranking` (ranking models only).
    ``dist``: shard the ranking's users over the ranks of a process group (click models are
    evaluated whole on every rank)."""
    check_protocol(test_history, average)
    if isinstance(model, ClickModel):
        if sampled is not None:
            raise ValueError("sampled evaluation applies to ranking models only; "
                             f"{model.name} is evaluated by AUC on held-out impressions")
        check_click_protocol(model.name, test_history, average)
        from streamrec.eval.clicks import evaluate_clicks

        return evaluate_clicks(model, ds, stage, **kwargs)
    return evaluate_ranking(model, ds, split, stage, ks, batch_size=batch_size, sampled=sampled,
                            test_history=test_history, average=average, dist=dist,
                            **kwargs)


def check_click_protocol(name: str, test_history: str, average: str) -> None:
    """Raise ``ValueError`` when a click model is asked for a ranking protocol option (a test
    history or an average other than the default): it is judged on held-out impressions."""
    if (test_history, average) != (TEST_HISTORIES[0], AVERAGES[0]):
        raise ValueError(f"--test-history and --average apply to ranking models only; {name} "
                         "is a click model, evaluated by AUC on held-out impressions")


def has_stage(model: Any, ds: Dataset, split: Split, stage: str) -> bool:
    """Whether there is anything to evaluate on ``stage`` for this model's task."""
    if isinstance(model, ClickModel):
        return ds.impressions is not None
    return bool(split.mask(stage).any())
