"""The spectral filters ``chebycf`` and ``bspm``: Chebyshev interpolation against numpy, the
recurrence against the eigen-decomposition, the ODE solvers against the matrix exponential,
both models against dense references, their frequency responses, quality on the tiny world,
the memory guard, and the choice of ``k`` and the weights on validation (``k = "auto"``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.polynomial import chebyshev as C
from scipy.linalg import expm
from torch import Tensor

import streamrec.models.chebycf as cheby_mod
from streamrec.data.dataset import Dataset
from streamrec.data.splits import make_split
from streamrec.eval.evaluator import evaluate_ranking
from streamrec.models import spectral_auto
from streamrec.models.base import Validator
from streamrec.models.bspm import BSPM, BSPMConfig, integrate
from streamrec.models.chebycf import (
    ChebyCF,
    ChebyCFConfig,
    ItemGraph,
    ModelMemoryError,
    chebyshev_coefficients,
    chebyshev_filter,
    chebyshev_nodes,
    frequency_response,
    plateau,
)
from streamrec.models.gfcf import GFCF, GFCFConfig
from streamrec.models.pop import PopConfig, Popularity


def _dataset(r: np.ndarray) -> Dataset:
    users, items = np.nonzero(r)
    return Dataset(name="m", user_ids=[f"u{u}" for u in range(r.shape[0])],
                   item_ids=[f"i{i}" for i in range(r.shape[1])],
                   inter={"user": users, "item": items, "timestamp": np.arange(len(users))})


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, Dataset]:
    """A random binary 14 x 9 matrix where every user and item has an interaction."""
    rng = np.random.default_rng(3)
    r = (rng.random((14, 9)) < 0.35).astype(float)
    r[np.arange(14), np.arange(14) % 9] = 1.0
    return r, _dataset(r)


def _graph(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ``R̃``, ``P̃ = R̃ᵀR̃`` and the item degrees of ``r``."""
    d_u, d_i = r.sum(1), r.sum(0)
    r_norm = r / np.sqrt(d_u)[:, None] / np.sqrt(d_i)[None, :]
    return r_norm, r_norm.T @ r_norm, d_i


# ============================================================================ Chebyshev
@pytest.mark.parametrize("order", [1, 4, 8, 13])
def test_chebyshev_coefficients_equal_numpys_interpolant(order: int) -> None:
    np.testing.assert_allclose(chebyshev_nodes(order), C.chebpts1(order + 1), atol=1e-15)
    for f in (np.exp, lambda x: plateau(x, 1.5), lambda x: 1.0 / (2.0 + x)):
        ours = chebyshev_coefficients(f(chebyshev_nodes(order)))
        np.testing.assert_allclose(ours, C.chebinterpolate(f, order), atol=1e-12)
    # the interpolant takes the given values at the nodes
    values = np.random.default_rng(order).normal(size=order + 1)
    coeffs = chebyshev_coefficients(values)
    np.testing.assert_allclose(C.chebval(chebyshev_nodes(order), coeffs), values, atol=1e-12)


def test_recurrence_equals_the_eigendecomposition_filter(small) -> None:
    r, _ = small
    r_norm, p, _ = _graph(r)
    lam, u = np.linalg.eigh(p)
    assert lam.min() > -1e-12 and lam.max() < 1 + 1e-12  # the spectrum ChebyCF relies on
    x = np.random.default_rng(0).normal(size=(9, 3))
    for coeffs in (C.chebinterpolate(np.exp, 6), C.chebinterpolate(lambda t: plateau(t, 0.7), 8)):
        exact = u @ np.diag(C.chebval(1.0 - 2.0 * lam, coeffs)) @ u.T @ x
        np.testing.assert_allclose(chebyshev_filter(lambda v: p @ v, x, coeffs), exact,
                                   atol=1e-10)
        # the sparse operator (two products with R̃, float32) gives the same
        graph = ItemGraph(sp.csr_matrix(r_norm, dtype=np.float32))
        got = chebyshev_filter(graph, torch.as_tensor(x, dtype=torch.float32), coeffs)
        np.testing.assert_allclose(got.numpy(), exact, atol=1e-4)


def test_plateau_is_the_linear_filter_at_flatness_one(small) -> None:
    """φ = 1 interpolated at the nodes is the line λ: ChebyCF without the ideal term and the
    degree normalisation is GF-CF's linear filter r P̃."""
    r, ds = small
    _, p, _ = _graph(r)
    model = ChebyCF(ChebyCFConfig(order=5, flatness=1.0, target="nodes", alpha=0.0, beta=0.0),
                    ds)
    model.fit(ds)
    np.testing.assert_allclose(model.score(torch.arange(14), ds).numpy(), r @ p, atol=1e-5)
    lam = np.linspace(0, 1, 11)
    np.testing.assert_allclose(model.frequency_response(lam), lam, atol=1e-12)


@pytest.mark.parametrize("target", ["extrema", "nodes"])
def test_chebycf_equals_dense_reference(small, target: str) -> None:
    r, ds = small
    r_norm, p, d_i = _graph(r)
    cfg = ChebyCFConfig(order=8, flatness=1.5, target=target, alpha=0.2, k=3, beta=0.4,
                        svd="dense")
    model = ChebyCF(cfg, ds)
    model.fit(ds)
    lam, u = np.linalg.eigh(p)
    h = C.chebval(1.0 - 2.0 * lam, model.coeffs)
    _, _, vt = np.linalg.svd(r_norm)
    ideal = vt[:3].T @ vt[:3]
    filt = np.diag(d_i**-0.4) @ (u @ np.diag(h) @ u.T + 0.2 * ideal) @ np.diag(d_i**0.4)
    got = model.score(torch.arange(14), ds).numpy()
    np.testing.assert_allclose(got, r @ filt, atol=1e-4)
    # the response is the filter's exact spectrum
    want = np.sort(model.frequency_response(lam))
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(filt).real), want, atol=1e-6)
    if target == "extrema":  # the authors' targets: the plateau at the extrema, given to nodes
        extrema = np.cos((8 - np.arange(9)) * np.pi / 8)
        np.testing.assert_allclose(C.chebval(chebyshev_nodes(8), model.coeffs),
                                   plateau(extrema, 1.5), atol=1e-12)


# ============================================================================ BSPM
def test_euler_and_rk4_blur_converge_to_the_matrix_exponential(small) -> None:
    r, _ = small
    _, p, _ = _graph(r)
    lap = np.eye(9) - p
    x = np.random.default_rng(1).normal(size=(9, 4))
    exact = expm(-1.5 * lap) @ x

    def blur(v: np.ndarray) -> np.ndarray:
        return p @ v - v

    coarse = integrate(blur, x, 1.5, 100, "euler")
    fine = integrate(blur, x, 1.5, 4000, "euler")
    err = np.abs(fine - exact).max()
    assert err < 2e-4 * np.abs(exact).max()
    assert err < np.abs(coarse - exact).max() / 20  # first order: 40x the steps, 40x smaller
    np.testing.assert_allclose(integrate(blur, x, 1.5, 20, "rk4"), exact, atol=1e-7)
    # the states passed to on_step are those of the fixed grid
    seen: list[np.ndarray] = []
    integrate(blur, x, 1.5, 3, "rk4", seen.append)
    assert len(seen) == 3
    np.testing.assert_allclose(seen[0], integrate(blur, x, 0.5, 1, "rk4"))
    with pytest.raises(ValueError, match="rk4"):
        integrate(blur, x, 1.0, 1, "heun")


def test_bspm_equals_its_closed_form_with_the_papers_solvers(small) -> None:
    """1 Euler blur step to T_b = 1 is r P̃; 1 Euler ideal step is GF-CF's ideal filter; one RK4
    sharpening step of T_s multiplies by the degree-4 Taylor polynomial of e^{−T_s P̃}."""
    r, ds = small
    r_norm, p, d_i = _graph(r)
    model = BSPM(BSPMConfig(k=3, svd="dense"), ds)  # the paper's Gowalla solvers, k = 3
    model.fit(ds)
    _, _, vt = np.linalg.svd(r_norm)
    ideal = np.diag(d_i**-0.5) @ vt[:3].T @ vt[:3] @ np.diag(d_i**0.5)
    z = -2.5 * p
    step = np.eye(9) + z + z @ z / 2 + z @ z @ z / 6 + z @ z @ z @ z / 24
    want = (r @ p + 0.2 * r @ ideal) @ step
    np.testing.assert_allclose(model.score(torch.arange(14), ds).numpy(), want, atol=1e-4)
    late = BSPM(BSPMConfig(k=3, svd="dense", merge="late"), ds)
    late.fit(ds)
    np.testing.assert_allclose(late.score(torch.arange(14), ds).numpy(),
                               r @ p @ step + 0.2 * r @ ideal, atol=1e-4)


def test_bspm_response_is_the_spectrum_without_the_ideal_term(small) -> None:
    r, ds = small
    _, p, _ = _graph(r)
    cfg = BSPMConfig(beta=0.0, blur_steps=3, blur_solver="rk4", sharpen_time=0.7,
                     sharpen_steps=2, combine="mean")
    model = BSPM(cfg, ds)
    model.fit(ds)
    lam, u = np.linalg.eigh(p)
    filt = u @ np.diag(model.frequency_response(lam)) @ u.T
    np.testing.assert_allclose(model.score(torch.arange(14), ds).numpy(), r @ filt, atol=1e-5)
    # many small steps: blur then sharpen for the same time is the identity (e^{-L} e^{-P}
    # = e^{-I}: a constant gain, every frequency alike)
    exact = BSPM(BSPMConfig(beta=0.0, blur_steps=200, blur_solver="rk4", sharpen_time=1.0,
                            sharpen_steps=200), ds)
    h = exact.frequency_response(np.linspace(0, 1, 5))
    np.testing.assert_allclose(h, np.exp(-1.0), rtol=1e-9)


def test_frequency_responses_of_the_three_filters(small) -> None:
    _, ds = small
    models = [GFCF(GFCFConfig(k=3), ds), ChebyCF(ChebyCFConfig(k=3), ds),
              BSPM(BSPMConfig(k=3), ds)]
    for model in models:
        model.fit(ds)
        lam, h = frequency_response(model, n_points=51)
        assert lam.shape == h.shape == (51,) and np.isfinite(h).all()
        assert lam[0] == 0.0 and lam[-1] == 1.0
        assert h[-1] > h[0]  # low-pass: smooth signals (λ near 1) pass more than rough ones
    with pytest.raises(TypeError, match="pop"):
        frequency_response(Popularity(PopConfig(), ds))


# ============================================================================ quality
def test_both_models_rank_the_tiny_world_better_than_popularity(tiny) -> None:
    split = make_split(tiny, "loo")
    train = split.train(tiny)
    ndcg = {}
    for model in (Popularity(PopConfig(), train), ChebyCF(ChebyCFConfig(k=16), train),
                  BSPM(BSPMConfig(k=16), train)):
        model.fit(train)
        res = evaluate_ranking(model.eval(), tiny, split, "test", (20,), metrics=("ndcg",))
        ndcg[model.name] = res["metrics"]["ndcg@20"]
    assert ndcg["chebycf"] > 1.1 * ndcg["pop"], ndcg
    assert ndcg["bspm"] > 1.1 * ndcg["pop"], ndcg


def test_scores_are_the_same_in_any_batching(small) -> None:
    _, ds = small
    for cls, cfg in ((ChebyCF, ChebyCFConfig(k=3, batch_users=4, graph_batch=3)),
                     (BSPM, BSPMConfig(k=3, batch_users=4, graph_batch=3)),
                     (BSPM, BSPMConfig(k=3, batch_users=5, graph_batch=2, combine="mean",
                                       merge="late", blur_steps=2))):
        whole = {**cfg.to_dict(), "batch_users": 1024, "graph_batch": 1024}
        a, b = cls(cfg, ds), cls(type(cfg)(**whole), ds)
        a.fit(ds)
        b.load_state_dict(a.state_dict())
        users = torch.tensor([5, 0, 13, 2, 7, 9, 1])
        torch.testing.assert_close(a.score(users, ds), b.score(users, ds))


# ============================================================================ memory
def test_memory_guard_refuses_before_allocating(small, monkeypatch) -> None:
    _, ds = small
    assert cheby_mod.available_memory() > 0
    monkeypatch.setattr(cheby_mod, "available_memory", lambda: 20_000)

    def no_allocation(*args: object, **kwargs: object) -> None:
        raise AssertionError("the graph was built before the memory check")

    monkeypatch.setattr(cheby_mod, "normalized_rating_matrix", no_allocation)
    monkeypatch.setattr("streamrec.models.bspm.normalized_rating_matrix", no_allocation)
    for cls, cfg in ((ChebyCF, ChebyCFConfig()), (BSPM, BSPMConfig())):
        with pytest.raises(ModelMemoryError) as err:
            cls(cfg, ds)
        msg = str(err.value)
        assert isinstance(err.value, ValueError) and "\n" not in msg
        assert msg.startswith(cls.name) and "batch_users" in msg and "0.0 MiB" in msg
    monkeypatch.undo()
    # a real machine refuses scoring blocks of a million users x 300k items (8 TB), unallocated
    big = Dataset(name="big", user_ids=["u"], item_ids=[str(i) for i in range(300_000)],
                  inter={"user": np.array([0]), "item": np.array([7]),
                         "timestamp": np.array([0])})
    with pytest.raises(ModelMemoryError, match="300,000 items"):
        ChebyCF(ChebyCFConfig(batch_users=1_000_000), big)


# ============================================================================ k = "auto"
def _known_best(prefer: dict[str, float], seen: list[dict] | None = None):
    """A validator whose NDCG@20 is highest at the setting ``prefer`` (k and weights), and
    that records what it was asked (the model's setting, max_users)."""

    def validate(model, max_users=None):  # noqa: ANN001, ANN202
        setting = {"k": model.k, **{n: float(getattr(model, n)) for n in model.WEIGHTS}}
        if seen is not None:
            seen.append({**setting, "max_users": max_users})
        return {"ndcg@20": -sum(abs(np.log2(setting[n] / v)) for n, v in prefer.items())}

    return validate


def _small_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule and the grid scaled down to the 14 x 9 matrix (48 interactions): rule k = 4,
    grid 1, 2, 4, 8."""
    monkeypatch.setattr(spectral_auto, "MIN_K", 1)
    monkeypatch.setattr(spectral_auto, "INTERACTIONS_PER_K", 10)


def test_the_size_rule_and_the_grid() -> None:
    # the evidence the rule was read from (training interactions, users, items)
    assert spectral_auto.rule_k(98_114, 943, 1682, 512) == 64  # MovieLens-100k
    assert spectral_auto.rule_k(42_446, 8442, 4385, 512) == 32  # Amazon Scientific
    assert spectral_auto.rule_k(376_903, 10_000, 5000, 512) == 256  # the m0 world
    assert spectral_auto.rule_k(810_128, 29_858, 40_981, 512) == 512  # Gowalla: the papers'
    assert spectral_auto.rule_k(810_128, 29_858, 40_981, 448) == 448
    assert spectral_auto.rule_k(100, 5, 9, 512) == 4  # at least 16, but below min(shape)
    assert spectral_auto.k_grid(64, 943, 1682) == [16, 32, 64, 128]
    assert spectral_auto.k_grid(512, 29_858, 40_981) == [128, 256, 512, 1024]
    assert spectral_auto.k_grid(64, 943, 100) == [16, 32, 64, 99]


@pytest.mark.parametrize("cls, cfg, prefer", [
    (ChebyCF, ChebyCFConfig(svd="dense"), {"k": 2, "beta": 0.3, "alpha": 1.0}),
    (BSPM, BSPMConfig(svd="dense"), {"k": 4, "sharpen_time": 1.5, "beta": 0.5}),
])
def test_auto_picks_the_best_setting_of_the_grid(small, monkeypatch, cls, cfg, prefer) -> None:
    _, ds = small
    _small_grid(monkeypatch)
    model = cls(cfg, ds)
    ks, weights = model.search_space()
    assert ks == [1, 2, 4, 8]
    seen: list[dict] = []
    model.fit(ds, Validator(_known_best(prefer, seen)))
    assert model.k == prefer["k"] and model.vt.shape == (prefer["k"], 9)
    for name, value in prefer.items():
        if name != "k":
            assert float(getattr(model, name)) == value
    assert len(seen) == 4 * np.prod([len(v) for v in weights.values()])  # the whole grid
    assert {s["max_users"] for s in seen} == {cfg.valid_users}  # a bounded sample
    report = model.fit_report()
    assert report["selection"] == "validation" and report["k"] == prefer["k"]
    assert report["valid"] == 0.0 and len(report["tried"]) == len(seen)
    # the basis kept is the full SVD's top k: the same as an SVD asked for k alone
    fixed = cls(type(cfg)(**{**cfg.to_dict(), **prefer}), ds)
    fixed.fit(ds)
    torch.testing.assert_close(model.singular_values, fixed.singular_values)
    torch.testing.assert_close(model.score(torch.arange(14), ds), fixed.score(torch.arange(14), ds),
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls, cfg", [
    (ChebyCF, ChebyCFConfig(svd="dense", batch_users=5, graph_batch=3)),
    (BSPM, BSPMConfig(svd="dense", batch_users=5, graph_batch=3)),
    # the ideal process not at its fixed point in one step (q0 != 0), averaged, merged late
    (BSPM, BSPMConfig(svd="dense", ideal_steps=2, ideal_time=0.7, combine="mean")),
    (BSPM, BSPMConfig(svd="dense", merge="late", ideal_solver="rk4", blur_steps=2)),
])
def test_the_searchs_cached_scores_equal_the_models(small, monkeypatch, cls, cfg) -> None:
    """Every setting the search scores (from its cache: the k-free part once, the ideal term
    by linearity) equals the model built with that setting and scored the ordinary way."""
    _, ds = small
    _small_grid(monkeypatch)
    users = torch.tensor([3, 0, 13, 7, 9, 1, 11])
    got: list[tuple[dict, Tensor]] = []

    def validate(model, max_users=None):  # noqa: ANN001, ANN202
        setting = {"k": model.k, **{n: float(getattr(model, n)) for n in model.WEIGHTS}}
        got.append((setting, model.score(users, ds)))
        return {"ndcg@20": float(len(got) == 5)}

    model = cls(cfg, ds)
    model.fit(ds, validate)
    assert len(got) > 10
    for setting, scores in got[:: max(1, len(got) // 12)] + got[4:5]:
        fixed = cls(type(cfg)(**{**cfg.to_dict(), **setting}), ds)
        fixed.fit(ds)
        torch.testing.assert_close(scores, fixed.score(users, ds), atol=2e-5, rtol=1e-4)
    assert model.fit_report()["k"] == got[4][0]["k"]  # the best one was kept


def test_without_a_validator_the_size_rule_and_the_papers_weights(small, tiny) -> None:
    split = make_split(tiny, "loo")
    train = split.train(tiny)
    for cls, paper in ((ChebyCF, {"alpha": 0.2}), (BSPM, {"beta": 0.2, "sharpen_time": 2.5})):
        model = cls(cls.Config(), train)
        model.fit(train)
        rule = spectral_auto.rule_k(train.n_interactions, train.n_users, train.n_items,
                                    cls.PAPER_K)
        assert model.k == rule == 16
        assert {n: float(getattr(model, n)) for n in paper} == paper
        assert model.fit_report()["selection"].startswith("rule")
    # a fixed k and weights are kept even with a validator: nothing to search
    _, ds = small
    model = ChebyCF(ChebyCFConfig(k=3, alpha=0.3, beta=0.4, svd="dense"), ds)
    model.fit(ds, _known_best({"k": 1}))
    assert model.k == 3 and float(model.alpha) == 0.3
    assert model.fit_report()["selection"] == "fixed"


def test_chosen_values_survive_save_and_load(tiny_dir, tmp_path) -> None:
    from streamrec.run import load_run, train_run

    run = train_run("bspm", tiny_dir, tmp_path / "bspm", overrides=["valid_users=100"],
                    progress=False)
    fit = run.results["train"]["fit"]
    assert fit["selection"] == "validation" and fit["valid_users_max"] == 100
    assert fit["k"] in fit["grid"]["k"] and fit["beta"] in fit["grid"]["beta"]
    chosen = {"k": run.model.k, "beta": float(run.model.beta),
              "sharpen_time": float(run.model.sharpen_time)}
    assert chosen == {n: fit[n] for n in chosen}
    loaded = load_run(run.path)
    assert {"k": loaded.model.k, "beta": float(loaded.model.beta),
            "sharpen_time": float(loaded.model.sharpen_time)} == chosen
    users = torch.arange(20)
    history = run.split.history(run.dataset, "test")
    torch.testing.assert_close(loaded.model.score(users, history),
                               run.model.score(users, history))
    assert loaded.evaluate("test")["metrics"] == pytest.approx(run.results["test"]["metrics"])
