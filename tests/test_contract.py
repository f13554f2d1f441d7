"""The model contract, checked for every registered model (in the style of scikit-learn's
``parametrize_with_checks``).

The models come from the registry, so a model added later is covered without editing this
file; ``FAST`` only shrinks known models so the whole registry trains in seconds (a new model
runs with its defaults and one epoch).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.common import OptionsError
from streamrec.models import available_models, get_model_class
from streamrec.models.base import (
    CapabilityError,
    ClickModel,
    Explainer,
    ItemEmbedder,
    Model,
    Recommender,
    SessionRecommender,
    VectorRetriever,
)
from streamrec.run import load_run, train_run
from streamrec.serve.embeddings import export_embeddings, item_matrix, load_embeddings
from streamrec.serve.embeddings import similar_items as similar

#: smaller settings of known models (speed only; every model also gets ``epochs=1``)
FAST: dict[str, list[str]] = {
    "mult-vae": ["hidden=32", "latent=8"],
    "mult-dae": ["hidden=32", "latent=8"],
    "mf": ["dim=16"],
    "mlp": ["hidden=[16]"],
    "mlp-numpy": ["hidden=[16]", "fit_epochs=1", "fit_progress=false"],
    "lightgcn": ["dim=16", "batch_size=1024"],
    "gcn": ["dim=16", "batch_size=1024"],
    "graphsage": ["dim=16", "batch_size=1024"],
    "gat": ["dim=16", "batch_size=1024"],
    "gf-cf": ["k=16"],
    "chebycf": ["k=16"],
    "bspm": ["k=16"],
    "cnn-text": ["dim=16", "n_filters=8", "token_dim=16"],
    "tfidf-svd": ["dim=16"],
    "gru": ["d_model=16", "hidden=16"],
    "lstm": ["d_model=16", "hidden=16"],
    "transformer": ["d_model=16", "n_heads=2"],
    "two-tower": ["text_encoder=cnn", "dim=16", "hidden=32", "id_dim=8", "category_dim=4",
                  "cnn_filters=8", "cnn_token_dim=16", "history_len=8"],
    "diffrec": ["hidden=[16]"],
    "l-diffrec": ["hidden=[16]", "latent_dim=8", "svd_dim=8"],
    "cfgan": ["g_hidden=[16]", "d_hidden=[8]", "d_steps=1", "g_steps=1"],
}
MODELS = available_models()


def _cls_or_skip(name: str) -> type[Model]:
    try:
        cls = get_model_class(name)
    except ImportError as e:
        pytest.skip(str(e))
    from streamrec.models import _importable

    for package in cls.required_packages(cls.Config()):
        if not _importable(package):
            pytest.skip(f"{name} needs {package}")
    return cls


@pytest.fixture(scope="module")
def runs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One small trained run per model, built on first use."""
    root = tmp_path_factory.mktemp("contract")
    cache: dict = {}

    def get(name: str):  # noqa: ANN202
        if name not in cache:
            _cls_or_skip(name)
            overrides = [*FAST.get(name, []), "train.epochs=1"]
            cache[name] = train_run(name, tiny_dir, root / name, overrides=overrides,
                                    progress=False)
        return cache[name]

    return get


@pytest.mark.parametrize("name", MODELS)
def test_options_round_trip_and_are_checked(name: str) -> None:
    cls = _cls_or_skip(name)
    assert cls.name == name
    assert issubclass(cls, Recommender) != issubclass(cls, ClickModel)  # exactly one task
    cfg = cls.Config()
    again = cls.Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(OptionsError, match="unknown"):
        cls.Config.from_dict({**cfg.to_dict(), "no_such_option": 1})
    # a wrong type is named, never a traceback deeper down
    first = dataclasses.fields(cfg)[0].name
    with pytest.raises(OptionsError, match=first):
        cls.Config.from_dict({**cfg.to_dict(), first: object()})


@pytest.mark.parametrize("name", MODELS)
def test_batches_loss_and_scores_have_their_shapes(name: str, tiny) -> None:
    cls = _cls_or_skip(name)
    from streamrec.data.splits import make_split
    from streamrec.train.config import build_configs

    split = make_split(tiny, "loo")
    train = split.train(tiny)
    model_cfg, train_cfg, _ = build_configs(name, overrides=FAST.get(name, []))
    torch.manual_seed(0)
    model = cls(model_cfg, train)
    if cls.trainable:
        from streamrec.train import move_to_device

        assert model.num_batches(train, 64) >= 1
        batch = next(iter(model.batches(train, 64, np.random.default_rng(0))))
        model.train()
        loss = model.loss(move_to_device(batch, model.device))
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    else:
        model.fit(train)
    model.eval()
    users = torch.arange(5)
    with torch.no_grad():
        if isinstance(model, Recommender):
            scores = model.score(users, split.history(tiny, "test"))
            assert scores.shape == (5, tiny.n_items) and scores.dtype.is_floating_point
            assert not torch.isnan(scores).any()
        else:
            imp = tiny.impressions
            logits = model.click_logits(torch.as_tensor(imp["user"][:5], dtype=torch.long),
                                        torch.as_tensor(imp["item"][:5], dtype=torch.long),
                                        torch.as_tensor(imp["features"][:5]))
            assert logits.shape == (5,) and torch.isfinite(logits).all()


def _scores(run, users: np.ndarray) -> torch.Tensor:
    m = run.model
    with torch.no_grad():
        if isinstance(m, Recommender):
            return m.score(torch.as_tensor(users), run.split.history(run.dataset, "test"))
        imp = run.dataset.impressions
        return m.click_logits(torch.as_tensor(imp["user"][:50], dtype=torch.long),
                              torch.as_tensor(imp["item"][:50], dtype=torch.long),
                              torch.as_tensor(imp["features"][:50]))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip_gives_identical_scores(name: str, runs) -> None:
    run = runs(name)
    loaded = load_run(run.path)
    assert type(loaded.model) is type(run.model)
    users = np.arange(8)
    assert torch.equal(_scores(loaded, users), _scores(run, users))
    assert loaded.finished and loaded.progress_note() is None
    again = loaded.evaluate("test")["metrics"]
    saved = run.results["test"]["metrics"]
    assert again == pytest.approx(saved, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_item_embeddings_are_aligned_with_the_item_ids_or_refused(
    name: str, runs, tmp_path: Path
) -> None:
    run = runs(name)
    model, ds = run.model, run.dataset
    runner = CliRunner()
    if not isinstance(model, ItemEmbedder):
        with pytest.raises(CapabilityError) as err:
            similar(run, ds.item_ids[0], k=3)
        assert "\n" not in str(err.value) and name in str(err.value)
        res = runner.invoke(app, ["embed", str(run.path), "--out", str(tmp_path / "e.npy")])
        assert res.exit_code == 1
        assert res.output.startswith("error:") and res.output.count("\n") == 1
        return
    emb = item_matrix(model)
    assert emb.shape[0] == ds.n_items and emb.ndim == 2 and np.isfinite(emb).all()
    ids, exported = load_embeddings(export_embeddings(run, tmp_path / "e.parquet"))
    assert ids == [str(i) for i in ds.item_ids] and np.allclose(exported, emb)
    rows = similar(run, ds.item_ids[7], k=5)
    assert len(rows) == 5 and ds.item_ids[7] not in {r["item"] for r in rows}
    res = runner.invoke(app, ["similar", str(run.path), "--item", str(ds.item_ids[7]), "-k",
                              "3", "--json"])
    assert res.exit_code == 0, res.output
    # Row i is item i: the scores are made of these rows (checked where the model says how)
    users = np.arange(6)
    history = run.split.history(ds, "test")
    with torch.no_grad():
        if isinstance(model, VectorRetriever):
            u = model.user_embeddings(torch.as_tensor(users), history)
            want = u @ model.item_embeddings().T
            assert torch.allclose(model.score(torch.as_tensor(users), history), want, atol=1e-5)
        if isinstance(model, SessionRecommender):
            # score = E h (+ a bias on the session's own items): the other items' scores lie in
            # the span of E's rows, which a shifted table (e.g. the padding row) breaks
            session = model.recent_session(int(users[0]), history)
            scores = model.score_session(session).double().numpy()
            others = np.setdiff1d(np.arange(ds.n_items), session.items)
            e = emb.astype(np.float64)[others]
            h, *_ = np.linalg.lstsq(e, scores[others], rcond=None)
            assert np.abs(e @ h - scores[others]).max() < 1e-3 * (1 + np.abs(scores).max())
            shifted = np.roll(emb.astype(np.float64), 1, axis=0)[others]
            h2, *_ = np.linalg.lstsq(shifted, scores[others], rcond=None)
            assert np.abs(shifted @ h2 - scores[others]).max() > 1e-2


@pytest.mark.parametrize("name", MODELS)
def test_sessions_and_explanations(name: str, runs) -> None:
    cls = _cls_or_skip(name)
    if not issubclass(cls, SessionRecommender):
        pytest.skip(f"{name} is not a session model")
    run = runs(name)
    model, ds = run.model, run.dataset
    history = run.split.history(ds, "test")
    sessions = []
    for u in (0, 3):
        session = model.recent_session(u, history)
        by_user = model.score(torch.tensor([u]), history)[0]
        assert torch.allclose(model.score_session(session), by_user, atol=1e-5)
        # the session the model reads from the raw events is the one it reads from the history
        mine = history.time_order()[history.user[history.time_order()] == u]
        eng = history.inter["engagement"][mine] if "engagement" in history.inter else None
        again = model.session_from_events(history.item[mine], history.timestamp[mine], eng)
        assert np.array_equal(again.items, session.items)
        sessions.append(session)
    batch = model.score_sessions(sessions)
    assert torch.allclose(batch, torch.stack([model.score_session(s) for s in sessions]),
                          atol=1e-5)
    if issubclass(cls, Explainer):
        session = model.recent_session(0, history)
        scores, attention = model.explain_session(session)
        n = len(session.items)
        assert scores.shape == (ds.n_items,) and attention.shape[-2:] == (n, n)
        assert torch.allclose(attention.sum(-1), torch.ones(attention.shape[:-1]), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_mixed_precision_loss_matches_float32(name: str, tiny) -> None:
    """``precision=bf16`` (the loop's ``torch.autocast``) works for every trainable model: the
    loss is finite and within a few percent of the float32 loss of the same weights and
    randomness, and the gradients reach the float32 weights."""
    cls = _cls_or_skip(name)
    if not cls.trainable:
        pytest.skip(f"{name} is closed-form")
    from streamrec.data.splits import make_split
    from streamrec.train import move_to_device
    from streamrec.train.config import build_configs

    train = make_split(tiny, "loo").train(tiny)
    model_cfg, _, _ = build_configs(name, overrides=FAST.get(name, []))
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)  # the same initial weights, batch and randomness twice
        m = cls(model_cfg, train)
        m.train()
        batch = next(iter(m.batches(train, 64, np.random.default_rng(0))))
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = m.loss(move_to_device(batch, m.device)).float()
        loss.backward()
        losses[precision] = float(loss.detach())
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all()
                             for g in grads), precision
    assert math.isfinite(losses["bf16"])
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05, abs=1e-3), losses
