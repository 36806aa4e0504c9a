"""What an analyst sees on the command line: progress, interruption, readable estimates,
defaults that follow the fit, messages about choices made, and the CLI's conventions."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from placecast.cli import app
from placecast.datasets import PORTLAND_CRS, portland_burglary_path, portland_region_path

runner = CliRunner()
EVENTS = str(portland_burglary_path())
REGION = str(portland_region_path())
def _bar(text: str) -> bool:
    """Whether ``text`` holds a progress bar: a task named "... origins" and its bar."""
    return re.search(r"origins(\s|\x1b\[[0-9;]*m)+[━╸╺]", text) is not None


def _no_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)


def _force_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make rich treat stderr as an interactive terminal (as under a real one)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")


def _backtest_args(out: Path, *extra: str) -> list[str]:
    return ["backtest", EVENTS, "--crs", PORTLAND_CRS, "--models", "naive", "--cell",
            "2000ft", "--start", "2016-06-01", "--end", "2016-06-29", "--jobs", "1",
            "-o", str(out), *extra]


# ---------------------------------------------------------------------- 1. progress bars
def test_progress_bar_only_on_a_terminal_and_not_with_quiet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_forced_terminal(monkeypatch)
    plain = runner.invoke(app, _backtest_args(tmp_path / "a.csv"))
    assert plain.exit_code == 0, plain.output
    assert not _bar(plain.stderr) and "\x1b[" not in plain.stderr

    _force_terminal(monkeypatch)
    shown = runner.invoke(app, _backtest_args(tmp_path / "b.csv"))
    assert shown.exit_code == 0, shown.output
    assert _bar(shown.stderr)
    assert "5/5" in shown.stderr  # 5 weekly origins, counted
    assert not _bar(shown.stdout) and "5/5" not in shown.stdout  # results stay clean

    quiet = runner.invoke(app, ["--quiet", *_backtest_args(tmp_path / "c.csv")])
    assert quiet.exit_code == 0, quiet.output
    assert not _bar(quiet.stderr) and "columns detected" not in quiet.stderr
    assert pd.read_csv(tmp_path / "c.csv").equals(pd.read_csv(tmp_path / "a.csv"))


def test_progress_bar_in_a_real_pseudo_terminal(tmp_path: Path) -> None:
    """Run the installed command with stderr on a pty: rich detects the terminal itself."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR")}
    env["TERM"] = "xterm"
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "placecast", *_backtest_args(tmp_path / "r.csv")],
        stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            seen += chunk
            if not chunk and process.poll() is not None:
                break
        elif process.poll() is not None:
            break
    os.close(master)
    process.wait(timeout=60)
    assert process.returncode == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert _bar(text) and "5/5" in text


def test_tune_and_audit_report_progress(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _force_terminal(monkeypatch)
    tuned = runner.invoke(app, [
        "tune", EVENTS, "--crs", PORTLAND_CRS, "--model", "naive", "--grid",
        "lookback_days=30,60", "--cells", "1500ft", "--tuning", "2016-01-06..2016-01-20",
        "--evaluation", "2016-02-03..2016-02-17", "--jobs", "1"])
    assert tuned.exit_code == 0, tuned.output
    # 2 candidates x 3 tuning origins + 3 evaluation origins
    assert _bar(tuned.stderr) and "9/9" in tuned.stderr
    audited = runner.invoke(app, [
        "audit", EVENTS, "--crs", PORTLAND_CRS, "--model", "naive", "--cell", "2000ft",
        "--area", "1sqmi", "--start", "2016-06-01", "--end", "2016-06-29", "--n-boot", "19",
        "-o", str(tmp_path / "audit")])
    assert audited.exit_code == 0, audited.output
    assert _bar(audited.stderr) and "4/4" in audited.stderr


def test_marked_etas_fit_reports_each_iteration() -> None:
    from placecast.seismic import catalog_from_arrays, fit_marked_etas, simulate_marked_etas

    true = dict(mu=0.3, A=0.2, c=0.02, alpha=1.2, p=1.2, D=0.01, q=2.0, gamma=0.5)
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    sim = simulate_marked_etas(true, beta=2.3, m0=4.0, polygon=square, duration=100.0,
                               random_state=1)
    catalog = catalog_from_arrays(sim["t"], sim["x"], sim["y"], sim["mag"], m0=4.0,
                                  polygon=square, t_start=10.0, t_end=100.0)
    calls: list[tuple[int, int]] = []
    result = fit_marked_etas(catalog, initial=true, max_iterations=2, ndiv=100,
                             progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3)  # 2 iterations + the standard errors
    done = [c[0] for c in calls]
    assert done == sorted(done) and all(total == 3 for _, total in calls)
    assert len(calls) >= result.n_iterations + 1


# ---------------------------------------------------------------------- 2. interruption
def _wait_for(predicate, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_a_backtest_promptly_and_resume_finishes_it(tmp_path: Path,
                                                                 jobs: str) -> None:
    out = tmp_path / "bt.csv"
    folder = tmp_path / ".bt.csv.checkpoint"
    args = ["backtest", EVENTS, "--crs", PORTLAND_CRS, "--models", "kde", "--cell", "600ft",
            "--region", REGION, "--start", "2015-03-04", "--end", "2017-02-22",
            "--jobs", jobs, "-o", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "placecast", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        started = _wait_for(lambda: len(list(folder.glob("origin-*.npz"))) >= 2, 120)
        assert started, process.stderr.read().decode() if process.poll() is not None else ""
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    message = stderr.decode()
    assert process.returncode == 130, message
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
    assert "Traceback" not in message
    assert "--resume" in message and str(folder) in message
    kept = len(list(folder.glob("origin-*.npz")))
    assert 2 <= kept < 104 and not out.exists()

    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    frame = pd.read_csv(out)
    assert len(frame) == 104 and frame.origin.is_unique  # every weekly origin, once
    assert not folder.exists()


def test_failed_run_leaves_no_useless_checkpoint(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import placecast.evaluate._backtest as backtest

    def broken(*args: object, **kwargs: object):  # noqa: ANN202
        from placecast.exceptions import ParameterError

        raise ParameterError("--dask tcp://nowhere:8786: cannot reach the Dask scheduler.")
        yield  # pragma: no cover

    monkeypatch.setattr(backtest, "_dask", broken)
    out = tmp_path / "bt_dask.csv"
    result = runner.invoke(app, _backtest_args(out, "--dask", "tcp://nowhere:8786"))
    assert result.exit_code == 2 and "cannot reach" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .bt_dask.csv.checkpoint/

    # a run that fails after finishing origins keeps them and says how to resume
    calls = {"n": 0}
    real = backtest._run_origin

    def fail_third(plan, origin):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("out of memory")
        return real(plan, origin)

    monkeypatch.setattr(backtest, "_run_origin", fail_third)
    failed = runner.invoke(app, _backtest_args(out))
    assert isinstance(failed.exception, MemoryError)
    folder = tmp_path / ".bt_dask.csv.checkpoint"
    assert len(list(folder.glob("origin-*.npz"))) == 2
    assert "--resume" in failed.stderr

    # Ctrl-C before any origin finished: nothing to resume, nothing left behind
    def interrupt(plan, origin):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(backtest, "_run_origin", interrupt)
    other = tmp_path / "other.csv"
    stopped = runner.invoke(app, _backtest_args(other))
    assert stopped.exit_code == 130 and "before any origin finished" in stopped.stderr
    assert not (tmp_path / ".other.csv.checkpoint").exists() and not other.exists()


def test_dask_install_hint_names_the_extra(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_dask(name: str, *args: object, **kwargs: object):  # noqa: ANN202
        if name.startswith("dask"):
            raise ImportError("No module named 'dask'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    result = runner.invoke(app, _backtest_args(tmp_path / "x.csv", "--dask", "local"))
    assert result.exit_code == 2
    assert "pip install 'placecast[dask]'" in result.stderr


# ---------------------------------------------------------------------- 3. fit summaries
@pytest.mark.parametrize(("model", "extra", "note"), [
    ("sepp", [], "sigma sits at its lower bound (10 m)"),
    ("etas", ["--cell", "600ft", "--region", REGION], "The triggering vanished"),
])
def test_fit_prints_estimates_and_names_degenerate_ones(tmp_path: Path, model: str,
                                                        extra: list[str], note: str) -> None:
    out = tmp_path / f"{model}.json"
    result = runner.invoke(app, ["fit", EVENTS, "--crs", PORTLAND_CRS, "--model", model,
                                 *extra, "-o", str(out)])
    assert result.exit_code == 0, result.output
    fitted = json.loads(out.read_text())
    text = re.sub(r"\s+", " ", result.stdout)
    assert "95% interval" in text and "branching_ratio" in text and note in text
    flag = "sigma_at_bound" if model == "sepp" else "triggering_vanished"
    assert fitted["details"][flag] is True
    # the printed estimate is the fitted one
    assert f"{fitted['theta']:.4g}" in text
    assert text.index("estimates") < text.index("wrote")  # the result, then the file


def test_fit_notes_are_silent_on_a_regular_fit() -> None:
    from placecast.cli._fit import degenerate_notes, estimate_rows

    fit = {"model": "sepp", "theta": 0.4, "branching_ratio": 0.39, "omega": 0.2,
           "sigma": 80.0, "background_rate": 2.0, "converged": True,
           "standard_errors": {"theta": 0.05, "sigma": 5.0},
           "intervals_95": {"theta": [0.302, 0.498]},
           "details": {"sigma_at_bound": False, "triggering_vanished": False}}
    assert degenerate_notes(fit) == []
    rows = {row[0]: row for row in estimate_rows(fit)}
    assert rows["theta"][3] == "0.302 .. 0.498"
    assert rows["sigma"][3] == "70.2 .. 89.8"  # 80 +- 1.96 x 5
    assert rows["omega"][2] == "-"  # no standard error: none invented
    # the marked model's JSON: names as in the R package, std_errors, a stopped fit
    marked = {"model": "etas_marked", "beta": 2.3, "mu": 0.5, "A": 0.2, "p": 1.1,
              "std_errors": {"beta": 0.1, "mu": 0.05, "A": float("nan")},
              "converged": False}
    rows = {row[0]: row for row in estimate_rows(marked)}
    assert set(rows) == {"beta", "mu", "A", "p"}
    assert rows["mu"][3] == "0.402 .. 0.598" and rows["A"][3] == "-"
    notes = degenerate_notes(marked)
    assert len(notes) == 1 and "without converging" in notes[0]


# ---------------------------------------------------------------------- 4. simulate defaults
def test_simulate_from_a_fit_uses_its_region_crs_and_the_day_after(tmp_path: Path) -> None:
    fit = tmp_path / "sepp.json"
    fitted = runner.invoke(app, ["fit", EVENTS, "--crs", PORTLAND_CRS, "--model", "sepp",
                                 "-o", str(fit)])
    assert fitted.exit_code == 0, fitted.output
    out = tmp_path / "what_if.csv"
    result = runner.invoke(app, ["simulate", "--params", str(fit), "--days", "30",
                                 "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    events = pd.read_csv(EVENTS)
    assert pd.Timestamp(frame.time.min()).normalize() == pd.Timestamp("2017-06-01")
    background = frame[frame.generation == 0]
    # in EPSG:2913 feet, inside the hull of the fitted events
    hull = shapely.convex_hull(shapely.multipoints(
        events[["x_coordina", "y_coordina"]].to_numpy(float)))
    inside = shapely.contains_xy(shapely.buffer(hull, 1.0), background.x, background.y)
    assert inside.all() and len(background) > 30
    assert "2017-06-01" in result.stderr and "EPSG:2913" in result.stderr
    # explicit options still win
    boxed = runner.invoke(app, ["simulate", "--params", str(fit), "--days", "10", "--bbox",
                                "0,0,1000,1000", "--start", "2020-01-01", "--seed", "1", "-o",
                                str(tmp_path / "b.csv")])
    assert boxed.exit_code == 0, boxed.output
    box = pd.read_csv(tmp_path / "b.csv")
    assert box[box.generation == 0].x.between(0, 1000).all()
    assert box.time.min().startswith("2020-01-01")


# ---------------------------------------------------------------------- 5. tune units
def test_tune_echoes_cell_sizes_as_given() -> None:
    result = runner.invoke(app, [
        "tune", EVENTS, "--crs", PORTLAND_CRS, "--model", "naive", "--grid",
        "lookback_days=30", "--cells", "1500ft,2000ft", "--tuning",
        "2016-01-06..2016-01-13", "--evaluation", "2016-02-03..2016-02-10", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "1500ft" in result.stdout and "2000ft" in result.stdout
    assert "457.20" not in result.stdout.split("chosen")[0]  # not echoed in metres
    assert re.search(r"chosen: cell (1500|2000)ft \((457\.20|609\.60) m\)", result.stdout)


# ---------------------------------------------------------------------- 6. unit choices
def test_hex_and_polygon_units_say_what_they_chose(tmp_path: Path) -> None:
    base = ["forecast", EVENTS, "--crs", PORTLAND_CRS, "--at", "2017-03-01", "--model",
            "naive"]
    hexes = runner.invoke(app, [*base, "--units", "hex", "--cell", "2000ft", "--region",
                                REGION, "-o", str(tmp_path / "h.csv")])
    assert hexes.exit_code == 0, hexes.output
    match = re.search(r"H3 resolution (\d+)", hexes.stderr)
    assert match is not None
    import h3

    area = (2000 * 0.3048) ** 2  # nearest average hexagon area to --cell squared
    best = min(range(16), key=lambda r: abs(h3.average_hexagon_area(r, unit="m^2") - area))
    assert int(match.group(1)) == best
    polygons = runner.invoke(app, [*base, "--units", "polygons", "--units-file", REGION,
                                   "-o", str(tmp_path / "p.csv")])
    assert polygons.exit_code == 0, polygons.output
    assert "row numbers" in polygons.stderr and "--units-id" in polygons.stderr
    named = runner.invoke(app, [*base, "--units", "polygons", "--units-file", REGION,
                                "--units-id", "DISTRICT", "-o", str(tmp_path / "n.csv")])
    assert named.exit_code == 0 and "row numbers" not in named.stderr


# ---------------------------------------------------------------------- 7. audit groups
def test_grid_over_the_union_of_groups_loses_no_unit() -> None:
    import pyogrio

    from placecast.audit import assign_groups
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    events = read_events(EVENTS, crs=PORTLAND_CRS)
    units = build_units(events, UnitSpec(cell_size=182.88, region=REGION))
    assignment = assign_groups(units, REGION, "DISTRICT")
    assert (assignment.unit_group >= 0).all()  # 548 units were "(outside groups)"
    n_edge = assignment.description["n_units_by_overlap"]
    assert 0 < n_edge < len(units) // 10
    # independent check: each unit's group is the district it overlaps most or the one
    # holding its centroid; units with their centroid inside keep that district
    frame = pyogrio.read_dataframe(REGION)
    sref = units.spatial_reference
    geoms = shapely.transform(
        shapely.make_valid(frame.geometry.to_numpy()), lambda c: np.column_stack(
            sref.from_crs_coordinates(c[:, 0], c[:, 1], frame.crs.to_string())))
    labels = assignment.labels[assignment.unit_group]
    rng = np.random.default_rng(0)
    for i in rng.choice(len(units), 200, replace=False):
        overlap = shapely.area(shapely.intersection(units.geometry[i], geoms))
        centre = shapely.points(units.centroids[i])
        holding = np.flatnonzero(shapely.intersects(geoms, centre))
        districts = frame.DISTRICT.astype(str).to_numpy()
        if len(holding):
            assert labels[i] in set(districts[holding])
        else:
            assert labels[i] == districts[int(np.argmax(overlap))]


# ---------------------------------------------------------------------- 8. conventions
def test_version_and_flags_are_flags() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"placecast {version('placecast')}"
    for command in ("backtest", "watch", "inspect", "audit", "report", "datasets"):
        help_text = runner.invoke(app, [command, "--help"]).stdout
        assert "<bool>" not in help_text, command
    wrong = runner.invoke(app, ["watch", "watch.json", "--once", "true"])
    assert wrong.exit_code == 2 and "unexpected extra argument" in wrong.output.lower()


def test_help_texts_list_models_and_show_no_raw_markup() -> None:
    from placecast.cli._fit import FIT_HANDLERS
    from placecast.models import MODELS

    demo = runner.invoke(app, ["demo", "--help"]).stdout
    assert "``" not in demo and "kde model" in demo
    forecast = re.sub(r"[\s│]+", " ", runner.invoke(app, ["forecast", "--help"]).stdout)
    for name in MODELS:
        assert re.search(rf"\b{name}\b", forecast), name
    fit = re.sub(r"[\s│]+", " ", runner.invoke(app, ["fit", "--help"]).stdout)
    for name in FIT_HANDLERS:
        assert re.search(rf"\b{name}\b", fit), name
    assert set(FIT_HANDLERS) >= {"etas", "sepp", "etas_marked"}


def test_tables_keep_their_titles_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.table import Table

    from placecast.cli._app import print_table

    _no_forced_terminal(monkeypatch)
    table = Table(title="a title much longer than the two narrow columns of this table")
    table.add_column("a")
    table.add_column("b")
    table.add_row("1", "2")
    result = runner.invoke(app, ["--help"])  # makes sure the CLI is set up
    assert result.exit_code == 0
    import io

    from rich.console import Console

    buffer = io.StringIO()
    print_table(table, to=Console(file=buffer))
    lines = buffer.getvalue().splitlines()
    assert lines[0].strip() == "a title much longer than the two narrow columns of this table"
    assert table.title is not None  # the table itself is left as it was


def test_watch_prints_a_summary_table(tmp_path: Path) -> None:
    config = tmp_path / "watch.json"
    config.write_text(json.dumps({
        "events": {"path": EVENTS, "crs": PORTLAND_CRS, "since": "2017-01-01"},
        "check": "scan",
        "scan": {"cell": "1000m", "max_radius": "1km", "max_days": 7, "study_days": 30,
                 "permutations": 9, "random_state": 1},
        "threshold": {"p_value": 1.0},
        "sinks": [{"type": "file", "path": "alerts.jsonl"}]}))
    result = runner.invoke(app, ["watch", str(config), "--once"])
    assert result.exit_code == 0, result.output
    assert "watch run" in result.stderr and "new alerts" in result.stderr
    assert "{" not in result.stderr  # not a raw dict


def test_scan_reports_replication_progress(tmp_path: Path, shared_data: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    prm = shared_data / "satscan" / "satscan_test1.prm"
    _force_terminal(monkeypatch)
    shown = runner.invoke(app, ["scan", "--satscan", str(prm), "--permutations", "99",
                                "--randomization", "numpy", "-o", str(tmp_path / "s")])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"replications(\s|\x1b\[[0-9;]*m)+[━╸╺]", shown.stderr)
    assert "99/99" in shown.stderr
    _no_forced_terminal(monkeypatch)
    plain = runner.invoke(app, ["scan", "--satscan", str(prm), "--permutations", "99",
                                "--randomization", "numpy", "-o", str(tmp_path / "t")])
    assert plain.exit_code == 0 and "replications" not in plain.stderr
