"""Benchmark M3: content embeddings (text CNN vs TF-IDF+SVD vs MiniLM) and cold-start recall.

Protocol
--------
Datasets (item text is side information: every item, held-out ones included, is embedded):

* ``world``: the synthetic ``demo`` world (seed 0; 6,000 users, 3,500 items, 20 categories,
  ~200k interactions), text = title + synopsis; ground-truth item latents from the generator.
* ``amazon``: Amazon 2018 Industrial & Scientific (UniSRec/CoWPiRec files, 4,385 items,
  8,442 users, ~59k interactions). The category label is the top-level node of the category
  path inside the item text (25 known top-level names, matched as a prefix; items without a
  match are labelled ``(none)`` and are not used as queries). Two text variants: ``full``
  (title + category path + brand, as shipped) and ``no-path`` (title + brand: the category
  path is removed, so the label cannot be read off the text).
* ``ml1m``: MovieLens-1M movies (3,883), category = first genre in the canonical ML order,
  plots from MeLU. No ratings are available here, so only neighbour quality is measured.
  Text variants: ``full`` (title + genre names + plot, as the importer builds it) and
  ``no-genres`` (title + plot). With no interactions, the training view is a catalogue
  pseudo-user who "interacted" with a random 80% of the movies (seed 0): those are the
  training items (vocabulary, IDF/SVD, category labels); the other 20% are held out.

Split (world, amazon): ``cold-items`` (seed 0): 20% of the items that have interactions are
held out of all training interactions; their interactions are the test set; 10% of the warm
interactions are validation (unused here). Models learn only from the training view: the
vocabulary, IDF and SVD basis come from the training items' text, the CNN's category labels
from training items, its co-engaged pairs from training users' histories.

Models: ``tfidf-svd`` (128-d; also ``tfidf-svd:catalogue``, fitted on every item's text),
``cnn-text`` trained on categories (``category``), on categories + co-engagement InfoNCE
(``both``; world and amazon), on categories + the profile objective (``category+profile``,
with 1-3-gram filters and max+mean pooling; world and amazon), on categories + two-view
InfoNCE (``category+views``, 1-3-gram filters, mean pooling, token dropout 0.5; every dataset)
and on all three (``category+views+profile``; world and amazon), ``minilm`` (frozen, 384-d).
The CNN trains a fixed number of epochs (no model selection on any held-out data); the recipes
are ``PROFILE_RECIPE``, ``VIEWS_RECIPE`` and ``VIEWS_PROFILE_RECIPE`` below.

Measures
--------
* Neighbour quality: each query item's 10 nearest neighbours by cosine among **all** items
  (itself excluded). Category precision@10 = share of neighbours with the query's category.
  Queries: all labelled items, and the held-out items only (never seen in training). On the
  world also the overlap@10 with the 10 nearest neighbours under the true item latents
  (cosine). On ml1m also genre precision@10: share of neighbours sharing >= 1 genre.
* Cold start: the content recommender of each embedding (user profile = mean of the
  normalised embeddings of the user's train + validation items; cosine scores) on the test
  part (only cold items), Recall@20 / NDCG@20, train + validation items masked, with two
  candidate sets: the full catalogue, and the cold items only. Popularity is the baseline.
  Also the cold share: the mean share of cold items in the test users' full-catalogue top 20
  (how much a model favours cold items over warm ones, which the full-catalogue measure
  rewards since every test item is cold).
* Time: training seconds per 1,000 training items and embedding seconds per 1,000 items
  (all items, eval mode, after the model is fitted); wall clock on this machine.

    OMP_NUM_THREADS=1 python benchmarks/content_embeddings.py [--datasets world,...] [--quick]

One thread: on a shared, oversubscribed machine OpenMP threads that wait for each other make
small convolutions up to 30x slower (the CNN unit test: 72 s with 2 threads, 2 s with 1).
Results are cached per dataset in ``benchmarks/work/content/`` (``--fresh`` recomputes), so
datasets can be run in separate processes and merged by a last call.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from streamrec.data.dataset import Dataset
from streamrec.data.splits import Split, make_split
from streamrec.eval.evaluator import evaluate_ranking, rank_users
from streamrec.eval.metrics import category_precision, neighbour_overlap
from streamrec.models.cnn_text import CNNText, CNNTextConfig
from streamrec.models.content import ContentConfig, ContentRecommender
from streamrec.models.minilm import MiniLM, MiniLMConfig, load_encoder
from streamrec.models.pop import PopConfig, Popularity
from streamrec.models.tfidf_svd import TfidfSVD, TfidfSVDConfig
from streamrec.serve.embeddings import item_matrix, nearest_neighbours
from streamrec.train import TrainConfig, Trainer

from common import RESULTS, write_result

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORK = Path(__file__).resolve().parent / "work" / "content"
K = 10
AMAZON_TOP = (
    "Abrasive & Finishing Products",
    "Additive Manufacturing Products",
    "Commercial Door Products",
    "Cutting Tools",
    "Fasteners",
    "Filtration",
    "Food Service Equipment & Supplies",
    "Hydraulics, Pneumatics & Plumbing",
    "Industrial Electrical",
    "Industrial Hardware",
    "Industrial Power & Hand Tools",
    "Janitorial & Sanitation Supplies",
    "Lab & Scientific Products",
    "Material Handling Products",
    "Occupational Health & Safety Products",
    "Packaging & Shipping Supplies",
    "Power Transmission Products",
    "Professional Dental Supplies",
    "Professional Medical Supplies",
    "Raw Materials",
    "Retail Store Fixtures & Equipment",
    "Robotics",
    "Science Education",
    "Tapes, Adhesives & Sealants",
    "Test, Measure & Inspect",
)
#: the CNN recipe of the benchmark's "category" rows: Kim's architecture (the cnn-text defaults
#: when this benchmark was written, pinned here since the defaults became the views recipe)
KIM = {"widths": (3, 4, 5), "n_filters": 64, "pooling": "max", "dropout": 0.5,
       "token_dropout": 0.0, "category_weight": 1.0, "views_weight": 1.0}
CNN_TRAIN = {"epochs": 15, "batch_size": 64, "lr": 3e-3}
#: the profile-objective recipe: unigram-to-trigram filters (single words carry the topic and
#: series signals of this kind of text), max and mean pooling (presence and counts), profiles
#: of 64 history items (close to the recommender's whole-history profile), token dropout 0.2,
#: 8 epochs of one pass over the training users each; the category term at half the weight
PROFILE_RECIPE = {**KIM, "widths": (1, 2, 3), "n_filters": 128, "pooling": "max+mean",
                  "contrastive_weight": 2.0, "profile_items": 64, "token_dropout": 0.2}
PROFILE_EPOCHS = 8
#: the views recipe (category + views): unigram-to-trigram filters with mean pooling, half of
#: the tokens dropped in each view, light feature dropout, the category term at weight 2 and the
#: views term at 3, and 40 epochs of 256-item batches (more in-batch negatives per view)
VIEWS_RECIPE = {**KIM, "widths": (1, 2, 3), "n_filters": 128, "pooling": "mean",
                "token_dropout": 0.5, "dropout": 0.1, "category_weight": 2.0, "views_weight": 3.0}
VIEWS_TRAIN = {"epochs": 40, "batch_size": 256, "lr": 3e-3}
#: views + profile: the views recipe plus the profile term (64-item profiles, weight 1), the
#: category term at 0.3, and the profile schedule (8 epochs of one pass over the users)
VIEWS_PROFILE_RECIPE = {**VIEWS_RECIPE, "category_weight": 0.3, "contrastive_weight": 1.0,
                        "profile_items": 64}


def cnn_recipe(objective: str, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model options, training options) of the benchmark's CNN for ``objective``."""
    if "views" in objective and "profile" in objective:
        model, train = VIEWS_PROFILE_RECIPE, {**CNN_TRAIN, "epochs": PROFILE_EPOCHS}
    elif "views" in objective:
        model, train = VIEWS_RECIPE, VIEWS_TRAIN
    elif "profile" in objective:
        model, train = PROFILE_RECIPE, {**CNN_TRAIN, "epochs": PROFILE_EPOCHS}
    else:
        model, train = KIM, CNN_TRAIN
    return dict(model), {**train, "epochs": 2} if quick else dict(train)


# =========================================================================== data
class Bench:
    """One dataset variant: data, training view, held-out items, labels, references."""

    def __init__(
        self,
        name: str,
        ds: Dataset,
        train: Dataset,
        split: Split | None,
        held_out: np.ndarray,
        text_note: str,
        truth_latent: np.ndarray | None = None,
        genres: list[set[str]] | None = None,
        label_note: str = "",
    ) -> None:
        self.name, self.ds, self.train, self.split = name, ds, train, split
        self.held_out = np.asarray(held_out, dtype=np.int64)
        self.categories = np.asarray(ds.items["category"]).astype(np.int64)
        self.labelled = np.flatnonzero(self.categories >= 0)
        self.held_labelled = self.held_out[self.categories[self.held_out] >= 0]
        self.text_note, self.label_note = text_note, label_note
        self.truth_latent, self.genres = truth_latent, genres


def world_bench() -> Bench:
    from streamrec.data.world import make_world_with_truth

    ds, truth = make_world_with_truth("demo", seed=0)
    split = make_split(ds, "cold-items", seed=0)
    return Bench(
        "world (demo)",
        ds,
        split.train(ds),
        split,
        split.cold_items,
        "title + synopsis",
        truth_latent=truth.item_latent,
        label_note="20 generator categories",
    )


def _amazon_category(text: str) -> tuple[int, str]:
    """(top-level category index or -1, the text with its category path removed)."""
    marker = "Industrial & Scientific"
    i = text.rfind(marker)
    if i < 0:
        return -1, text
    rest = text[i + len(marker) :].strip()
    best = -1
    for c, name in enumerate(AMAZON_TOP):
        if rest.startswith(name) and (best < 0 or len(name) > len(AMAZON_TOP[best])):
            best = c
    path_end = rest.find(". ")
    tail = rest[path_end + 2 :] if path_end >= 0 else ""
    return best, (text[:i].rstrip() + " " + tail).strip()


def amazon_bench(variant: str) -> Bench:
    from streamrec.data.importers import import_dataset

    ds = import_dataset("unisrec", DATA / "amazon-scientific")
    parsed = [_amazon_category(str(t)) for t in ds.items["text"]]
    cats = np.array([c for c, _ in parsed], dtype=np.int64)
    n_cat = len(AMAZON_TOP)
    items = dict(ds.items)
    items["category"] = np.where(cats >= 0, cats, n_cat).astype(np.int16)  # (none) = n_cat
    if variant == "no-path":
        items["text"] = np.array([t for _, t in parsed], dtype=object)
    ds = Dataset(
        ds.name,
        ds.user_ids,
        ds.item_ids,
        ds.inter,
        items=items,
        users=ds.users,
        meta={**ds.meta, "categories": [*AMAZON_TOP, "(none)"]},
    )
    split = make_split(ds, "cold-items", seed=0)
    bench = Bench(
        f"amazon-scientific [{variant}]",
        ds,
        split.train(ds),
        split,
        split.cold_items,
        "title + category path + brand" if variant == "full" else "title + brand",
        label_note=f"top-level category from the path; {int((cats < 0).sum())} "
        "unmatched items not used as queries",
    )
    unlabelled = cats < 0
    bench.categories[unlabelled] = -1
    bench.labelled = np.flatnonzero(~unlabelled)
    bench.held_labelled = bench.held_out[~unlabelled[bench.held_out]]
    return bench


def ml1m_bench(variant: str) -> Bench:
    import warnings

    from streamrec.data.importers import import_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ratings.dat not found": expected, items only
        ds = import_dataset(
            "movielens-1m",
            DATA / "movielens-1m" / "raw",
            plots=DATA / "movielens-1m" / "melu" / "movies_extrainfos.dat.gz",
        )
    items = dict(ds.items)
    if variant == "no-genres":
        items["text"] = np.array(
            [f"{t}. {p}" if p else f"{t}." for t, p in zip(items["title"], items["plot"])],
            dtype=object,
        )
    rng = np.random.default_rng(0)
    held = np.sort(rng.choice(ds.n_items, size=int(round(0.2 * ds.n_items)), replace=False))
    train_items = np.setdiff1d(np.arange(ds.n_items), held)
    # the catalogue pseudo-user: one training "interaction" per training movie
    inter = {
        "user": np.zeros(len(train_items), dtype=np.int32),
        "item": train_items,
        "timestamp": np.arange(len(train_items)),
    }
    cat_ds = Dataset(ds.name, ["catalogue"], ds.item_ids, inter, items=items, meta=ds.meta)
    genres = [set(str(g).split("|")) if g else set() for g in items["genres"]]
    return Bench(
        f"movielens-1m [{variant}]",
        cat_ds,
        cat_ds,
        None,
        held,
        "title + genres + plot" if variant == "full" else "title + plot",
        genres=genres,
        label_note="first genre (canonical ML order)",
    )


# =========================================================================== models
class TrueLatents(ContentRecommender):
    """The world's true item latents as "embeddings": the content recommender with perfect
    knowledge of what drives preferences, and none of the words (a reference row)."""

    name = "true-latents"

    def __init__(self, train: Dataset, latents: np.ndarray) -> None:
        super().__init__(ContentConfig(), train)
        self.latents = torch.as_tensor(latents, dtype=torch.float32)
        self.dim = int(self.latents.shape[1])

    def compute_item_embeddings(self) -> torch.Tensor:
        return self.latents

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError("true latents have no text encoder")


def fit_model(kind: str, bench: Bench, quick: bool) -> tuple[ContentRecommender, float]:
    """Build and fit one model on the bench's training view; returns (model, seconds)."""
    train = bench.train
    torch.manual_seed(0)
    t0 = time.perf_counter()
    if kind == "true-latents":
        assert bench.truth_latent is not None
        model: ContentRecommender = TrueLatents(train, bench.truth_latent)
    elif kind in ("tfidf-svd", "tfidf-svd:catalogue"):
        fit_on = "catalogue" if kind.endswith("catalogue") else "train"
        model = TfidfSVD(TfidfSVDConfig(fit_on=fit_on), train)
        model.fit(train)
    elif kind == "minilm":
        model = MiniLM(MiniLMConfig(), train)
        model.fit(train)
    else:  # "cnn:OBJECTIVE" or "cnn-random:OBJECTIVE" (random token init)
        family, objective = kind.split(":")
        init = "random" if family == "cnn-random" else "svd"
        recipe, schedule = cnn_recipe(objective, quick)
        model = CNNText(CNNTextConfig(objective=objective, token_init=init, **recipe), train)
        cfg = TrainConfig(**schedule, progress=False, patience=0)
        Trainer(model, train, cfg, None, console=Console(quiet=True)).fit()
    seconds = time.perf_counter() - t0
    model.eval()
    return model, seconds


def neighbour_quality(bench: Bench, emb: np.ndarray) -> dict[str, float]:
    nbr, _ = nearest_neighbours(emb, K)
    cats = bench.categories
    out = {
        "cat_p@10_all": category_precision(nbr[bench.labelled], cats, bench.labelled),
        "cat_p@10_heldout": category_precision(nbr[bench.held_labelled], cats, bench.held_labelled),
    }
    if bench.truth_latent is not None:
        tn, _ = nearest_neighbours(bench.truth_latent, K)
        out["overlap@10_all"] = neighbour_overlap(nbr, tn)
        out["overlap@10_heldout"] = neighbour_overlap(nbr[bench.held_out], tn[bench.held_out])
    if bench.genres is not None:
        g = bench.genres

        def genre_p(q: np.ndarray) -> float:
            return float(np.mean([[bool(g[i] & g[j]) for j in nbr[i]] for i in q]))

        out["genre_p@10_all"] = genre_p(bench.labelled)
        out["genre_p@10_heldout"] = genre_p(bench.held_out)
    return out


class ColdOnly:
    """A model wrapper that ranks the cold items only (every other item scores -inf)."""

    def __init__(self, model: Any, cold: np.ndarray) -> None:
        self.model, self.n_items = model, model.n_items
        self.name = model.name
        keep = torch.zeros(model.n_items, dtype=torch.bool)
        keep[torch.as_tensor(cold)] = True
        self.keep = keep

    @property
    def device(self) -> torch.device:
        return self.model.device

    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        s = self.model.score(users, history).float()
        return s.masked_fill(~self.keep.to(s.device)[None, :], float("-inf"))


def cold_share(bench: Bench, model: Any, k: int = 20) -> float:
    """Mean share of cold items in the test users' full-catalogue top-``k`` (history masked):
    how strongly a model favours cold items over warm ones, whatever the users did."""
    assert bench.split is not None
    users = np.unique(bench.split.part(bench.ds, "test").user)
    top, _ = rank_users(model, users, bench.split.history(bench.ds, "test"), k)
    cold = np.zeros(bench.ds.n_items + 1, dtype=bool)  # the last slot: -1, no candidate left
    cold[bench.split.cold_items] = True
    return float(cold[top].mean())


def cold_start(bench: Bench, model: Any) -> dict[str, float]:
    assert bench.split is not None
    out = {}
    for cands, m in (("all", model), ("cold", ColdOnly(model, bench.split.cold_items))):
        res = evaluate_ranking(m, bench.ds, bench.split, "test", (20,))
        out[f"recall@20_{cands}"] = res["metrics"]["recall@20"]
        out[f"ndcg@20_{cands}"] = res["metrics"]["ndcg@20"]
        out["users_evaluated"] = res["protocol"]["users_evaluated"]
    out["cold_share@20_all"] = cold_share(bench, model)
    return out


def run_bench(bench: Bench, kinds: list[str], quick: bool, log: Any) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    n_train = len(np.unique(bench.train.item)) if bench.train.n_interactions else bench.ds.n_items
    for kind in kinds:
        if ("both" in kind or "profile" in kind) and bench.split is None:
            continue  # no interactions, no co-engagement or profiles
        if kind.startswith(("cnn-random", "true-latents")) and bench.truth_latent is None:
            continue  # the initialisation ablation and the latent reference: world only
        model, train_s = fit_model(kind, bench, quick)
        model.invalidate_cache()
        t0 = time.perf_counter()
        if kind.startswith(("tfidf-svd", "minilm")):  # fit already embedded: time a re-embedding
            with torch.no_grad():
                model.embed_texts(model.texts)
        emb = item_matrix(model)
        embed_s = time.perf_counter() - t0
        row: dict[str, Any] = {
            "dim": int(emb.shape[1]),
            "epochs": cnn_recipe(kind, quick)[1]["epochs"] if isinstance(model, CNNText) else None,
            "train_seconds": train_s,
            "train_s_per_1k_items": 1000 * train_s / n_train if kind != "minilm" else 0.0,
            "fit_seconds": train_s,
            "embed_seconds": embed_s,
            "embed_s_per_1k_items": 1000 * embed_s / bench.ds.n_items,
            **neighbour_quality(bench, emb),
        }
        if isinstance(model, CNNText):
            row["vocab_size"] = len(model.vocab)
            row["category_acc_heldout"] = model.category_accuracy(bench.held_labelled)
            row["category_acc_train"] = model.category_accuracy(model.train_items)
        elif kind.startswith("tfidf-svd"):
            row["vocab_size"] = len(model.vocab)
        if bench.split is not None:
            row.update(cold_start(bench, model))
        rows[kind] = row
        log(
            f"  {bench.name:32s} {kind:12s} "
            + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
        )
    # references
    if bench.split is not None:
        pop = Popularity(PopConfig(), bench.train)
        pop.fit(bench.train)
        rows["pop"] = cold_start(bench, pop)
    ref: dict[str, Any] = {}
    cats = bench.categories
    p = np.bincount(cats[bench.labelled]) / len(bench.labelled)
    ref["cat_p@10_chance"] = float((p**2).sum())
    if bench.truth_latent is not None:
        tn, _ = nearest_neighbours(bench.truth_latent, K)
        ref["cat_p@10_true_latents"] = category_precision(tn[bench.labelled], cats, bench.labelled)
        ref["overlap@10_chance"] = K / (bench.ds.n_items - 1)
    return {
        "protocol": {
            "dataset": bench.name,
            "items": bench.ds.n_items,
            "training_items": int(n_train),
            "held_out_items": int(len(bench.held_out)),
            "text": bench.text_note,
            "label": bench.label_note,
            "split": bench.split.protocol()
            if bench.split is not None
            else "catalogue pseudo-user with 80% of the items (seed 0); 20% held out",
            "neighbours": f"top-{K} cosine among all items, query excluded",
            "cold_start": "test part of the cold-items split (cold items only); history = "
            "train + valid; train + valid items masked; K = 20; candidates: all items / "
            "cold items only"
            if bench.split is not None
            else None,
        },
        "models": rows,
        "reference": ref,
    }


# =========================================================================== report
NAMES = {
    "tfidf-svd": "TF-IDF+SVD",
    "tfidf-svd:catalogue": "TF-IDF+SVD (fit on the catalogue's text)",
    "cnn-random:category": "CNN (category, random token init)",
    "cnn:category": "CNN (category)",
    "cnn:both": "CNN (category+co-engagement)",
    "cnn:category+profile": "CNN (category+profile)",
    "cnn:category+views": "CNN (category+views)",
    "cnn:category+views+profile": "CNN (category+views+profile)",
    "minilm": "MiniLM (frozen)",
    "true-latents": "true item latents (reference)",
    "pop": "popularity",
}


def _rows(res: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A dataset's model rows in the order of ``NAMES`` (rows added later slot in place)."""
    order = list(NAMES)
    return sorted(res["models"].items(), key=lambda kv: order.index(kv[0]))


def _f(v: Any, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def tables(results: dict[str, Any]) -> str:
    out = [
        "### Neighbour quality (top-10 cosine neighbours among all items)",
        "",
        "| dataset | text | model | cat P@10 all | cat P@10 held-out | overlap@10 true "
        "latents (all / held-out) | genre P@10 (all / held-out) |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results.values():
        pr, ref = res["protocol"], res["reference"]
        for kind, row in _rows(res):
            if kind == "pop":
                continue
            ov = (
                f"{_f(row['overlap@10_all'])} / {_f(row['overlap@10_heldout'])}"
                if "overlap@10_all" in row
                else "—"
            )
            ge = (
                f"{_f(row['genre_p@10_all'])} / {_f(row['genre_p@10_heldout'])}"
                if "genre_p@10_all" in row
                else "—"
            )
            out.append(
                f"| {pr['dataset']} | {pr['text']} | {NAMES[kind]} | "
                f"{_f(row['cat_p@10_all'])} | {_f(row['cat_p@10_heldout'])} | {ov} | {ge} |"
            )
        extra = (
            f"; true latents {_f(ref['cat_p@10_true_latents'])}"
            if ("cat_p@10_true_latents" in ref)
            else ""
        )
        out.append(f"| {pr['dataset']} | | *chance {_f(ref['cat_p@10_chance'])}{extra}* | | | | |")
    out += [
        "",
        "### Cold start (test = interactions with the 20% cold items; K = 20)",
        "",
        "| dataset | text | model | Recall@20 all items | NDCG@20 all items | "
        "Recall@20 cold items only | NDCG@20 cold items only | cold share of top-20 "
        "(all items) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results.values():
        pr = res["protocol"]
        if pr["cold_start"] is None:
            continue
        for kind, row in _rows(res):
            out.append(
                f"| {pr['dataset']} | {pr['text']} | {NAMES[kind]} | "
                f"{_f(row['recall@20_all'], '.4f')} | {_f(row['ndcg@20_all'], '.4f')} | "
                f"{_f(row['recall@20_cold'], '.4f')} | {_f(row['ndcg@20_cold'], '.4f')} | "
                f"{_f(row.get('cold_share@20_all'), '.2f')} |"
            )
        out.append(f"| {pr['dataset']} | | *cold items: {pr['held_out_items']} of "
                   f"{pr['items']}* | | | | | |")
    out += [
        "",
        "### Time (wall clock, this machine)",
        "",
        "| dataset | model | dim | train s / 1k training items | embed s / 1k items |",
        "|---|---|---|---|---|",
    ]
    for res in results.values():
        pr = res["protocol"]
        for kind, row in _rows(res):
            if kind in ("pop", "true-latents"):
                continue
            out.append(
                f"| {pr['dataset']} | {NAMES[kind]} | {row['dim']} | "
                f"{_f(row['train_s_per_1k_items'], '.2f')} | "
                f"{_f(row['embed_s_per_1k_items'], '.2f')} |"
            )
    return "\n".join(out)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    kinds = ["tfidf-svd", "cnn:category", "cnn:category+profile", "cnn:category+views", "minilm"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.16
    for ax, key, title in (
        (axes[0], "cat_p@10_heldout", "category P@10, held-out queries"),
        (axes[1], "recall@20_cold", "cold-start Recall@20 (cold candidates)"),
    ):
        for j, kind in enumerate(kinds):
            vals = [results[n]["models"].get(kind, {}).get(key, np.nan) for n in names]
            ax.bar(np.arange(len(names)) + (j - 2) * width, vals, width, label=NAMES[kind])
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(
            [results[n]["protocol"]["dataset"] for n in names], rotation=20, ha="right", fontsize=8
        )
        ax.set_title(title)
    axes[1].legend(fontsize=7, loc="lower right")  # the ML-1M columns have no cold start
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# =========================================================================== main
BENCHES = {
    "world": lambda: world_bench(),
    "amazon-full": lambda: amazon_bench("full"),
    "amazon-no-path": lambda: amazon_bench("no-path"),
    "ml1m-full": lambda: ml1m_bench("full"),
    "ml1m-no-genres": lambda: ml1m_bench("no-genres"),
}


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(BENCHES), help=f"subset of {list(BENCHES)}")
    ap.add_argument(
        "--models",
        default="tfidf-svd,tfidf-svd:catalogue,cnn-random:category,cnn:category,cnn:both,"
        "cnn:category+profile,cnn:category+views,cnn:category+views+profile,minilm,true-latents",
    )
    ap.add_argument("--quick", action="store_true", help="2 CNN epochs (a smoke test)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached per-dataset results")
    ap.add_argument("--add", action="store_true",
                    help="keep cached per-dataset results and run only the models they lack")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kinds = args.models.split(",")
    WORK.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.0f}s] {msg}", flush=True)

    if "minilm" in kinds:
        t0 = time.perf_counter()
        load_encoder("cpu")
        log(f"MiniLM encoder loaded in {time.perf_counter() - t0:.1f}s")
    results: dict[str, Any] = {}
    for key in args.datasets.split(","):
        cache = WORK / f"{key}{'-quick' if args.quick else ''}.json"
        cached = json.loads(cache.read_text()) if cache.is_file() and not args.fresh else None
        missing = [k for k in kinds if cached is not None and k not in cached["models"]]
        if cached is not None and not (args.add and missing):
            results[key] = cached
            log(f"{key}: cached result {cache}")
            continue
        bench = BENCHES[key]()
        log(f"{key}: {bench.ds.n_items} items, {len(bench.held_out)} held out")
        if cached is not None:  # --add: the cached rows plus the missing models
            log(f"{key}: adding {missing} to the cached result")
            new = run_bench(bench, missing, args.quick, log)
            pop = cached["models"].pop("pop", None)
            cached["models"].update(new["models"])
            if pop is not None:
                cached["models"]["pop"] = cached["models"].pop("pop", pop)
            results[key] = cached
        else:
            results[key] = run_bench(bench, kinds, args.quick, log)
        cache.write_text(json.dumps(results[key], indent=2))
    table = tables(results)
    name = "content_embeddings" + ("_quick" if args.quick else "")
    payload = {
        "protocol": {
            "neighbours": f"top-{K} by cosine among all items, query excluded",
            "cnn": {**CNNTextConfig().to_dict(), **CNN_TRAIN},
            "cnn_profile": {**PROFILE_RECIPE, "epochs": PROFILE_EPOCHS},
            "cnn_views": {**VIEWS_RECIPE, **VIEWS_TRAIN},
            "cnn_views_profile": {**VIEWS_PROFILE_RECIPE, "epochs": PROFILE_EPOCHS},
            "tfidf_svd": TfidfSVDConfig().to_dict(),
            "minilm": MiniLMConfig().to_dict(),
            "torch_threads": torch.get_num_threads(),
        },
        "results": results,
    }
    write_result(name, payload, table, history="train+valid")
    plot(results, RESULTS / f"{name}.png")


if __name__ == "__main__":
    main()
