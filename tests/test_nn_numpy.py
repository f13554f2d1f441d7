"""Tests for the from-scratch numpy MLP library (streamrec.nn_numpy).

1. finite-difference gradient checks (float64) for every layer and the loss,
2. twin check against the equivalent torch network (loss and all gradients),
3. identical loss trajectories for SGD / Adam / AdamW against torch.optim,
4. initialiser statistics and agreement with torch.nn.init,
5. BatchNorm running statistics and eval mode against torch,
6. SiLU (hand-written backward against torch autograd), torch's default Linear init and the
   learning-rate schedules against the torch training loop's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamrec.nn_numpy import (
    SGD,
    Adam,
    AdamW,
    BatchNorm1d,
    BCEWithLogitsLoss,
    Dropout,
    Linear,
    LRScheduler,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
    bce_with_logits,
    bce_with_logits_backward,
    build_mlp,
    from_torch,
    iterate_minibatches,
    to_torch,
)
from streamrec.nn_numpy import init as nninit

F64 = np.float64


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_torch():
    """Tiny float64 problems: torch's intra-op thread pool only adds overhead here (and can
    fight numpy's BLAS threads for the cores), so run torch single-threaded in this module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- helpers


def numerical_grad(f, arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``f()`` w.r.t. ``arr`` (perturbed in place)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        f_plus = f()
        arr[idx] = old - eps
        f_minus = f()
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in +-[0.1, 2] so ReLU kinks are never within a finite-difference step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def check_layer_grads(layer, x: np.ndarray, rng: np.random.Generator, before_forward=None):
    """Gradient check of ``sum(layer(x) * R)`` w.r.t. the input and every parameter."""
    r = rng.standard_normal(layer.forward(x.copy(), True).shape)

    def objective() -> float:
        if before_forward is not None:
            before_forward()
        return float(np.sum(layer.forward(x, True) * r))

    if before_forward is not None:
        before_forward()
    layer.zero_grad()
    layer.forward(x, True)
    dx = layer.backward(r.copy())
    assert rel_error(dx, numerical_grad(objective, x)) < 1e-6
    for name, p in layer.named_parameters():
        assert rel_error(p.grad, numerical_grad(objective, p.data)) < 1e-6, name


def torch_grads(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}


# --------------------------------------------------------------------------- 1. gradient checks


def test_gradcheck_linear() -> None:
    rng = np.random.default_rng(0)
    layer = Linear(5, 4, init="xavier_normal", rng=rng, dtype=F64)
    layer.bias.data[:] = rng.standard_normal(4)
    check_layer_grads(layer, rng.standard_normal((7, 5)), rng)


def test_gradcheck_relu_and_sigmoid() -> None:
    rng = np.random.default_rng(1)
    check_layer_grads(ReLU(), away_from_zero(rng, (6, 5)), rng)
    check_layer_grads(Sigmoid(), rng.standard_normal((6, 5)) * 3.0, rng)


def test_relu_inplace_matches_out_of_place() -> None:
    rng = np.random.default_rng(2)
    x = away_from_zero(rng, (4, 3))
    g = rng.standard_normal((4, 3))
    ref, inp = ReLU(), ReLU(inplace=True)
    y_ref = ref.forward(x.copy(), True)
    y_inp = inp.forward(x.copy(), True)
    np.testing.assert_array_equal(y_ref, y_inp)
    np.testing.assert_array_equal(ref.backward(g.copy()), inp.backward(g.copy()))


def test_gradcheck_dropout_fixed_mask() -> None:
    rng = np.random.default_rng(3)
    layer = Dropout(0.4)

    def reset_mask() -> None:  # same seed -> same mask on every forward
        layer.rng = np.random.default_rng(123)

    x = rng.standard_normal((8, 6))
    check_layer_grads(layer, x, rng, before_forward=reset_mask)
    reset_mask()
    y = layer.forward(x, True)
    kept = y != 0
    assert 0 < kept.sum() < x.size
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)
    assert layer.forward(x, False) is x  # identity in eval mode


def test_dropout_keep_rate_and_float32() -> None:
    layer = Dropout(0.25, rng=0)
    x = np.ones((400, 500), dtype=np.float32)
    y = layer.forward(x, True)
    assert y.dtype == np.float32
    assert abs((y != 0).mean() - 0.75) < 0.01
    assert abs(y.mean() - 1.0) < 0.02  # inverted dropout preserves the expectation
    assert np.all(Dropout(1.0).forward(x, True) == 0)


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_batchnorm(training: bool) -> None:
    rng = np.random.default_rng(4)
    bn = BatchNorm1d(5, dtype=F64)
    bn.weight.data[:] = rng.uniform(0.5, 2.0, 5)
    bn.bias.data[:] = rng.standard_normal(5)
    bn.running_mean[:] = rng.standard_normal(5)
    bn.running_var[:] = rng.uniform(0.5, 2.0, 5)
    x = rng.standard_normal((9, 5)) * 2.0 + 1.0
    r = rng.standard_normal((9, 5))

    def objective() -> float:
        return float(np.sum(bn.forward(x, training) * r))

    bn.zero_grad()
    bn.forward(x, training)
    dx = bn.backward(r.copy())
    assert rel_error(dx, numerical_grad(objective, x)) < 1e-6
    assert rel_error(bn.weight.grad, numerical_grad(objective, bn.weight.data)) < 1e-6
    assert rel_error(bn.bias.grad, numerical_grad(objective, bn.bias.data)) < 1e-6


def test_gradcheck_loss() -> None:
    rng = np.random.default_rng(5)
    z = rng.standard_normal((10, 1)) * 3.0
    for y in (rng.integers(0, 2, (10, 1)).astype(F64), rng.uniform(0, 1, (10, 1))):
        num = numerical_grad(lambda y=y: bce_with_logits(z, y), z)
        assert rel_error(bce_with_logits_backward(z, y), num) < 1e-6
        loss = BCEWithLogitsLoss()
        loss.forward(z, y.ravel())  # targets [N] are reshaped to the logits' [N, 1]
        assert rel_error(loss.backward(), num) < 1e-6


def test_loss_is_stable_and_matches_torch() -> None:
    z = np.array([[-1000.0], [-30.0], [-1e-3], [0.0], [2.5], [40.0], [1000.0]])
    y = np.array([[1.0], [0.0], [1.0], [0.5], [0.0], [1.0], [0.0]])
    zt = torch.tensor(z, requires_grad=True)
    lt = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(y))
    lt.backward()
    loss = BCEWithLogitsLoss()
    assert math.isfinite(loss.forward(z, y))
    assert abs(loss.forward(z, y) - lt.item()) < 1e-12
    np.testing.assert_allclose(loss.backward(), zt.grad.numpy(), rtol=0, atol=1e-15)


def test_gradcheck_full_mlp() -> None:
    rng = np.random.default_rng(6)
    model = build_mlp(4, [6, 5], batchnorm=True, rng=rng, dtype=F64)
    for _, p in model.named_parameters():  # non-trivial BN affine parameters
        p.data += 0.1 * rng.standard_normal(p.data.shape)
    x = rng.standard_normal((8, 4))
    y = rng.integers(0, 2, (8, 1)).astype(F64)
    loss = BCEWithLogitsLoss()

    def objective() -> float:
        return loss.forward(model.forward(x, True), y)

    model.zero_grad()
    objective()
    dx = model.backward(loss.backward())
    assert rel_error(dx, numerical_grad(objective, x)) < 1e-6
    for name, p in model.named_parameters():
        assert rel_error(p.grad, numerical_grad(objective, p.data)) < 1e-6, name


# --------------------------------------------------------------------------- 2. twin check


@pytest.mark.parametrize("batchnorm", [False, True])
def test_twin_torch_loss_and_gradients(batchnorm: bool) -> None:
    rng = np.random.default_rng(7)
    model = build_mlp(12, [32, 16, 8], batchnorm=batchnorm, rng=rng, dtype=F64)
    tmodel = to_torch(model)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tmodel.named_parameters()]
    loss, tloss = BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
    for _ in range(3):  # a few batches so the BN running stats are exercised too
        x = rng.standard_normal((24, 12))
        y = rng.integers(0, 2, (24, 1)).astype(F64)
        model.zero_grad()
        out = model.forward(x, True)
        value = loss.forward(out, y)
        dx = model.backward(loss.backward())

        tmodel.zero_grad()
        xt = torch.tensor(x, requires_grad=True)
        tout = tmodel(xt)
        tvalue = tloss(tout, torch.tensor(y))
        tvalue.backward()

        assert abs(value - tvalue.item()) < 1e-12
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-12)
        tg = torch_grads(tmodel)
        for name, p in model.named_parameters():
            assert np.max(np.abs(p.grad - tg[name])) < 1e-9, name
    tbuf = dict(tmodel.named_buffers())
    for name, buf in model.named_buffers():
        np.testing.assert_allclose(buf, tbuf[name].numpy(), rtol=0, atol=1e-12)


def test_from_torch_roundtrip_and_float32_forward() -> None:
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(6, 10),
        torch.nn.BatchNorm1d(10),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(10, 1),
        torch.nn.Sigmoid(),
    )
    tmodel.train()
    for _ in range(3):
        tmodel(torch.randn(16, 6))
    tmodel.eval()
    model = from_torch(tmodel)
    assert isinstance(model, Sequential)
    assert model[0].weight.data.dtype == np.float32
    x = np.random.default_rng(8).standard_normal((5, 6)).astype(np.float32)
    out = model.forward(x, False)
    assert out.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(out, tmodel(torch.from_numpy(x)).numpy(), atol=1e-6)
    back = to_torch(model)
    for (n1, a), (n2, b) in zip(tmodel.state_dict().items(), back.state_dict().items()):
        assert n1 == n2
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- 3. optimiser twins


def make_data(n: int = 256, d: int = 10, seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ w)))).astype(F64)[:, None]
    return x, y


OPTIMIZERS = [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}, False),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": True}, True),
    ("adam", {"lr": 3e-3, "weight_decay": 1e-2}, False),
    ("adam", {"lr": 3e-3, "weight_decay": 1e-2, "amsgrad": True}, True),
    ("adamw", {"lr": 3e-3, "weight_decay": 5e-2}, True),
]


@pytest.mark.parametrize(("name", "kwargs", "batchnorm"), OPTIMIZERS)
def test_loss_trajectory_matches_torch(name: str, kwargs: dict, batchnorm: bool) -> None:
    x, y = make_data()
    model = build_mlp(10, [24, 12], batchnorm=batchnorm, rng=10, dtype=F64)
    tmodel = to_torch(model)
    np_cls, t_cls = {
        "sgd": (SGD, torch.optim.SGD),
        "adam": (Adam, torch.optim.Adam),
        "adamw": (AdamW, torch.optim.AdamW),
    }[name]
    opt, topt = np_cls(model.parameters(), **kwargs), t_cls(tmodel.parameters(), **kwargs)
    loss, tloss = BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(11)
    batches = [b for _ in range(13) for b in iterate_minibatches(len(x), 32, rng)][:100]
    assert len(batches) == 100
    for idx in batches:
        opt.zero_grad()
        value = loss.forward(model.forward(x[idx], True), y[idx])
        model.backward(loss.backward(), need_input_grad=False)
        opt.step()

        topt.zero_grad()
        tvalue = tloss(tmodel(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        tvalue.backward()
        topt.step()
        assert abs(value - tvalue.item()) < 1e-9
    tparams = dict(tmodel.named_parameters())
    for pname, p in model.named_parameters():
        assert np.max(np.abs(p.data - tparams[pname].detach().numpy())) < 1e-9, pname
    assert value < 0.69  # it actually learned something


def test_optimizer_validation() -> None:
    params = Linear(2, 2, rng=0).parameters()
    with pytest.raises(ValueError):
        SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        SGD([], lr=0.1)


# --------------------------------------------------------------------------- 4. initialisers


@pytest.mark.parametrize("shape", [(3, 5), (16, 8), (8, 4, 3, 3)])
def test_fans_match_torch(shape: tuple[int, ...]) -> None:
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert nninit.calculate_fan_in_and_fan_out(shape) == expected
    with pytest.raises(ValueError):
        nninit.calculate_fan_in_and_fan_out((5,))


@pytest.mark.parametrize(
    ("nonlinearity", "param"),
    [
        ("relu", None),
        ("tanh", None),
        ("sigmoid", None),
        ("linear", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("selu", None),
    ],
)
def test_gain_matches_torch(nonlinearity: str, param: float | None) -> None:
    expected = torch.nn.init.calculate_gain(nonlinearity, param)
    assert nninit.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-12)


SHAPE = (400, 600)  # fan_out = 400, fan_in = 600


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initializer_statistics(dtype: type) -> None:
    fan_in, fan_out = 600, 400
    cases = {
        "xavier_normal": (nninit.xavier_normal, math.sqrt(2.0 / (fan_in + fan_out)), None),
        "he_normal": (nninit.he_normal, math.sqrt(2.0 / fan_in), None),
        "xavier_uniform": (nninit.xavier_uniform, None, math.sqrt(6.0 / (fan_in + fan_out))),
        "he_uniform": (nninit.he_uniform, None, math.sqrt(6.0 / fan_in)),
    }
    for name, (fn, std, bound) in cases.items():
        w = fn(SHAPE, rng=np.random.default_rng(12), dtype=dtype)
        assert w.shape == SHAPE and w.dtype == dtype, name
        assert abs(w.mean()) < 0.01 * (std or bound), name
        if bound is not None:
            std = bound / math.sqrt(3.0)  # std of U(-b, b)
            assert np.abs(w).max() <= bound
            assert np.abs(w).max() > 0.99 * bound
        assert w.std() == pytest.approx(std, rel=0.02), name
    w = nninit.kaiming_normal(SHAPE, mode="fan_out", rng=0, dtype=dtype)
    assert w.std() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.02)
    lin = Linear(600, 400, init="he_uniform", rng=0, dtype=dtype)
    assert lin.weight.data.shape == SHAPE and np.all(lin.bias.data == 0)
    assert np.abs(lin.weight.data).max() <= math.sqrt(6.0 / 600)
    with pytest.raises(ValueError):
        Linear(2, 2, init="nope")


def test_initializers_agree_with_torch() -> None:
    torch.manual_seed(0)
    fan_in, fan_out = nninit.calculate_fan_in_and_fan_out(SHAPE)
    t = torch.empty(SHAPE, dtype=torch.float64)
    # uniform: same bound (torch samples also lie in [-b, b] and reach it)
    for torch_init, bound in [
        (lambda w: torch.nn.init.xavier_uniform_(w), nninit.xavier_uniform_bound(fan_in, fan_out)),
        (
            lambda w: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu"),
            nninit.kaiming_uniform_bound(fan_in),
        ),
        (
            lambda w: torch.nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu"),
            nninit.kaiming_uniform_bound(fan_out),
        ),
        (
            lambda w: torch.nn.init.kaiming_uniform_(w, a=0.0),  # torch default: leaky_relu, a=0
            nninit.kaiming_uniform_bound(fan_in, nninit.calculate_gain("leaky_relu", 0.0)),
        ),
    ]:
        torch_init(t)
        tmax = t.abs().max().item()
        assert 0.99 * bound < tmax <= bound
    # normal: same std
    torch.nn.init.xavier_normal_(t)
    assert t.std().item() == pytest.approx(nninit.xavier_std(fan_in, fan_out), rel=0.02)
    torch.nn.init.kaiming_normal_(t, nonlinearity="relu")
    assert t.std().item() == pytest.approx(nninit.kaiming_std(fan_in), rel=0.02)
    # and the same as the sampled numpy arrays
    w = nninit.xavier_uniform(SHAPE, rng=1, dtype=F64)
    assert np.abs(w).max() == pytest.approx(nninit.xavier_uniform_bound(fan_in, fan_out), rel=0.01)


# --------------------------------------------------------------------------- 5. BatchNorm eval


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm_running_stats_and_eval_match_torch(momentum: float | None) -> None:
    rng = np.random.default_rng(13)
    bn = BatchNorm1d(6, momentum=momentum, eps=1e-3, dtype=F64)
    bn.weight.data[:] = rng.uniform(0.5, 2.0, 6)
    bn.bias.data[:] = rng.standard_normal(6)
    tbn = to_torch(Sequential(bn))[0]
    for step in range(5):  # drifting batches so the running stats matter
        x = rng.standard_normal((20, 6)) * (1.0 + step) + step
        out = bn.forward(x, True)
        tout = tbn(torch.from_numpy(x))
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=0, atol=1e-12)
    assert bn.num_batches_tracked == int(tbn.num_batches_tracked)

    tbn.eval()
    x = rng.standard_normal((7, 6)) * 3.0 + 2.0
    g = rng.standard_normal((7, 6))
    running = (bn.running_mean.copy(), bn.running_var.copy())
    bn.zero_grad()
    out = bn.forward(x, False)
    expected = (x - running[0]) / np.sqrt(running[1] + 1e-3) * bn.weight.data + bn.bias.data
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    dx = bn.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    tout = tbn(xt)
    tout.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad, tbn.weight.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bn.bias.grad, tbn.bias.grad.numpy(), rtol=0, atol=1e-12)
    # eval mode leaves the running statistics alone
    np.testing.assert_array_equal(bn.running_mean, running[0])
    np.testing.assert_array_equal(bn.running_var, running[1])


def test_batchnorm_rejects_single_sample_in_training() -> None:
    with pytest.raises(ValueError):
        BatchNorm1d(3).forward(np.ones((1, 3), dtype=np.float32), True)


# --------------------------------------------------------------------------- misc


def test_iterate_minibatches() -> None:
    batches = list(iterate_minibatches(10, 4, rng=0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    ordered = list(iterate_minibatches(10, 4, shuffle=False, drop_last=True))
    assert [b.tolist() for b in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_build_mlp_structure_and_dtype() -> None:
    model = build_mlp(20, [16, 8], dropout=0.1, batchnorm=True, rng=0, dtype=np.float32)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert model[0].bias is None and model[8].bias is not None  # no bias right before BN
    x = np.random.default_rng(0).standard_normal((5, 20))  # float64 input is cast
    out = model.forward(x, True)
    assert out.shape == (5, 1) and out.dtype == np.float32
    assert model.backward(np.ones_like(out), need_input_grad=False) is None
    assert all(g.dtype == np.float32 for _, _, g in model.params())
    assert model.forward(x, False).shape == (5, 1)


# ------------------------------------------------------------------ 6. SiLU, init, schedules


def test_gradcheck_silu() -> None:
    rng = np.random.default_rng(20)
    check_layer_grads(SiLU(), rng.standard_normal((6, 5)) * 3.0, rng)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_silu_matches_torch_autograd(dtype: type) -> None:
    rng = np.random.default_rng(21)
    x = rng.standard_normal((64, 32)) * 4.0
    x[0, :6] = [-200.0, -40.0, -1.2784645, 0.0, 40.0, 200.0]  # far tails, minimum, zero
    x = x.astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    layer = SiLU()
    y = layer.forward(x, True)
    dx = layer.backward(g.copy())
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.silu(xt)
    yt.backward(torch.tensor(g))
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert layer.backward(g, need_input_grad=False) is None


def test_silu_mlp_twin_torch_and_round_trip() -> None:
    rng = np.random.default_rng(22)
    model = build_mlp(12, [32, 16], activation="silu", init="default", rng=rng, dtype=F64)
    assert [type(m).__name__ for m in model] == ["Linear", "SiLU"] * 2 + ["Linear"]
    tmodel = to_torch(model)
    assert isinstance(tmodel[1], torch.nn.SiLU)
    x = rng.standard_normal((24, 12))
    y = rng.integers(0, 2, (24, 1)).astype(F64)
    loss = BCEWithLogitsLoss()
    model.zero_grad()
    value = loss.forward(model.forward(x, True), y)
    dx = model.backward(loss.backward())
    xt = torch.tensor(x, requires_grad=True)
    tvalue = torch.nn.BCEWithLogitsLoss()(tmodel(xt), torch.tensor(y))
    tvalue.backward()
    assert abs(value - tvalue.item()) < 1e-12
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-12)
    tg = torch_grads(tmodel)
    for name, p in model.named_parameters():
        assert np.max(np.abs(p.grad - tg[name])) < 1e-12, name
    back = from_torch(tmodel)
    assert [type(m).__name__ for m in back] == [type(m).__name__ for m in model]
    np.testing.assert_array_equal(back.forward(x, False), model.forward(x, False))
    with pytest.raises(ValueError, match="activation"):
        build_mlp(4, [3], activation="gelu")


def test_linear_default_init_is_torchs() -> None:
    """``init="default"``: weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as
    ``torch.nn.Linear`` initialises itself (its kaiming_uniform(a=sqrt(5)))."""
    fan_out, fan_in = SHAPE
    bound = 1.0 / math.sqrt(fan_in)
    torch.manual_seed(0)
    tlin = torch.nn.Linear(fan_in, fan_out, dtype=torch.float64)
    lin = Linear(fan_in, fan_out, init="default", rng=0, dtype=F64)
    for ours, theirs in ((lin.weight.data, tlin.weight), (lin.bias.data, tlin.bias)):
        theirs = theirs.detach().numpy()
        for a in (ours, theirs):
            assert np.abs(a).max() <= bound and np.abs(a).max() > 0.99 * bound
        assert ours.std() == pytest.approx(theirs.std(), rel=0.05)
        assert ours.std() == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
    assert nninit.kaiming_uniform_bound(fan_in, nninit.calculate_gain("leaky_relu", math.sqrt(5))
                                        ) == pytest.approx(bound)
    assert Linear(3, 2, init="default", rng=0, bias=False).bias is None
    assert np.all(Linear(3, 2, init="he_normal", rng=0).bias.data == 0)  # others: zero bias


@pytest.mark.parametrize(("schedule", "warmup_epochs"),
                         [("cosine", 1.0), ("cosine", 0.0), ("cosine", 0.5), ("constant", 1.0)])
def test_lr_schedule_matches_the_torch_loop(schedule: str, warmup_epochs: float) -> None:
    """Step for step, the numpy scheduler sets the rates the torch training loop's scheduler
    (``streamrec.train.schedules.make_scheduler``) gives its optimizer."""
    from streamrec.train.config import TrainConfig
    from streamrec.train.schedules import make_scheduler

    epochs, spe, lr = 4, 7, 2e-3
    cfg = TrainConfig(epochs=epochs, lr=lr, schedule=schedule, warmup_epochs=warmup_epochs,
                      progress=False)
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    tsched = make_scheduler(topt, cfg, spe)
    opt = SGD(Linear(2, 1, rng=0).parameters(), lr=lr)
    sched = LRScheduler(opt, total_steps=epochs * spe,
                        warmup_steps=int(round(warmup_epochs * spe)), schedule=schedule)
    rates = []
    for _ in range(epochs * spe):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=1e-18)
        rates.append(opt.lr)
        topt.step()
        tsched.step()
        sched.step()
    if schedule == "cosine":
        assert max(rates) == pytest.approx(lr) and rates[-1] == 0.0
    if warmup_epochs:
        assert rates[0] == pytest.approx(lr / round(warmup_epochs * spe))
    with pytest.raises(ValueError, match="schedule"):
        LRScheduler(opt, total_steps=10, schedule="nope")


def test_silu_cosine_adam_trajectory_matches_torch() -> None:
    """The numpy MLP's default recipe (SiLU, torch's init, Adam with warmup and cosine) takes
    the same steps as torch with the training loop's scheduler."""
    from streamrec.train.config import TrainConfig
    from streamrec.train.schedules import make_scheduler

    x, y = make_data()
    model = build_mlp(10, [24, 12], activation="silu", init="default", rng=23, dtype=F64)
    tmodel = to_torch(model)
    epochs, bs = 5, 32
    spe = len(x) // bs
    opt = Adam(model.parameters(), lr=1e-2)
    sched = LRScheduler(opt, total_steps=epochs * spe, warmup_steps=spe, schedule="cosine")
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-2)
    tsched = make_scheduler(topt, TrainConfig(epochs=epochs, lr=1e-2, schedule="cosine",
                                              warmup_epochs=1, progress=False), spe)
    loss, tloss = BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(24)
    for idx in (b for _ in range(epochs) for b in iterate_minibatches(len(x), bs, rng)):
        opt.zero_grad()
        value = loss.forward(model.forward(x[idx], True), y[idx])
        model.backward(loss.backward(), need_input_grad=False)
        opt.step()
        sched.step()
        topt.zero_grad()
        tvalue = tloss(tmodel(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        tvalue.backward()
        topt.step()
        tsched.step()
        assert abs(value - tvalue.item()) < 1e-9
    tparams = dict(tmodel.named_parameters())
    for pname, p in model.named_parameters():
        assert np.max(np.abs(p.data - tparams[pname].detach().numpy())) < 1e-9, pname
    assert value < 0.69
