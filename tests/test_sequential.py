"""Session models: sequences, attention, losses, training, explanations, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamrec.data.dataset import Dataset
from streamrec.data.sequences import build_training_sequences, last_items, pad_session
from streamrec.data.splits import make_split
from streamrec.models.sequential import first_positions, sampled_softmax_loss
from streamrec.models.transformer import (
    CausalSelfAttention,
    TransformerConfig,
    TransformerModel,
    attention_mask,
)

from conftest import random_dataset


def chain_dataset(n_users: int = 150, n_items: int = 30, seed: int = 0) -> Dataset:
    """Each user's history is a run i, i+1, i+2, ... (mod n_items) from a random start:
    the next item is a deterministic function of the previous one."""
    rng = np.random.default_rng(seed)
    users, items, ts, eng = [], [], [], []
    for u in range(n_users):
        n = int(rng.integers(6, 14))
        start = int(rng.integers(n_items))
        users += [u] * n
        items += [(start + j) % n_items for j in range(n)]
        ts += list(1000 * u + 60 * np.arange(n))
        eng += list(rng.integers(0, 5, size=n))
    return Dataset(
        name="chain",
        user_ids=[f"u{u}" for u in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        inter={"user": np.array(users), "item": np.array(items), "timestamp": np.array(ts),
               "engagement": np.array(eng, dtype=np.int8)},
        items={"category": (np.arange(n_items) % 4).astype(np.int16)},
    )


# --------------------------------------------------------------------------- sequences
def test_training_sequences_never_contain_held_out_items():
    ds = random_dataset(n_users=40, n_items=500, per_user=12, seed=3)  # no repeats per user
    split = make_split(ds, "loo")
    seqs = build_training_sequences(split.train(ds), max_len=4)
    held = {(int(u), int(i)) for u, i, a in zip(ds.user, ds.item, split.assign) if a > 0}
    # map every window back to its user through the training view's items
    train = split.train(ds)
    owner = {int(i): int(u) for u, i in zip(train.user, train.item)}
    for row_x, row_y in zip(seqs.items, seqs.targets):
        for x, y in zip(row_x, row_y):
            if x == 0:
                assert y == 0
                continue
            u = owner[int(x) - 1]
            assert (u, int(x) - 1) not in held and (u, int(y) - 1) not in held
    # every training event but the first of each user is a target exactly once
    n_targets = int((seqs.targets > 0).sum())
    assert n_targets == train.n_interactions - int((train.user_counts() > 0).sum())


def test_windows_and_last_items_layout():
    ds = chain_dataset(n_users=3, n_items=30)
    seqs = build_training_sequences(ds, max_len=4)
    assert seqs.items.shape[1] == 4
    # left padding, targets are the inputs shifted by one, and consecutive ids (chain)
    real = seqs.items > 0
    assert np.all((seqs.targets[real] - 1) == (seqs.items[real] % 30))
    assert np.all(real[:, -1])
    hist = last_items(ds, np.array([0, 1]), max_len=20)
    counts = ds.user_counts()
    assert (hist.items[0] > 0).sum() == min(20, counts[0])
    assert hist.engagement is not None and hist.category is not None
    # session cut: one gap in the middle of user 0 keeps only the events after it
    ts = ds.timestamp.copy()
    ts[(ds.user == 0) & (ds.timestamp >= 1000 * 0 + 180)] += 10_000
    cut = Dataset("c", ds.user_ids, ds.item_ids, {**ds.inter, "timestamp": ts}, ds.items)
    h = last_items(cut, np.array([0]), max_len=20, session_gap_minutes=30)
    assert (h.items[0] > 0).sum() == counts[0] - 3
    assert len(build_training_sequences(cut, 50, session_gap_minutes=30)) == 4
    s = pad_session(np.array([5, 6]), max_len=5)
    assert s.items.tolist() == [[0, 0, 0, 6, 7]]


# --------------------------------------------------------------------------- attention
def _attn_module(d: int = 16, h: int = 4) -> CausalSelfAttention:
    torch.manual_seed(0)
    att = CausalSelfAttention(TransformerConfig(d_model=d, n_heads=h, dropout=0.0))
    return att.eval()


def test_attention_matches_torch_sdpa_with_causal_and_padding_masks():
    att = _attn_module()
    x = torch.randn(3, 7, 16)
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, :3] = False  # left padding
    valid[2, :6] = False
    mask = attention_mask(valid)
    out, w = att(x, mask, need_weights=True)
    B, L, d, H = 3, 7, 16, 4

    def heads(t):
        return t.view(B, L, H, d // H).transpose(1, 2)

    q, k, v = heads(att.query(x)), heads(att.key(x)), heads(att.value(x))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = att.proj(ref.transpose(1, 2).reshape(B, L, d))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L))
    # no attention to the future nor to padding (except a padding query on itself)
    assert torch.all(w.triu(1) == 0)
    assert torch.all(w[1, :, 3:, :3] == 0)
    # without padding the mask is exactly the causal mask of sdpa's is_causal
    full = att(x, attention_mask(torch.ones(B, L, dtype=torch.bool)))[0]
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(full, att.proj(ref.transpose(1, 2).reshape(B, L, d)),
                               atol=1e-5, rtol=1e-5)


def _tiny_transformer(ds: Dataset, **kw) -> TransformerModel:
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=16, n_heads=2, max_len=8, dropout=0.0, **kw)
    return TransformerModel(cfg, ds).eval()


def test_causal_and_padding_invariance():
    ds = chain_dataset(n_users=5)
    model = _tiny_transformer(ds, positional="sinusoidal", use_category=True)
    x = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    h = model.encode(x)
    y = x.clone()
    y[0, 6:] = torch.tensor([20, 21])  # change later inputs
    torch.testing.assert_close(model.encode(y)[0, :6], h[0, :6])
    # padding does not affect real positions: the same items without the padding in front
    # (positions are counted from the end, so they get the same position embeddings)
    short = torch.tensor([[0, 0, 0, 0, 5, 6, 7, 8]])
    other_h = model.encode(torch.tensor([[5, 6, 7, 8]]))
    torch.testing.assert_close(model.encode(short)[0, 4:], other_h[0], atol=1e-5, rtol=1e-5)
    # changing what sits at a padded slot (id stays 0 but category differs) changes nothing
    cat = torch.zeros_like(short)
    cat[0, :4] = 3
    torch.testing.assert_close(model.encode(short, cat)[0, 4:], other_h[0], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- losses
def test_sampled_softmax_with_all_items_uniform_equals_full_softmax():
    torch.manual_seed(0)
    h, w = torch.randn(12, 8), torch.randn(30, 8)
    y = torch.randint(0, 30, (12,))
    full = F.cross_entropy(h @ w.T, y)
    every = torch.arange(30)
    uniform = torch.full((30,), -np.log(30.0))
    torch.testing.assert_close(sampled_softmax_loss(h, y, w, every, None), full)
    torch.testing.assert_close(sampled_softmax_loss(h, y, w, every, uniform), full)
    # log-Q correction: a constant shift per item cancels only when q is uniform
    q = torch.log_softmax(torch.randn(30), 0)
    assert not torch.allclose(sampled_softmax_loss(h, y, w, every, q), full)


def test_first_positions_hand_case():
    items = torch.tensor([[0, 0, 3, 1, 3], [2, 2, 1, 4, 0]])  # 1-based ids, 0 = padding
    first = first_positions(items, 4)  # [B, 4] for items 1..4; 5 = never
    assert first.tolist() == [[3, 5, 2, 5], [2, 0, 5, 3]]


@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_repeat_bias_logits_match_a_loop(loss):
    torch.manual_seed(0)
    ds = chain_dataset(n_items=12)
    cfg = TransformerConfig(d_model=16, max_len=6, dropout=0.0, loss=loss, proposal="uniform")
    model = TransformerModel(cfg, ds).eval()
    with torch.no_grad():
        model.repeat.fill_(1.7)
    items = torch.tensor([[0, 0, 3, 5, 3, 7], [2, 2, 9, 4, 1, 2]])
    targets = torch.tensor([[0, 3, 5, 3, 7, 8], [2, 9, 4, 1, 2, 6]])
    targets[0, 0] = 0  # a padded position has no target
    h = model.encode(items)
    w = model.output_weight()
    rows = []
    for b in range(2):
        for t in range(6):
            if targets[b, t] == 0:
                continue
            logit = h[b, t] @ w.T
            for i in set(items[b, : t + 1].tolist()) - {0}:
                logit[i - 1] = logit[i - 1] + 1.7
            rows.append(F.cross_entropy(logit[None], targets[b, t][None] - 1))
    expected = torch.stack(rows).mean()
    batch = {"items": items, "targets": targets}
    if loss == "sampled":  # every item once, uniform proposal: the full softmax again
        batch["negatives"] = torch.arange(12)
    torch.testing.assert_close(model.loss(batch), expected)
    # scoring from the last position adds the bias to every item of the sequence
    seqs = pad_session(np.array([3, 5, 3, 7]) - 1, 6, None, None)  # 0-based ids
    with torch.no_grad():
        scores = model.scores_of(seqs)[0]
        plain = model.encode(torch.as_tensor(seqs.items))[0, -1] @ w.T
    seen = torch.zeros(12, dtype=torch.bool)
    seen[[2, 4, 6]] = True
    torch.testing.assert_close(scores, plain + 1.7 * seen)


def repeat_dataset(n_users: int = 150, n_items: int = 30, seed: int = 0) -> Dataset:
    """Each user alternates between two items a, b, a, b, ... and ends on two new items c, d
    (held out by leave-last-out): in training every next item after the first two is a repeat.
    """
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        n = int(rng.integers(6, 14))
        a, b, c, d = rng.choice(n_items, size=4, replace=False)
        users += [u] * n
        items += [int(a) if j % 2 == 0 else int(b) for j in range(n - 2)] + [int(c), int(d)]
        ts += list(1000 * u + 60 * np.arange(n))
    return Dataset(
        name="repeat", user_ids=[f"u{u}" for u in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        inter={"user": np.array(users), "item": np.array(items), "timestamp": np.array(ts)},
    )


def test_repeat_bias_learns_the_amount_of_re_consumption():
    no_repeats = _train("transformer", chain_dataset()).model.repeat.item()
    repeats = _train("transformer", repeat_dataset()).model.repeat.item()
    assert no_repeats < -0.05 < 0.05 < repeats


# --------------------------------------------------------------------------- training
def _train(model: str, ds: Dataset, tmp_path=None, extra=()):
    from rich.console import Console

    from streamrec.run import train_run

    over = ["train.epochs=2", "train.batch_size=16", "train.lr=1e-2", "train.threads=1", *extra]
    if model != "pop":
        over += ["model.d_model=32", "model.max_len=16", "model.dropout=0.0"]
    return train_run(model, ds, tmp_path, overrides=over, ks=(10,), progress=False,
                     console=Console(quiet=True))


@pytest.mark.parametrize("name", ["transformer", "gru", "lstm"])
def test_models_learn_a_deterministic_chain(name):
    ds = chain_dataset()
    pop = _train("pop", ds).results["test"]["metrics"]["hit@10"]
    hit = _train(name, ds).results["test"]["metrics"]["hit@10"]
    assert hit > pop + 0.2
    if name in ("transformer", "gru"):
        assert hit > 0.8


def test_sampled_loss_and_side_embeddings_train():
    ds = chain_dataset()
    run = _train("transformer", ds, extra=["model.loss=sampled", "model.n_negatives=10",
                                           "model.proposal=pop", "model.use_category=true",
                                           "model.use_engagement=true"])
    assert run.model.use_category and run.model.use_engagement
    assert run.results["test"]["metrics"]["hit@10"] > 0.5


def test_explain_rows_sum_to_one_and_round_trip(tmp_path):
    from streamrec.models.base import Session
    from streamrec.run import load_run
    from streamrec.serve import recommend_session
    from streamrec.serve.explain import explain_user, plot_attention

    ds = chain_dataset()
    ds.save(tmp_path / "data")
    run = _train("transformer", tmp_path / "data", tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.evaluate("test", ks=(10,))["metrics"] == pytest.approx(
        run.results["test"]["metrics"]
    )
    user = loaded.dataset.user_ids[0]
    for rollout in (False, True):
        ex = explain_user(loaded, user, k=5, rollout=rollout)
        assert len(ex["recommendations"]) == 5
        assert sum(ex["attention"]) == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(np.sum(ex["matrix"], axis=1), 1.0, atol=1e-5)
        assert np.allclose(np.triu(ex["matrix"], 1), 0.0)
    png = plot_attention(ex, tmp_path / "att.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    # ad-hoc session: after i3, i4, i5 the chain continues with i6
    recs = recommend_session(loaded, ["i3", "i4", "i5"], k=3)
    assert recs[0]["item"] == "i6"
    scores = loaded.model.score_session(Session(np.array([3, 4, 5])))
    assert scores.shape == (ds.n_items,)


def test_auto_loss_is_the_full_softmax_on_small_catalogues_sampled_on_large_ones():
    from streamrec.models.sequential import FULL_SOFTMAX_ITEMS, resolve_loss

    assert TransformerConfig().loss == "auto"
    assert resolve_loss("auto", FULL_SOFTMAX_ITEMS) == "ce"
    assert resolve_loss("auto", FULL_SOFTMAX_ITEMS + 1) == "sampled"
    assert resolve_loss("ce", 10**6) == "ce" and resolve_loss("sampled", 10) == "sampled"
