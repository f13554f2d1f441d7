"""The ``streamrec`` command line: thin; it parses and calls the Python API.

Heavy modules (torch, the models) are imported inside the commands so that ``--help`` and the
light commands start fast.

Every failure is one line on stderr, ``error: <what is wrong and what to do>``, and a non-zero
exit status: the commands raise the API's own exceptions and :class:`_Group` turns them (and
the command line's own usage errors) into that line. A traceback is shown only with
``STREAMREC_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

#: exceptions whose message is meant for the user as it is (everything else is a bug)
_USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, KeyError, FileNotFoundError, FileExistsError, ImportError, NotADirectoryError,
    IsADirectoryError, PermissionError, FloatingPointError,
)


def _console() -> Any:
    """The console of progress and messages: stderr, lines never wrapped (logs stay one line
    per record when stderr is not a terminal)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _print_error(message: str) -> None:
    from rich.markup import escape

    line = " ".join(str(message).split())  # one line, whatever the message held
    if os.environ.get("STREAMREC_WORKER_ERRORS"):  # a worker of `train --nproc`: the launcher
        from streamrec.train.distributed import record_worker_error  # reports it

        if record_worker_error(line):
            return
    _console().print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """Warnings as one ``warning: ...`` line (not Python's two-line format with the source)."""
    return "warning: " + " ".join(str(message).split()) + "\n"


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    text = str(e)
    if isinstance(e, _USER_ERRORS) or not text:
        return text or type(e).__name__
    return (f"internal error ({type(e).__name__}: {text}); please report it, and set "
            "STREAMREC_DEBUG=1 to see the traceback")


class _Group(TyperGroup):
    """The command group: one ``error: ...`` line for every failure (see the module
    docstring)."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        import warnings

        warnings.formatwarning = _format_warning
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except typer.TyperException as e:  # the command line's own usage errors
            ctx = getattr(e, "ctx", None)
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as asked
                e.show()
                code = 0
            else:
                hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                _print_error(e.format_message() + hint)
                code = e.exit_code
        except typer.Abort:
            _print_error("interrupted")
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.TyperException, typer.Abort, KeyboardInterrupt,
                BrokenPipeError):  # a closed pipe (`... | head`): click ends quietly, exit 1
            raise
        except Exception as e:
            if os.environ.get("STREAMREC_DEBUG"):
                raise
            _print_error(_message(e))
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    help="StreamRec: a deep-learning recommender system for a streaming-content platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Import, inspect and export datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
system_app = typer.Typer(help="Build multi-stage systems from trained runs.",
                         no_args_is_help=True)
app.add_typer(system_app, name="system")


def _fail(message: str, code: int = 1) -> None:
    _print_error(message)
    raise typer.Exit(code)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        _fail(f"--k expects comma-separated integers like 10,20, got {text!r}")
    if not ks or min(ks) < 1:
        _fail(f"--k needs positive integers like 10,20, got {text!r}")
    return ks


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        _fail(f"{name} must be at least 1, got {value}")


def _fmt_value(value: Any) -> str:
    """Human formatting for tables: thousands separators, 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_fmt_value(v) for v in value)
    return str(value)


def _print_json(obj: Any) -> None:
    from streamrec.common import json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=json_default) + "\n")


def _print_rows(title: str, rows: list[dict[str, Any]], empty: tuple[str, ...]) -> None:
    """A table of ranked rows (columns from the first row, ``empty`` when there are none)."""
    from rich.table import Table

    table = Table(title=title)
    for col in rows[0] if rows else empty:
        table.add_column(col)
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()])
    _console().print(table)


def _load(path: Path, data: Path | None = None, device: str = "cpu") -> Any:
    """A run directory or a system directory, loaded."""
    from streamrec.serve.system import is_system_dir, load_system

    if is_system_dir(path):
        return load_system(path, data=data)
    from streamrec.run import load_run

    return load_run(path, device=device, data=data)


def _note_unfinished(run: Any) -> None:
    note = run.progress_note()
    if note:
        _console().print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- world
@app.command()
def world(
    preset: str = typer.Option("demo", help="tiny, m0, m5, demo or platform."),
    out: Path = typer.Option(..., help="Dataset directory to write."),
    seed: int = typer.Option(0, help="Random seed (the world is deterministic for a seed)."),
    overwrite: bool = typer.Option(False, help="Replace an existing directory."),
) -> None:
    """Generate the synthetic StreamRec world (the built-in data)."""
    from streamrec.data.world import PRESETS, generate_world

    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if seed < 0:
        _fail(f"--seed must be >= 0, got {seed}")
    path = generate_world(preset, out, seed=seed, overwrite=overwrite, progress=True)
    _console().print(f"wrote the {preset} world to [bold]{path}[/]")


# --------------------------------------------------------------------------- data
@data_app.command("import")
def data_import(
    fmt: str = typer.Argument(
        ..., help="movielens-100k, movielens-1m, lightgcn, recbole, unisrec, csv or parquet."
    ),
    src: Path = typer.Argument(..., help="Source file or directory (.gz files are read directly)."),
    out: Path = typer.Option(..., help="Dataset directory to write."),
    option: list[str] = typer.Option(
        [], "--option", "-o",
        help="Importer option key=value (e.g. user=userId, sep=';', items=items.csv).",
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing directory."),
) -> None:
    """Import a real dataset into StreamRec's format."""
    from streamrec.common import parse_value
    from streamrec.data.importers import import_dataset

    opts: dict[str, Any] = {}
    for item in option:
        if "=" not in item:
            _fail(f"--option expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        raw = ("sep", "user", "item", "timestamp", "rating", "items", "users", "items_id",
               "users_id", "name")
        opts[key] = value if key in raw else parse_value(value)
    ds = import_dataset(fmt, src, out, overwrite=overwrite, **opts)
    _console().print(
        f"imported {ds.n_users:,} users, {ds.n_items:,} items, "
        f"{ds.n_interactions:,} interactions to [bold]{out}[/]"
    )


@data_app.command("info")
def data_info(
    path: Path = typer.Argument(..., help="Dataset directory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Users, items, interactions, density, sequence lengths, split sizes."""
    from streamrec.data.dataset import load_dataset
    from streamrec.data.splits import default_split_spec, split_from_spec

    ds = load_dataset(path)
    info = ds.info()
    if ds.n_interactions:
        info["default_split"] = split_from_spec(ds, default_split_spec(ds)).protocol()
    if as_json:
        _print_json(info)
        return
    from rich.table import Table

    table = Table(title=f"dataset {ds.name}", show_header=False)
    for key, value in info.items():
        table.add_row(key, _fmt_value(value))
    _console().print(table)


@data_app.command("export")
def data_export(
    fmt: str = typer.Argument(..., help="Target format: recbole."),
    path: Path = typer.Argument(..., help="Dataset directory."),
    out: Path = typer.Option(..., help="Directory for the exported files."),
    split: str = typer.Option(
        "default",
        help="Split to export as train/valid/test files: default, loo, temporal, "
        "random, given, cold-items, or none.",
    ),
    name: str | None = typer.Option(None, help="Dataset name in the file names."),
) -> None:
    """Export a dataset (and its split) for another library, e.g. RecBole's atomic files."""
    from streamrec.data.dataset import load_dataset
    from streamrec.data.export import export_recbole
    from streamrec.data.splits import default_split_spec, split_from_spec

    if fmt != "recbole":
        _fail(f"unknown export format {fmt!r}; supported: recbole")
    ds = load_dataset(path)
    sp = None
    if split != "none":
        spec = default_split_spec(ds) if split == "default" else {"method": split}
        sp = split_from_spec(ds, spec)
    result = export_recbole(ds, out, split=sp, name=name)
    _console().print(f"exported {ds.name} to [bold]{result}[/]")


@data_app.command("ingest-events")
def data_ingest_events(
    log: Path = typer.Argument(..., help="Event log of `streamrec serve` (JSON lines)."),
    into: Path = typer.Option(..., "--into", help="Dataset directory to fold the events into."),
    out: Path | None = typer.Option(
        None, help="Write the folded dataset here instead of replacing --into."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fold a service's event log into a dataset for retraining (new users are added; events
    folded before are skipped)."""
    from streamrec.serve.events import ingest_events

    summary = ingest_events(log, into, out)
    if as_json:
        _print_json(summary)
        return
    _console().print(
        f"folded {summary['events_added']:,} events ({summary['new_users']:,} new users) into "
        f"[bold]{summary['dataset']}[/]: {summary['n_users']:,} users, "
        f"{summary['n_interactions']:,} interactions; log read through seq "
        f"{summary['through_seq']:,}"
    )


@data_app.command("clicks")
def data_clicks(
    src: Path = typer.Argument(
        ..., help="MovieLens-100k dir (u.data, u.item, u.user) or a dataset dir with ratings."
    ),
    out: Path = typer.Option(..., help="Dataset directory to write."),
    threshold: float = typer.Option(4.0, help="clicked = rating >= threshold."),
    split: str = typer.Option("random", help="random or temporal split of the ratings."),
    seed: int = typer.Option(0, help="Random seed of the split."),
    overwrite: bool = typer.Option(False, help="Replace an existing directory."),
) -> None:
    """Build click-prediction data (impressions) from explicit ratings."""
    from streamrec.data.clicks import build_click_dataset

    path = build_click_dataset(src, out, threshold, split=split, seed=seed, overwrite=overwrite)
    _console().print(f"click data written to [bold]{path}[/]")


@app.command("lr-find")
def lr_find_cmd(
    model: str = typer.Argument(..., help="Model name (see `streamrec models`)."),
    data: Path = typer.Option(..., help="Dataset directory."),
    out: Path = typer.Option(Path("lr_find.png"), help="PNG of loss against learning rate."),
    config: Path | None = typer.Option(None, help="JSON/TOML file with model/train/split."),
    set_: list[str] = typer.Option([], "--set", help="Override: key=value."),
    steps: int = typer.Option(100, help="Number of steps of the sweep."),
    start_lr: float = typer.Option(1e-7, help="First learning rate."),
    end_lr: float = typer.Option(10.0, help="Last learning rate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """LR range test (Smith 2017): loss against an exponentially growing LR, plot + suggestion."""
    from streamrec.train.lr_find import lr_find

    res = lr_find(model, data, out, set_, config, start_lr=start_lr, end_lr=end_lr,
                  num_steps=steps)
    if as_json:
        _print_json(res.to_dict())
        return
    sug = f"{res.suggestion:.2e}" if res.suggestion is not None else "none"
    _console().print(
        f"suggested lr (steepest descent) {sug}; loss minimum at {res.lr_at_min:.2e} "
        f"(min/10 = {res.lr_at_min / 10:.2e}); plot: {out}"
    )


# --------------------------------------------------------------------------- models
@app.command()
def models() -> None:
    """List the models ``streamrec train`` accepts."""
    from streamrec.models import available_models

    for name in available_models():
        typer.echo(name)


_TEST_HISTORY_HELP = ("What the model reads as history at the test stage: train+valid, or "
                      "train (the published protocol of most papers and of RecBole); the "
                      "masking stays train + valid.")
_AVERAGE_HELP = ("Average metrics over users-with-test (the users with held-out items), or "
                 "all-users (users without held-out items count as 0).")


@app.command()
def train(
    model: str = typer.Argument(..., help="Model name (see `streamrec models`)."),
    data: Path = typer.Option(..., help="Dataset directory."),
    out: Path = typer.Option(..., help="Run directory to write."),
    config: Path | None = typer.Option(None, help="JSON/TOML file with model/train/split."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override: key=value, e.g. lr=5e-3, model.dim=64, split.method=loo."
    ),
    resume: bool = typer.Option(
        False, help="Continue an interrupted run from its checkpoint, with its saved options."
    ),
    overwrite: bool = typer.Option(False, help="Replace the run in --out if there is one."),
    k: str = typer.Option("10,20", help="Cut-offs for the final evaluation."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    test_history: str = typer.Option("train+valid", help=_TEST_HISTORY_HELP),
    average: str = typer.Option("users-with-test", help=_AVERAGE_HELP),
    nproc: int | None = typer.Option(
        None, help="Data-parallel training on N processes per node (DistributedDataParallel, "
        "launched through torchrun; --set batch_size is the global batch)."),
    nnodes: int = typer.Option(1, help="With --nproc: number of nodes (run the same command "
                               "on each)."),
    rdzv: str | None = typer.Option(None, help="With --nproc: HOST:PORT of the rendezvous "
                                    "every node joins."),
    time_budget: str | None = typer.Option(
        None, "--time-budget", help="Wall-clock limit of training, e.g. 90s, 5m, 1.5h, or off "
        "(default 10m): the epochs are shortened to fit, and the run ends with its best "
        "validated epoch."),
) -> None:
    """Train a model on a dataset; evaluate it on the validation and test parts."""
    from streamrec.run import train_run

    ks = _parse_ks(k)
    if time_budget is not None:
        from streamrec.train.budget import parse_duration

        try:
            set_ = [*set_, f"train.time_budget={parse_duration(time_budget)}"]
        except ValueError as e:
            _fail(f"--time-budget: {e}")
    if nproc is not None and not os.environ.get("TORCHELASTIC_RUN_ID"):
        _train_launch(model, data, out, config, set_, resume, overwrite, k, quiet, nproc,
                      nnodes, rdzv, test_history, average)
        return
    if nproc is None and (nnodes != 1 or rdzv is not None):
        _fail("--nnodes and --rdzv go with --nproc N (processes per node)")
    worker = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    try:
        run = train_run(model, data, out, config, set_, resume=resume, overwrite=overwrite,
                        ks=ks, progress=not quiet, console=_console(), distributed=worker,
                        test_history=test_history, average=average)
    except BaseException:
        if worker:
            from streamrec.train.distributed import shutdown

            shutdown(wait=False)
        raise
    if worker:
        from streamrec.train.distributed import shutdown

        shutdown()
    if worker and os.environ["RANK"] != "0":
        return
    _print_trained(run.results, out)


def _print_trained(results: dict[str, Any], out: Path) -> None:
    from streamrec.eval.evaluator import protocol_note

    test = results.get("test") or results.get("valid")
    if test:
        stage = "test" if "test" in results else "valid"
        shown = ", ".join(
            f"{k}={v:.4f}"
            for k, v in test["metrics"].items()
            if k.split("@")[0] in ("recall", "ndcg", "auc", "logloss", "oracle_auc")
        )
        _console().print(f"{stage}: {shown}  ({protocol_note(test)})")
    _console().print(f"run written to [bold]{out}[/] in {results['train_seconds']:.1f}s")


def _train_launch(model: str, data: Path, out: Path, config: Path | None, set_: list[str],
                  resume: bool, overwrite: bool, k: str, quiet: bool, nproc: int, nnodes: int,
                  rdzv: str | None, test_history: str, average: str) -> None:
    """`train --nproc`: check, then re-launch this command as torchrun's workers."""
    from streamrec.eval.evaluator import check_protocol
    from streamrec.run import check_launch
    from streamrec.train.distributed import launch

    _positive("--nproc", nproc)
    _positive("--nnodes", nnodes)
    check_protocol(test_history, average)
    check_launch(model, out, config, set_, resume=resume, overwrite=overwrite)
    args = ["train", model, "--data", str(data), "--out", str(out), "--k", k,
            "--nproc", str(nproc), "--test-history", test_history, "--average", average]
    args += [] if config is None else ["--config", str(config)]
    args += [a for s in set_ for a in ("--set", s)]
    args += (["--resume"] if resume else []) + (["--quiet"] if quiet else [])
    launch(args, nproc, nnodes, rdzv, run_id=f"streamrec-{Path(out).resolve().name}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("test", help="valid or test."),
    k: str = typer.Option("10,20", help="Comma-separated cut-offs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    sampled: int | None = typer.Option(
        None, help="Rank among N sampled negatives instead of all items (labelled as such)."
    ),
    data: Path | None = typer.Option(None, help="Dataset directory, if it moved."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto."),
    test_history: str = typer.Option("train+valid", help=_TEST_HISTORY_HELP),
    average: str = typer.Option("users-with-test", help=_AVERAGE_HELP),
) -> None:
    """Evaluate a run or a system: full ranking (training items masked), or AUC / log-loss for
    click models."""
    from streamrec.eval.evaluator import check_protocol, protocol_note

    if split not in ("valid", "test"):
        _fail(f"--split must be valid or test, got {split!r}")
    _positive("--sampled", sampled)
    check_protocol(test_history, average)
    ks = _parse_ks(k)
    r = _load(run, data, device)
    _note_unfinished(r)
    result = r.evaluate(split, ks, sampled=sampled, test_history=test_history, average=average)
    result["run"] = str(run)
    result["run_finished"] = r.finished
    if as_json:
        _print_json(result)
        return
    from rich.table import Table

    table = Table(
        title=f"{r.config['model']} on {r.dataset.name} ({split}, {result['evaluation']})"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    _console().print(table)
    _console().print(protocol_note(result), highlight=False)
    _console().print(json.dumps(result["protocol"]["split"]))


@app.command()
def recommend(
    run: Path = typer.Argument(..., help="Run directory."),
    user: str | None = typer.Option(None, help="Original user id."),
    session: str | None = typer.Option(
        None,
        help="Ad-hoc session: comma-separated original item ids, oldest first "
        "(session models: gru, lstm, transformer).",
    ),
    k: int = typer.Option(10, "-k", "--k", help="How many items."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    include_seen: bool = typer.Option(False, help="Do not filter the user's seen items."),
    explain: bool = typer.Option(
        False, "--explain", help="Systems: why each item (sources, positions, ranker, attention)."
    ),
    data: Path | None = typer.Option(None, help="Dataset directory, if it moved."),
) -> None:
    """Top-k items for a user, or for an ad-hoc session (original ids in and out), from a run or
    a system directory."""
    from streamrec.serve.recommend import recommend_session, recommend_user
    from streamrec.serve.system import SystemRun, system_recommendations

    if (user is None) == (session is None):
        _fail("give exactly one of --user ID or --session ID,ID,...")
    _positive("-k", k)
    r = _load(run, data)
    _note_unfinished(r)
    if isinstance(r, SystemRun) and user is not None:
        if include_seen:
            _fail("--include-seen does not apply to a system (its filters decide)")
        recs = system_recommendations(r, user, k, explain=explain)
        if as_json:
            _print_json({"user": user, "items": recs})
            return
        shown = [{key: row[key] for key in ("rank", "item", "score", "title", "category")
                  if key in row} | ({"why": row["why"]} if explain else {}) for row in recs]
        _print_rows(f"top {k} for user {user} (system)", shown, ("rank", "item", "score"))
        return
    if explain:
        _fail("--explain needs a system directory (for a transformer run: streamrec explain)")
    if session is not None:
        items = [s.strip() for s in session.split(",") if s.strip()]
        recs = recommend_session(r, items, k, exclude_seen=not include_seen)
    else:
        recs = recommend_user(r, user, k, exclude_seen=not include_seen)
    who = f"user {user}" if user is not None else f"session {session}"
    if as_json:
        key = {"user": user} if user is not None else {"session": session.split(",")}
        _print_json({**key, "items": recs})
        return
    _print_rows(f"top {k} for {who} ({r.config['model']})", recs, ("rank", "item", "score"))


@app.command()
def explain(
    run: Path = typer.Argument(..., help="Run directory of a transformer."),
    user: str = typer.Option(..., help="Original user id."),
    k: int = typer.Option(10, "-k", "--k", help="How many recommendations to explain."),
    rollout: bool = typer.Option(
        False, help="Attention rollout over all layers instead of the last layer's attention."
    ),
    png: Path | None = typer.Option(None, help="Write the attention heat map to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    data: Path | None = typer.Option(None, help="Dataset directory, if it moved."),
) -> None:
    """Which past items of the user's session the transformer attended to, per recommendation."""
    from streamrec.run import load_run
    from streamrec.serve.explain import explain_user, format_table, plot_attention

    _positive("-k", k)
    r = load_run(run, data=data)
    ex = explain_user(r, user, k=k, rollout=rollout)
    if png is not None:
        plot_attention(ex, png)
    if as_json:
        _print_json(ex)
        return
    from rich.table import Table

    table = Table(title=f"why these {k} for user {user} ({ex['method']})")
    for col in ("rank", "item", "score", "most attended past items (weight, similarity)"):
        table.add_column(col)
    for row in format_table(ex):
        table.add_row(*row)
    _console().print(table)
    if png is not None:
        _console().print(f"heat map: {png}")


@app.command()
def embed(
    run: Path = typer.Argument(..., help="Run directory of a model with item embeddings."),
    out: Path = typer.Option(..., "--out", help="Output file: .parquet or .npy (+ .ids.json)."),
    normalize: bool = typer.Option(False, help="L2-normalise each embedding first."),
    data: Path | None = typer.Option(None, help="Dataset directory, if it moved."),
) -> None:
    """Export a run's item embeddings with the original item ids (Parquet or .npy)."""
    from streamrec.run import load_run
    from streamrec.serve.embeddings import export_embeddings

    r = load_run(run, data=data)
    path = export_embeddings(r, out, normalize=normalize)
    _console().print(f"{r.dataset.n_items:,} item embeddings ({r.config['model']}) -> {path}")


@app.command()
def similar(
    run: Path = typer.Argument(..., help="Run directory of a model with item embeddings."),
    item: str = typer.Option(..., help="Original item id."),
    k: int = typer.Option(10, "-k", "--k", help="How many neighbours."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    data: Path | None = typer.Option(None, help="Dataset directory, if it moved."),
) -> None:
    """The k items nearest to an item by embedding cosine (the item itself excluded)."""
    from streamrec.run import load_run
    from streamrec.serve.embeddings import similar_items

    _positive("-k", k)
    r = load_run(run, data=data)
    rows = similar_items(r, item, k=k)
    if as_json:
        _print_json({"item": item, "neighbours": rows})
        return
    ds = r.dataset
    i = ds.item_index(item)
    title = f" ({ds.items['title'][i]})" if "title" in ds.items else ""
    _print_rows(f"{k} nearest to {item}{title} ({r.config['model']})", rows,
                ("rank", "item", "cosine"))


# --------------------------------------------------------------------------- retrieve
@app.command()
def retrieve(
    run: Path = typer.Argument(..., help="Run directory of a two-tower (or mf) model."),
    user: str = typer.Option(..., help="Original user id."),
    k: int = typer.Option(100, "-k", "--k", help="How many items."),
    index: str | None = typer.Option(
        None, help="flat (exact), hnsw or ivf; default: the model's own index option."
    ),
    include_seen: bool = typer.Option(False, help="Do not filter the user's seen items."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    data: Path | None = typer.Option(None, help="Dataset directory, if it moved."),
) -> None:
    """Top-k items for a user from an ANN index of the run's item vectors (built on first use
    and kept in RUN/index/)."""
    from streamrec.run import load_run
    from streamrec.serve.index import INDEX_KINDS, index_params
    from streamrec.serve.index import retrieve as retrieve_items

    if index is not None and index not in INDEX_KINDS:
        _fail(f"unknown index {index!r}; choose {', '.join(INDEX_KINDS)}")
    _positive("-k", k)
    r = load_run(run, data=data)
    kind = index_params(r.model, index).kind
    recs = retrieve_items(r, user, k, index=index, exclude_seen=not include_seen)
    if as_json:
        _print_json({"user": user, "index": kind, "items": recs})
        return
    _print_rows(f"top {k} for user {user} ({r.config['model']}, {kind} index)", recs,
                ("rank", "item", "score"))


# --------------------------------------------------------------------------- systems
@system_app.command("build")
def system_build(
    config: Path = typer.Argument(..., help="System config (TOML or JSON): sources, ranker, "
                                  "re-ranker, filters."),
    out: Path = typer.Option(..., help="System directory to write."),
    overwrite: bool = typer.Option(False, help="Replace the system in --out."),
) -> None:
    """Build a system (sources -> filters -> ranker -> re-ranker) from trained runs."""
    from streamrec.eval.evaluator import protocol_note
    from streamrec.serve.system import build_system

    run = build_system(config, out, overwrite=overwrite, console=_console())
    ev = run.evaluate("test")
    shown = ", ".join(f"{key}={v:.4f}" for key, v in ev["metrics"].items()
                      if key.split("@")[0] in ("recall", "ndcg"))
    _console().print(f"test: {shown}  ({protocol_note(ev)})")
    _console().print(f"system written to [bold]{out}[/]")


# --------------------------------------------------------------------------- serve
@app.command()
def serve(
    system: Path = typer.Argument(..., help="System directory (streamrec system build / demo)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, help="Port (0: a free one, printed)."),
    events: Path | None = typer.Option(
        None, help="Durable event log (JSON lines); default SYSTEM/events.jsonl."),
    workers: int = typer.Option(1, help="Server processes sharing the port and the event log."),
    max_body: int = typer.Option(65536, help="Largest request body in bytes (413 above)."),
    threads: int = typer.Option(1, help="Torch threads per process."),
    max_batch: int = typer.Option(16, help="Most recommendation requests served by one call of "
                                  "the system (dynamic batching; 1: one at a time)."),
    access_log: bool = typer.Option(False, help="Log every request."),
) -> None:
    """Serve a system over HTTP: recommendations, events (durable log), items, the page at /,
    /metrics, OpenAPI at /docs. Writes need the header X-API-Key when STREAMREC_API_KEY is
    set."""
    from streamrec.serve.app import run_server

    if not 0 <= port <= 65535:
        _fail(f"--port must be in 0..65535, got {port}")
    _positive("--threads", threads)
    run_server(system, host=host, port=port, events=events, workers=workers,
               max_body=max_body, threads=threads, access_log=access_log, console=_console(),
               max_batch=max_batch)


# --------------------------------------------------------------------------- demo
@app.command()
def demo(
    out: Path = typer.Option(Path("streamrec-demo"), help="Directory for data, runs and report."),
    preset: str = typer.Option("demo", help="World preset (tiny for a quick look)."),
    seed: int = typer.Option(0, help="Random seed."),
    models_: str | None = typer.Option(
        None, "--models", help="Comma-separated subset of models (default: all)."
    ),
    quick: bool = typer.Option(False, "--quick", help="The tiny world and a few epochs "
                               "(about a minute)."),
) -> None:
    """The main job: a world, one model per milestone, the system built from them, judged:
    leaderboard, ablation, truth table, latency, and a report with plots."""
    from streamrec.demo import run_demo

    if seed < 0:
        _fail(f"--seed must be >= 0, got {seed}")
    chosen = [m.strip() for m in models_.split(",")] if models_ else None
    report = run_demo(out, preset=preset, seed=seed, models=chosen, console=_console(),
                      quick=quick)
    _console().print(f"report: [bold]{report}[/]")


def main() -> None:
    """Entry point of the ``streamrec`` command."""
    app()


if __name__ == "__main__":
    main()
