"""``placecast backtest`` and ``placecast tune`` through the CLI runner."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from placecast.cli import app
from placecast.evaluate import COLUMNS

runner = CliRunner()


@pytest.fixture(scope="module")
def files(shared_data):
    folder = shared_data / "portland"
    return (folder / "burglary_2012-03_2017-05.csv",
            folder / "police_districts" / "Portland_Police_Districts.shp")


def base(files, *extra):
    events, region = files
    return ["backtest", str(events), "--crs", "EPSG:2913", "--region", str(region),
            "--since", "2015-06-01", "--jobs", "1", *extra]


def test_backtest_writes_results_plot_and_report(files, tmp_path):
    out = tmp_path / "results.csv"
    result = runner.invoke(app, base(files, "--models", "naive,kde", "--cell", "1500ft",
                                     "--area", "1%", "--start", "2016-06-01", "--end",
                                     "2016-06-15", "--horizon", "7d,14d", "-o", str(out),
                                     "--plot", str(tmp_path / "pai.svg"), "--report",
                                     str(tmp_path / "report.html"), "-p",
                                     "kde.bandwidth=300"))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert tuple(frame.columns) == COLUMNS and len(frame) == 3 * 2 * 2
    assert "Wilcoxon signed-rank p" in result.output and "best mean PAI" in result.output
    assert (tmp_path / "pai.svg").read_text().lstrip().startswith("<?xml")
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "Paired comparison" in page and "bandwidth" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pai.svg", "report.html",
                                                          "results.csv"]  # checkpoint gone


def test_nij_protocol(files, tmp_path):
    out = tmp_path / "nij.csv"
    result = runner.invoke(app, base(files, "--protocol", "nij", "--models", "naive",
                                     "--cell", "600ft", "-o", str(out)))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.horizon) == ["7d", "14d", "1M", "2M", "3M"]
    assert (frame.origin == "2017-03-01").all()
    assert (frame.n_flagged_units == 20).all()  # fewest 600 ft cells covering 0.25 sq mi
    sqmi = frame.flagged_area / 1609.344**2
    assert ((sqmi >= 0.25) & (sqmi <= 0.75)).all()
    assert frame.n_events.is_monotonic_increasing
    assert "PEI*" in result.output


@pytest.mark.parametrize(("extra", "message"), [
    (["--cell", "1000ft"], "62,500 to 360,000 sq ft"),
    (["--cell", "600ft", "--area", "0.25sqmi"], "flags 19 cells"),
    (["--cell", "600ft", "--area", "1sqmi"], "0.25 to 0.75 sq mi"),
    (["--cell", "600ft", "--horizon", "7d"], "drop --horizon"),
])
def test_nij_protocol_refuses_rule_breaking_settings(files, tmp_path, extra, message):
    out = tmp_path / "nij.csv"
    result = runner.invoke(app, base(files, "--protocol", "nij", "--models", "naive",
                                     "-o", str(out), *extra))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("extra", "message"), [
    (["--start", "2015-01-01", "--end", "2015-02-01"], "not after the data start"),
    (["--start", "2017-05-20", "--end", "2017-05-27"], "past the end of the data"),
    (["--start", "2016-06-01", "--end", "2016-06-08", "--area", "100sqft"],
     "smaller than one unit"),
    (["--start", "2016-06-01", "--end", "2016-06-08", "--area", "200sqmi"],
     "larger than the region"),
    (["--start", "2016-06-01", "--end", "2016-06-08", "--models", "naive,magic"],
     "unknown model 'magic'"),
    (["--start", "2016-06-01", "--end", "2016-06-08", "-p", "bandwidth=3"],
     "say which model"),
    (["--start", "2016-06-01"], "give --start and --end"),
])
def test_bad_input_exits_2_and_writes_nothing(files, tmp_path, extra, message):
    out = tmp_path / "results.csv"
    result = runner.invoke(app, base(files, "--cell", "1500ft", "-o", str(out),
                                     "--report", str(tmp_path / "r.html"), *extra))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_tune_command(files, tmp_path):
    events, region = files
    out = tmp_path / "tuning.csv"
    result = runner.invoke(app, [
        "tune", str(events), "--crs", "EPSG:2913", "--region", str(region), "--since",
        "2015-06-01", "--model", "kde", "--grid", "bandwidth=150,400", "--cells", "1500ft",
        "--tuning", "2016-04-01..2016-04-15", "--evaluation", "2016-05-01..2016-05-08",
        "--area", "1%", "--jobs", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "chosen: cell" in result.output and "kde-tuned" in result.output
    assert len(pd.read_csv(out)) == 2
    bad = runner.invoke(app, [
        "tune", str(events), "--crs", "EPSG:2913", "--region", str(region), "--model", "kde",
        "--grid", "bandwidth=150", "--cells", "1500ft", "--tuning", "2016-04-01..2016-05-01",
        "--evaluation", "2016-05-01..2016-05-08", "--jobs", "1"])
    assert bad.exit_code == 2 and "evaluation period" in bad.output


def test_cli_resumes_an_interrupted_run(files, tmp_path):
    from placecast.evaluate import run_backtest
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units
    from placecast.quantities import parse_length

    events_path, region = files
    out = tmp_path / "results.csv"
    args = base(files, "--models", "naive,kde", "--cell", "1500ft", "--area", "1%",
                "--start", "2016-06-01", "--end", "2016-06-22", "-o", str(out))
    # an interrupted run of the same backtest leaves two origins in the default checkpoint
    events = read_events(events_path, crs="EPSG:2913", since="2015-06-01")
    units = build_units(events, UnitSpec(cell_size=parse_length("1500ft"), region=region))
    folder = tmp_path / ".results.csv.checkpoint"

    def interrupt(n_done, n_total):
        if n_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_backtest(events, units, models=["naive", "kde"], start="2016-06-01",
                     end="2016-06-22", area="1%", checkpoint=folder, progress=interrupt)
    assert not out.exists() and len(list(folder.glob("origin-*.npz"))) == 2
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert not folder.exists()
    fresh_out = tmp_path / "fresh.csv"
    fresh = runner.invoke(app, [*args[:-1], str(fresh_out)])
    assert fresh.exit_code == 0, fresh.output
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(fresh_out))


def test_tune_grid_placement(files, tmp_path):
    """Grid shift and rotation are tuned on the tuning period only, then reported."""
    from placecast.evaluate import tune
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    events_path, region = files
    out = tmp_path / "placement.csv"
    result = runner.invoke(app, [
        "tune", str(events_path), "--crs", "EPSG:2913", "--region", str(region), "--since",
        "2015-06-01", "--model", "naive", "--cells", "1500ft", "--shifts", "0,0.5",
        "--rotations", "0,30", "--tuning", "2016-04-01..2016-04-15", "--evaluation",
        "2016-05-01..2016-05-08", "--area", "1%", "--jobs", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 8  # 2 x 2 shifts x 2 rotations
    assert {"shift_x", "shift_y", "rotation"} <= set(table.columns)
    assert "grid shifted" in result.output
    # the placements are different grids: a shifted / rotated grid has other cells
    events = read_events(events_path, crs="EPSG:2913", since="2015-06-01")
    calls = []

    def make_units(size, shift=None, angle=None):
        calls.append((shift, angle))
        return build_units(events, UnitSpec(cell_size=size, region=region,
                                            rotation=angle or 0.0))

    found = tune(events, make_units, model="naive", grid={}, cell_sizes=[457.2],
                 tuning_start="2016-04-01", tuning_end="2016-04-15",
                 evaluation_start="2016-05-01", area="1%", rotations=[0.0, 30.0])
    assert calls == [((0.0, 0.0), 0.0), ((0.0, 0.0), 30.0)]
    assert found.best_placement is not None and found.best_placement[2] in (0.0, 30.0)
    bad = runner.invoke(app, [
        "tune", str(events_path), "--crs", "EPSG:2913", "--region", str(region), "--model",
        "naive", "--cells", "1500ft", "--shifts", "0,1.5", "--tuning",
        "2016-04-01..2016-04-15", "--evaluation", "2016-05-01..2016-05-08"])
    assert bad.exit_code == 2 and "--shifts" in bad.output
