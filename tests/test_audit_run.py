"""``run_audit`` and ``AuditResult``: the library, the CLI, the service and the report agree."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box
from typer.testing import CliRunner

from placecast.audit import (
    AuditResult,
    audit_origins,
    model_card_text,
    read_model_card,
    run_audit,
)
from placecast.cli import app
from placecast.evaluate import rolling_origins
from placecast.exceptions import DataError, ParameterError
from placecast.io import ColumnMap, read_events
from placecast.pipeline import UnitSpec, build_units

runner = CliRunner()

#: The files whose bytes must agree (plots carry matplotlib's timestamps and random ids).
EXACT = ("performance_by_origin.csv", "performance.csv", "exposure_units.csv",
         "exposure_runs.csv", "flags.csv", "disparity.csv", "feedback.csv",
         "feedback_summary.csv", "model_card.md", "audit.json")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    """Two years of events on a 2 km local grid, most in a western hot spot; two groups."""
    folder = tmp_path_factory.mktemp("audit_run")
    rng = np.random.default_rng(7)
    n = 1200
    hot = rng.random(n) < 0.75
    x = np.where(hot, rng.normal(500, 150, n), rng.uniform(0, 2000, n)).clip(1, 1999)
    y = np.where(hot, rng.normal(1000, 150, n), rng.uniform(0, 2000, n)).clip(1, 1999)
    times = pd.Timestamp("2015-03-01") + pd.to_timedelta(rng.uniform(0, 760, n), unit="D")
    events = folder / "events.csv"
    pd.DataFrame({"time": times.strftime("%Y-%m-%d"), "x": x, "y": y}).to_csv(events,
                                                                              index=False)
    groups = gpd.GeoDataFrame({"side": ["west", "east"], "pop": [1000.0, 3000.0]},
                              geometry=[box(0, 0, 1000, 2000), box(1000, 0, 2000, 2000)])
    path = folder / "groups.geojson"
    with warnings.catch_warnings():  # a local grid has no CRS to write
        warnings.simplefilter("ignore", UserWarning)
        groups.to_file(path, driver="GeoJSON")
    return events, path


SETTINGS = dict(model="kde", start="2017-01-03", end="2017-02-21", horizon="7d", area="5%",
                group_by="side", population="pop", n_boot=49, simulate_feedback=True,
                periods=3, runs=1, seed=3)


@pytest.fixture(scope="module")
def cli_and_library(synthetic, tmp_path_factory):
    """The same audit through ``placecast audit`` and through ``run_audit``."""
    events_path, groups = synthetic
    folder = tmp_path_factory.mktemp("audit_pair")
    cli_dir, lib_dir = folder / "cli", folder / "lib"
    result = runner.invoke(app, [
        "audit", str(events_path), "--x", "x", "--y", "y", "--time", "time", "--crs",
        "local:m", "--cell", "200m", "--model", "kde", "--area", "5%", "--start",
        "2017-01-03", "--end", "2017-02-21", "--groups", str(groups), "--group-by", "side",
        "--population", "pop", "--n-boot", "49", "--simulate-feedback", "--periods", "3",
        "--runs", "1", "--seed", "3", "-o", str(cli_dir)])
    assert result.exit_code == 0, result.output
    events = read_events(events_path, columns=ColumnMap(time="time", x="x", y="y"),
                         crs="local:m")
    spec = UnitSpec(cell_size=200.0)
    units = build_units(events, spec)
    audit = run_audit(events, units, groups=groups, source=str(events_path), unit_spec=spec,
                      **SETTINGS)
    written = audit.write(lib_dir)
    return cli_dir, lib_dir, audit, written, units, events


def test_run_audit_writes_what_the_cli_writes(cli_and_library):
    cli_dir, lib_dir, audit, written, _, _ = cli_and_library
    assert sorted(p.name for p in cli_dir.iterdir()) == sorted(p.name for p in written)
    for name in EXACT:
        assert (cli_dir / name).read_bytes() == (lib_dir / name).read_bytes(), name
    # the HTML card embeds the plots; apart from them it is the same page
    def without_figures(path: Path) -> str:
        return re.sub(r"<figure>.*?</figure>", "", path.read_text(), flags=re.S)

    assert without_figures(cli_dir / "model_card.html") == without_figures(
        lib_dir / "model_card.html")
    assert audit.n_periods == 7
    assert audit.disparity is not None and audit.feedback is not None
    assert json.loads((lib_dir / "audit.json").read_text()) == audit.to_dict()
    pd.testing.assert_frame_equal(audit.to_frame(), audit.exposure.units)


def test_run_audit_numbers_come_from_its_backtest(cli_and_library):
    """Exposure and flags are those of the policy backtest (independent recount)."""
    _, _, audit, _, units, _ = cli_and_library
    flags = audit.backtest.flags("kde", "7d")
    observed = audit.backtest.observed["7d"]
    assert flags.shape == (7, len(units))
    assert len(audit.flags) == int(flags.sum()) == audit.exposure.summary["n_flags"]
    per_unit = pd.Series(flags.sum(axis=0), index=units.unit_id)
    table = audit.exposure.units.set_index("unit_id")
    np.testing.assert_array_equal(table.loc[per_unit.index, "n_flagged"], per_unit)
    np.testing.assert_allclose(table.loc[units.unit_id, "n_events"], observed.sum(axis=0))
    # the origins are the one generator's: start, start + 7d, ... with the window ending
    # by the end of the audited period
    expected = rolling_origins("2017-01-03", "2017-02-14", "7d")
    assert list(audit.per_origin["origin"]) == [str(o)[:10] for o in expected]


def test_audit_result_reads_back_what_it_wrote(cli_and_library, tmp_path):
    cli_dir, _, audit, _, _, _ = cli_and_library
    again = AuditResult.read(cli_dir)
    assert again.backtest is None
    assert again.title == audit.title and again.policy == audit.policy
    assert again.exposure.summary == audit.to_dict()["exposure"]["summary"]
    assert again.disparity is not None
    np.testing.assert_allclose(again.disparity.table["ratio"], audit.disparity.table["ratio"])
    rewritten = again.write(tmp_path / "again")
    assert {p.name for p in rewritten} == {p.name for p in cli_dir.iterdir()}
    for name in EXACT:
        assert (tmp_path / "again" / name).read_bytes() == (cli_dir / name).read_bytes(), name


@pytest.mark.parametrize("name", ["model_card.md", "model_card.html", "audit.json", "."])
def test_every_card_format_gives_the_same_card(cli_and_library, name):
    cli_dir = cli_and_library[0]
    card = read_model_card(cli_dir / name)
    assert card.to_markdown(cli_dir) == (cli_dir / "model_card.md").read_text()
    assert model_card_text(cli_dir / name) == (cli_dir / "model_card.md").read_text()


@pytest.mark.parametrize("name", ["model_card.md", "model_card.html", "audit.json", "."])
def test_audit_output_is_report_input(cli_and_library, synthetic, tmp_path, name):
    """audit -> report: ``report --model-card`` takes every card format ``audit`` writes."""
    cli_dir = cli_and_library[0]
    events_path, _ = synthetic
    out = tmp_path / "report.html"
    result = runner.invoke(app, [
        "report", str(events_path), "--x", "x", "--y", "y", "--time", "time", "--crs",
        "local:m", "--cell", "200m", "--model", "naive", "--at", "2017-02-21", "--area",
        "5%", "--model-card", str(cli_dir / name), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Model card: kde on 200 m grid, 5% per 7d" in page
    assert "Exposure of area units" in page
    assert "class='kv'" not in page  # the card's text, not its HTML page pasted in


def test_report_refuses_a_page_no_audit_wrote(synthetic, tmp_path):
    page = tmp_path / "card.html"
    page.write_text("<html><body>hi</body></html>")
    with pytest.raises(DataError, match="not a model card an audit wrote"):
        model_card_text(page)
    with pytest.raises(DataError, match="no such model card"):
        model_card_text(tmp_path / "missing.md")
    with pytest.raises(DataError, match="no audit.json"):
        AuditResult.read(tmp_path)
    text = tmp_path / "card.txt"
    text.write_text("Intended use: planning.")
    assert model_card_text(text) == "Intended use: planning."


def test_audit_origins_tile_the_period():
    origins = audit_origins("2017-01-31", "2017-05-01", "1M").astype("datetime64[D]")
    assert [str(o) for o in origins] == ["2017-01-31", "2017-02-28", "2017-03-31"]
    with pytest.raises(ParameterError, match="holds no whole 7d window") as info:
        audit_origins("2017-01-03", "2017-01-05", "7d")
    assert "end" in info.value.params and "--" not in str(info.value)
    # a step other than the horizon: overlapping windows, still ending by `end`
    origins = audit_origins("2017-01-01", "2017-01-22", "14d", step="7d")
    assert [str(o)[:10] for o in origins] == ["2017-01-01", "2017-01-08"]


@pytest.mark.parametrize(("settings", "param"), [
    ({"groups": "x.geojson"}, "group_by"),
    ({"quantiles": 4}, "quantiles"),
    ({"assign": "nearest"}, "assign"),
    ({"simulate_feedback": True, "truth": "oracle"}, "truth"),
    ({"simulate_feedback": True, "detection": 0.0}, "detection"),
    ({"simulate_feedback": True, "periods": 0}, "periods"),
    ({"area": "0.0001%"}, None),
])
def test_run_audit_refuses_bad_settings_before_the_backtest(cli_and_library, settings, param):
    _, _, _, _, units, events = cli_and_library
    base = dict(model="kde", start="2017-01-03", end="2017-02-21")
    with pytest.raises(ParameterError) as info:
        run_audit(events, units, **{**base, **settings})
    message = str(info.value)
    if param is not None:  # the library names parameters, not flags
        assert param in info.value.params and f"`{param}`" in message
        assert "--" not in message
