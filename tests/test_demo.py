"""The main job, quick version: world -> every model -> the system -> report, through the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from streamrec.cli import app

runner = CliRunner()


def test_quick_demo_builds_and_judges_the_system(tmp_path):
    out = tmp_path / "d"
    res = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "streamrec serve" in res.output  # it ends with the command that serves it
    assert "streamrec recommend" in res.output
    assert (out / "system" / "system.json").is_file() and (out / "system.toml").is_file()
    report = (out / "report" / "report.md").read_text()
    for section in ("## Leaderboard", "## Ablation", "## Sources", "## Against the world's truth",
                    "## Latency", "## Click prediction"):
        assert section in report, section
    for png in ("leaderboard.png", "ablation.png", "truth.png", "latency.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"
    board = json.loads((out / "report" / "leaderboard.json").read_text())
    names = {r.get("model") for r in board["rows"]}
    assert {"system", "pop", "mf", "gf-cf", "lightgcn", "cnn-text", "gru", "transformer",
            "two-tower", "mlp", "mlp-numpy", "ease", "mult-vae", "diffrec", "cfgan"} <= names
    # the system is evaluated like any run, with the same protocol object
    res = runner.invoke(app, ["evaluate", str(out / "system"), "--split", "test", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    run = json.loads(runner.invoke(app, ["evaluate", str(out / "runs" / "mf"), "--json"]).stdout)
    assert set(got["protocol"]) == set(run["protocol"])
    assert got["protocol"]["split"] == run["protocol"]["split"]
    res = runner.invoke(app, ["recommend", str(out / "system"), "--user", "u001", "-k", "10",
                              "--explain", "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)["items"]
    assert len(items) == 10 and all(i["why"] and i["sources"] for i in items)
