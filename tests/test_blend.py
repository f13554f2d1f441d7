"""``blend``: LightGCN trained by the loop plus a spectral filter fitted after it, scores mixed
per user; the mix worked by hand, the weight chosen on validation, the trainer's closed-form
step after the loop, saving and loading, and its errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("torch_geometric")

from streamrec.common import OptionsError  # noqa: E402
from streamrec.models.blend import (  # noqa: E402
    DEFAULT_FILTER,
    DEFAULT_WEIGHT,
    FILTERS,
    WEIGHT_GRID,
    BlendConfig,
    mix_scores,
    standardize,
)
from streamrec.models.lightgcn import LightGCN  # noqa: E402
from streamrec.run import load_run, train_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_standardize_and_mix_worked_by_hand() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0]])  # mean 2, sample std 1
    b = torch.tensor([[0.0, 0.0, 6.0]])  # mean 2, sample std sqrt(24 / 2) = 2 sqrt(3)
    assert torch.allclose(standardize(a), torch.tensor([[-1.0, 0.0, 1.0]]))
    r = 1 / math.sqrt(3)
    assert torch.allclose(standardize(b), torch.tensor([[-r, -r, 2 * r]]))
    mixed = mix_scores(a, b, 0.25)
    assert torch.allclose(mixed, torch.tensor([[-0.75 - 0.25 * r, -0.25 * r, 0.75 + 0.5 * r]]))
    assert mix_scores(a, b, 0.0) is a and mix_scores(a, b, 1.0) is b
    assert torch.equal(standardize(torch.ones(1, 4)), torch.zeros(1, 4))  # a constant row


@pytest.fixture(scope="module")
def blend_runs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("blend")
    valid = train_run("blend", tiny_dir, root / "valid", overrides=["epochs=2"],
                      progress=False)
    no_valid = train_run("blend", tiny_dir, root / "novalid", progress=False,
                         overrides=["epochs=2", "split.method=random",
                                    "split.ratios=[0.8, 0.0, 0.2]"])
    return {"valid": valid, "no_valid": no_valid}


def test_filter_and_weight_are_chosen_on_validation_from_the_grid(blend_runs: dict) -> None:
    run = blend_runs["valid"]
    fit = run.results["train"]["fit"]
    assert fit["selection"] == "validation" and fit["metric"] == "ndcg@20"
    tried = fit["tried"]
    # LightGCN alone once, then every filter at every other weight of the grid
    assert [(t["filter"], t["weight"]) for t in tried] == [("-", 0.0)] + [
        (f, w) for f in FILTERS for w in WEIGHT_GRID if w > 0]
    best = max(t["ndcg@20"] for t in tried)
    first_best = next(t for t in tried if t["ndcg@20"] == best)
    assert fit["weight"] == first_best["weight"] == float(run.model.weight)
    assert first_best["filter"] in ("-", fit["filter"]) and fit["filter"] in FILTERS
    assert run.model.filter.name == fit["filter"] == FILTERS[int(run.model.filter_index)]
    # every filter was fitted with its own search on validation; the chosen one's report flat
    assert set(fit["filters"]) == set(FILTERS)
    assert fit["filter_selection"] == fit["filters"][fit["filter"]]["selection"]
    assert all(f["selection"] == "validation" for n, f in fit["filters"].items()
               if n != "gf-cf")
    # the final validation of the run is the blend's at the chosen pair (all users, so at
    # least as many as the choice's sample: here the same users)
    assert run.results["valid"]["metrics"]["ndcg@20"] == pytest.approx(best, abs=1e-5)


def test_scores_are_the_mix_of_lightgcn_and_the_filter(blend_runs: dict) -> None:
    run = blend_runs["valid"]
    model, history = run.model, run.split.history(run.dataset, "test")
    users = torch.arange(6)
    for w in (0.0, 0.3, 1.0):
        model.weight.fill_(w)
        with torch.no_grad():
            a = LightGCN.score(model, users, history)
            b = model.filter.score(users, history)
            assert torch.allclose(model.score(users, history), mix_scores(a, b, w))
    model.weight.fill_(run.results["train"]["fit"]["weight"])


def test_without_validation_the_default_weight_and_the_filter_rule(blend_runs: dict) -> None:
    fit = blend_runs["no_valid"].results["train"]["fit"]
    assert fit["selection"] == "default (no validation)" and fit["weight"] == DEFAULT_WEIGHT
    assert fit["filter"] == DEFAULT_FILTER and list(fit["filters"]) == [DEFAULT_FILTER]
    assert fit["filter_selection"].startswith("rule")


def test_before_its_fit_the_blend_scores_as_lightgcn(tiny, blend_runs: dict) -> None:
    from streamrec.data.splits import make_split
    from streamrec.train.config import build_configs

    split = make_split(tiny, "loo")
    cfg, _, _ = build_configs("blend", overrides=[])
    model = type(blend_runs["valid"].model)(cfg, split.train(tiny)).eval()
    users = torch.arange(4)
    history = split.history(tiny, "valid")
    assert not bool(model.fitted)
    assert torch.equal(model.score(users, history), LightGCN.score(model, users, history))


def test_a_loaded_run_keeps_its_filter_and_weight(blend_runs: dict) -> None:
    run = blend_runs["valid"]
    loaded = load_run(run.path)
    assert float(loaded.model.weight) == float(run.model.weight) and bool(loaded.model.fitted)
    assert loaded.model.filter.name == run.model.filter.name
    assert loaded.model.state_dict().keys() == run.model.state_dict().keys()
    users, history = torch.arange(8), run.split.history(run.dataset, "test")
    with torch.no_grad():
        assert torch.equal(loaded.model.score(users, history), run.model.score(users, history))
    saved = json.loads((run.path / "results.json").read_text())
    assert saved["train"]["fit"]["weight"] == float(run.model.weight)


@pytest.mark.parametrize("values, words", [
    ({"weight": 1.5}, "weight"),
    ({"weight": "often"}, "weight"),
    ({"filter": "ease"}, "filter"),
    ({"filter_options": ["k=8"]}, "name the filter"),
    ({"filter": "chebycf", "filter_options": ["order=0"]}, "order"),
    ({"filter": "bspm", "filter_options": ["no_such=1"]}, "no_such"),
    ({"filter": "chebycf", "filter_options": ["k"]}, "key=value"),
])
def test_bad_options_are_named(values: dict, words: str) -> None:
    with pytest.raises(OptionsError, match=words):
        BlendConfig.from_dict({**BlendConfig().to_dict(), **values})


def test_filter_options_reach_the_filter(tiny) -> None:
    from streamrec.data.splits import make_split
    from streamrec.models.blend import Blend

    cfg = BlendConfig.from_dict({**BlendConfig().to_dict(), "filter": "bspm",
                                 "filter_options": ["k=8", "beta=0.3"], "weight": 0.5})
    model = Blend(cfg, make_split(tiny, "loo").train(tiny))
    assert model.filter.name == "bspm" and model.filter.config.k == 8
    assert model.filter.config.beta == 0.3 and float(model.weight) == 0.5


def test_the_saved_filter_is_rebuilt_on_load(tiny) -> None:
    """A blend whose validation chose another filter than the default loads as that filter."""
    from streamrec.data.splits import make_split
    from streamrec.models.blend import Blend

    split = make_split(tiny, "loo")
    train, history = split.train(tiny), split.history(tiny, "test")
    cfg = BlendConfig.from_dict({**BlendConfig().to_dict(), "weight": 0.4})
    trained = Blend(cfg, train).eval()
    other = next(f for f in FILTERS if f != DEFAULT_FILTER)
    trained._use_filter(other)
    trained.filter.fit(train, None)
    trained.fitted.fill_(True)
    fresh = Blend(cfg, train).eval()
    assert fresh.filter.name == DEFAULT_FILTER
    fresh.load_state_dict(trained.state_dict())
    assert fresh.filter.name == other
    users = torch.arange(5)
    with torch.no_grad():
        assert torch.equal(fresh.score(users, history), trained.score(users, history))


def test_the_choice_caches_each_part_once_per_users_and_history(blend_runs: dict) -> None:
    """Each validation builds a new history object: the cache keys on its content, so the
    choice scores every part once, not once per weight (it held one copy per call before)."""
    run = blend_runs["valid"]
    model, users = run.model, torch.arange(7)
    model._parts = {}
    try:
        once, twice = (run.split.history(run.dataset, "valid") for _ in range(2))
        assert once is not twice
        with torch.no_grad():
            first, again = model.score(users, once), model.score(users, twice)
            assert torch.equal(first, again) and len(model._parts) == 2
            model.score(users, run.split.history(run.dataset, "test"))  # other rows: new keys
            assert len(model._parts) == 4
    finally:
        model._parts = None
