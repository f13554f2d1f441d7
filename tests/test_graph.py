"""Graph recommenders (M6): the graph, its normalisation, propagation, negatives, GF-CF, runs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.nn import GCNConv, LGConv, SAGEConv

from streamrec.data.dataset import Dataset
from streamrec.data.splits import make_split
from streamrec.data.world import generate_world
from streamrec.models.gfcf import GFCF, GFCFConfig
from streamrec.models.graph import (
    GCNConvFused,
    LightConv,
    SAGEConvFused,
    bipartite_edge_index,
    normalized_adjacency,
    unweighted_adjacency,
)
from streamrec.models.lightgcn import LightGCN, LightGCNConfig
from streamrec.run import load_run, train_run
from streamrec.train import move_to_device

from conftest import random_dataset

GRAPH_MODELS = ("lightgcn", "gcn", "graphsage", "gat")
FAST = ["epochs=2", "batch_size=512", "progress=false"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny graphs: one thread is faster than two, and does not stall on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    return generate_world("tiny", tmp_path_factory.mktemp("graph") / "tiny", seed=3)


def _pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.as_subclass(torch.Tensor).T.tolist()))


def _dataset(pairs: list[tuple[int, int]], n_users: int, n_items: int) -> Dataset:
    u, i = np.array(pairs).T
    return Dataset(
        name="hand",
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        inter={"user": u, "item": i, "timestamp": np.arange(len(u))},
    )


# ------------------------------------------------------------------------------ the graph
def test_graph_is_built_from_training_only(tiny_world):
    from streamrec.data.dataset import load_dataset

    ds = load_dataset(tiny_world)
    split = make_split(ds, "loo")
    train = split.train(ds)
    model = LightGCN(LightGCNConfig(dim=8, n_layers=2), train)
    edges = _pairs(model.edge_index)
    n_u = ds.n_users
    train_pairs = set(zip(train.user.tolist(), train.item.tolist()))
    assert len(edges) == 2 * len(train_pairs) == model.edge_index.shape[1]
    for u, i in train_pairs:
        assert (u, n_u + i) in edges and (n_u + i, u) in edges
    for part in ("valid", "test"):
        held = split.part(ds, part)
        assert len(held.user) > 0
        for u, i in zip(held.user.tolist(), held.item.tolist()):
            assert (u, n_u + i) not in edges and (n_u + i, u) not in edges


def test_normalisation_by_hand():
    # users 0, 1; items 0, 1, 2 (nodes 2, 3, 4). u0: i0 i1; u1: i1 i2.
    # degrees: u0 2, u1 2, i0 1, i1 2, i2 1  ->  w = 1 / sqrt(deg(u) deg(i))
    edge_index = bipartite_edge_index(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2]), 2, 3)
    adj, w = normalized_adjacency(edge_index, 5)
    got = dict(zip(map(tuple, adj.as_subclass(torch.Tensor).T.tolist()), w.tolist()))
    r2 = 1 / np.sqrt(2)
    expected = {(0, 2): r2, (0, 3): 0.5, (1, 3): 0.5, (1, 4): r2}
    expected.update({(b, a): v for (a, b), v in expected.items()})
    assert got.keys() == expected.keys()
    for edge, value in expected.items():
        assert got[edge] == pytest.approx(value, abs=1e-7)
    assert adj.is_sorted_by_col and adj.is_undirected


def test_lightgcn_propagation_equals_dense_reference():
    ds = random_dataset(n_users=30, n_items=20, per_user=6, seed=1)
    torch.manual_seed(0)
    model = LightGCN(LightGCNConfig(dim=8, n_layers=3, similarity="dot"), ds).eval()
    a = np.zeros((50, 50))
    for u, i in zip(ds.user, ds.item):
        a[u, 30 + i] = a[30 + i, u] = 1.0
    deg = a.sum(1)
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    a_norm = inv[:, None] * a * inv[None, :]
    x = model.embedding.weight.detach().double().numpy()
    layers = [x]
    for _ in range(3):
        layers.append(a_norm @ layers[-1])
    ref = np.mean(layers, axis=0)
    users, items = model.propagate()
    np.testing.assert_allclose(users.detach().numpy(), ref[:30], atol=1e-5)
    np.testing.assert_allclose(items.detach().numpy(), ref[30:], atol=1e-5)
    scores = model.score(torch.arange(30), ds)
    np.testing.assert_allclose(scores.numpy(), ref[:30] @ ref[30:].T, atol=1e-5)
    # ego_norm: the same propagation of the unit-length ego rows, so rescaling them changes
    # nothing, and a node's final norm follows the graph
    model.config.ego_norm = True
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    layers = [unit]
    for _ in range(3):
        layers.append(a_norm @ layers[-1])
    ref = np.mean(layers, axis=0)
    with torch.no_grad():
        model.embedding.weight.mul_(torch.rand(50, 1) + 0.5)
    users, items = model.propagate()
    np.testing.assert_allclose(users.detach().numpy(), ref[:30], atol=1e-5)
    np.testing.assert_allclose(items.detach().numpy(), ref[30:], atol=1e-5)


@pytest.mark.parametrize("kind", ["light", "gcn", "sage"])
def test_fused_convs_equal_pyg_message_passing(kind):
    """The fused EdgeIndex path gives PyG's own gather-scatter result, values and gradients."""
    ds = random_dataset(n_users=25, n_items=15, per_user=5, seed=2)
    edge_index = bipartite_edge_index(ds.user, ds.item, 25, 15)
    adj, w = normalized_adjacency(edge_index, 40)
    plain = adj.as_subclass(torch.Tensor)
    torch.manual_seed(0)
    if kind == "light":
        fused, ref = LightConv(normalize=False), LGConv(normalize=False)
    elif kind == "gcn":
        fused = GCNConvFused(6, 5, normalize=False, add_self_loops=False)
        ref = GCNConv(6, 5, normalize=False, add_self_loops=False)
        ref.load_state_dict(fused.state_dict())
    else:
        fused, ref = SAGEConvFused(6, 5), SAGEConv(6, 5)
        ref.load_state_dict(fused.state_dict())
        adj, w = unweighted_adjacency(edge_index, 40), None
    x1 = torch.randn(40, 6, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    args1 = (x1, adj) if w is None else (x1, adj, w)
    args2 = (x2, plain) if w is None else (x2, plain, w)
    out1, out2 = fused(*args1), ref(*args2)
    torch.testing.assert_close(out1, out2, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out1)
    out1.backward(g)
    out2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ negatives
@pytest.mark.parametrize("loss", ["bpr", "softmax", "in-batch", "full"])
def test_negatives_are_never_positives(loss):
    ds = random_dataset(n_users=40, n_items=30, per_user=12, seed=4)
    positives = ds.csr().toarray() > 0
    if loss == "bpr":
        cfg = LightGCNConfig(dim=8, loss="bpr", n_negatives=5)
    else:
        cfg = LightGCNConfig(dim=8, loss="softmax", n_negatives=0 if loss == "full" else 20,
                             in_batch=loss == "in-batch")
    model = LightGCN(cfg, ds)
    rng = np.random.default_rng(0)
    batches = list(model.batches(ds, 64, rng))
    assert len(batches) == model.num_batches(ds, 64)
    seen = np.concatenate([b.users * 30 + b.items for b in batches])
    assert len(seen) == len(set(seen)) == int(positives.sum())  # every pair once
    for b in batches:
        assert positives[b.users, b.items].all()
        if loss == "bpr":
            assert b.negatives.shape == (len(b.users), 5)
            assert not positives[b.users[:, None], b.negatives].any()
            continue
        np.testing.assert_array_equal(b.rows[b.pair_rows], b.users)
        # every (row, candidate) that is a positive of the row's user is masked, only those
        hit = positives[b.rows[:, None], b.negatives[None, :]]
        masked = np.zeros_like(hit)
        masked[b.mask_rows, b.mask_cols] = True
        np.testing.assert_array_equal(hit, masked)
        assert (~masked).sum(1).min() > 0
        if loss == "in-batch":
            assert set(b.items) <= set(b.negatives)
        if loss == "full":
            np.testing.assert_array_equal(b.negatives, np.arange(30))
    loss_value = model.loss(move_to_device(batches[0], torch.device("cpu")))
    assert torch.isfinite(loss_value)


@pytest.mark.parametrize("balance", [False, True])
def test_softmax_loss_equals_reference(balance):
    """The shared-candidate softmax equals a per-pair cross-entropy with positives removed
    (each pair weighted by 1 / deg(user) with ``user_balance``); the item bias is added to
    every logit, and to the scores times the temperature."""
    ds = random_dataset(n_users=12, n_items=10, per_user=5, seed=6)
    positives = ds.csr().toarray() > 0
    torch.manual_seed(0)
    cfg = LightGCNConfig(dim=4, n_layers=1, loss="softmax", n_negatives=0, l2=0.0,
                         similarity="dot", temperature=0.5, user_balance=balance)
    model = LightGCN(cfg, ds)
    with torch.no_grad():
        model.item_bias.copy_(torch.randn(10))
    bias = model.item_bias.detach().double().numpy()
    batch = next(iter(model.batches(ds, 1000, np.random.default_rng(1))))
    got = model.loss(move_to_device(batch, torch.device("cpu")))
    users, items = model.propagate()
    s = (users @ items.T).detach().double().numpy() / 0.5 + bias[None, :]
    model.eval()
    np.testing.assert_allclose(model.score(torch.arange(12), ds).double().numpy(), 0.5 * s,
                               rtol=1e-5, atol=1e-6)
    ref = []
    for u, i in zip(batch.users, batch.items):
        others = s[u][~positives[u]]
        ref.append(np.logaddexp.reduce(np.r_[s[u, i], others]) - s[u, i])
    w = 1.0 / positives.sum(1)[batch.users] if balance else np.ones(len(ref))
    assert float(got) == pytest.approx(np.average(ref, weights=w), rel=1e-5)


# ------------------------------------------------------------------------------ GF-CF
def test_gfcf_equals_dense_reference():
    r = np.array(
        [[1, 1, 0, 0, 1],
         [0, 1, 1, 0, 0],
         [1, 0, 0, 1, 0],
         [0, 1, 1, 1, 1]], dtype=float,
    )  # fmt: skip
    pairs = [(u, i) for u, i in zip(*np.nonzero(r))]
    ds = _dataset(pairs, 4, 5)
    for svd in ("arpack", "randomized"):
        model = GFCF(GFCFConfig(alpha=0.3, k=2, svd=svd), ds)
        model.fit(ds)
        d_u, d_i = r.sum(1), r.sum(0)
        r_norm = r / np.sqrt(d_u)[:, None] / np.sqrt(d_i)[None, :]
        _, _, vt = np.linalg.svd(r_norm)
        v = vt[:2].T
        ideal = np.diag(1 / np.sqrt(d_i)) @ v @ v.T @ np.diag(np.sqrt(d_i))
        ref = r @ (r_norm.T @ r_norm) + 0.3 * r @ ideal
        got = model.score(torch.arange(4), ds).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_gfcf_uses_the_given_history():
    r = sp.random(12, 9, density=0.4, random_state=0, format="csr")
    pairs = list(zip(*r.nonzero()))
    ds = _dataset(pairs, 12, 9)
    model = GFCF(GFCFConfig(k=3), ds)
    model.fit(ds)
    less = ds.subset(ds.user != 0)
    assert not torch.allclose(model.score(torch.tensor([0]), ds), torch.zeros(1, 9))
    assert torch.allclose(model.score(torch.tensor([0]), less), torch.zeros(1, 9))


# ------------------------------------------------------------------------------ training, runs
@pytest.mark.parametrize("name", [*GRAPH_MODELS, "gf-cf"])
def test_each_model_trains_and_scores(tiny_world, tmp_path, name):
    sets = FAST if name == "gf-cf" else [*FAST, "n_negatives=32", "dim=16"]
    if name == "gf-cf":
        sets = ["k=16"]
    run = train_run(name, tiny_world, tmp_path / name, overrides=sets, progress=False,
                    console=_quiet())
    users = torch.arange(7)
    scores = run.model.score(users, run.train_data)
    assert scores.shape == (7, run.dataset.n_items)
    assert torch.isfinite(scores).all()
    assert 0.0 <= run.results["test"]["metrics"]["recall@20"] <= 1.0
    if name != "gf-cf":
        assert run.results["train"]["epochs_run"] == 2


@pytest.mark.parametrize("name", ["lightgcn", "gf-cf"])
def test_save_load_round_trip(tiny_world, tmp_path, name):
    sets = ["k=16"] if name == "gf-cf" else [*FAST, "n_negatives=32", "dim=16"]
    run = train_run(name, tiny_world, tmp_path / "run", overrides=sets, progress=False,
                    console=_quiet())
    loaded = load_run(tmp_path / "run")
    before = run.results["test"]["metrics"]
    after = loaded.evaluate("test")["metrics"]
    assert after == pytest.approx(before, abs=1e-9)
    users = torch.arange(5)
    torch.testing.assert_close(loaded.model.score(users, loaded.train_data),
                               run.model.score(users, run.train_data))


def test_edge_dropout_and_bpr_train(tiny_world, tmp_path):
    sets = [*FAST, "loss=bpr", "n_negatives=1", "similarity=dot", "temperature=1",
            "edge_dropout=0.2", "dim=16"]
    run = train_run("lightgcn", tiny_world, tmp_path / "r", overrides=sets, progress=False,
                    console=_quiet())
    assert np.isfinite(run.results["train"]["best_metric"])


def test_score_cache_is_invalidated_when_weights_change():
    ds = random_dataset(n_users=20, n_items=15, per_user=5, seed=5)
    model = LightGCN(LightGCNConfig(dim=8, n_layers=2, similarity="dot"), ds).eval()
    users = torch.arange(20)
    first = model.score(users, ds)
    assert torch.equal(first, model.score(users, ds))  # cached
    with torch.no_grad():
        model.embedding.weight.mul_(2.0)  # an in-place update, like an optimizer step
    torch.testing.assert_close(model.score(users, ds), 4 * first)
    with torch.no_grad():
        model.item_bias.fill_(1.0)
    model.load_state_dict({"embedding.weight": torch.randn(35, 8)})  # no bias: loads as zero
    assert torch.equal(model.item_bias.detach(), torch.zeros(15))
    assert not torch.allclose(model.score(users, ds), 4 * first)


def test_bad_options_are_rejected():
    ds = random_dataset(n_users=10, n_items=8, per_user=3)
    with pytest.raises(ValueError, match="loss"):
        LightGCN(LightGCNConfig(loss="hinge"), ds)
    with pytest.raises(ValueError, match="in_batch"):
        LightGCN(LightGCNConfig(loss="bpr", in_batch=True), ds)
    with pytest.raises(ValueError, match="svd"):
        GFCF(GFCFConfig(svd="qr"), ds)


def _quiet():
    from rich.console import Console

    return Console(quiet=True)
