"""``placecast audit`` end to end: synthetic data with known groups, bad input, Portland."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box
from typer.testing import CliRunner

from placecast.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    """Two years of events on a 2 km x 2 km local grid, 80% of them in a western hot spot,
    and two group polygons (west, east) with a population column."""
    folder = tmp_path_factory.mktemp("audit_synthetic")
    rng = np.random.default_rng(42)
    n = 1500
    hot = rng.random(n) < 0.8
    x = np.where(hot, rng.normal(500, 120, n), rng.uniform(0, 2000, n)).clip(1, 1999)
    y = np.where(hot, rng.normal(1000, 120, n), rng.uniform(0, 2000, n)).clip(1, 1999)
    days = rng.uniform(0, 760, n)  # 2015-03-01 .. 2017-03-31
    times = pd.Timestamp("2015-03-01") + pd.to_timedelta(days, unit="D")
    events = folder / "events.csv"
    pd.DataFrame({"time": times.strftime("%Y-%m-%d"), "x": x, "y": y}).to_csv(events,
                                                                              index=False)
    groups = gpd.GeoDataFrame({"side": ["west", "east"], "pop": [1000.0, 3000.0]},
                              geometry=[box(0, 0, 1000, 2000), box(1000, 0, 2000, 2000)])
    groups_path = folder / "groups.geojson"
    with warnings.catch_warnings():  # a local grid has no CRS to write
        warnings.simplefilter("ignore", UserWarning)
        groups.to_file(groups_path, driver="GeoJSON")
    return events, groups_path


def base_args(events: Path, out: Path) -> list[str]:
    return ["audit", str(events), "--x", "x", "--y", "y", "--time", "time", "--crs", "local:m",
            "--model", "kde", "--cell", "200m", "--area", "5%", "--start", "2017-01-03",
            "--end", "2017-02-28", "--n-boot", "99", "-o", str(out)]


def test_audit_writes_tables_plots_and_model_card(synthetic, tmp_path):
    events, groups = synthetic
    out = tmp_path / "audit"
    result = runner.invoke(app, [*base_args(events, out), "--groups", str(groups),
                                 "--group-by", "side", "--population", "pop",
                                 "--simulate-feedback", "--periods", "3", "--runs", "1"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"performance.csv", "performance_by_origin.csv", "exposure_units.csv",
            "exposure_runs.csv", "flags.csv", "disparity.csv", "disparity.png",
            "feedback.csv", "feedback_summary.csv", "feedback.png", "model_card.md",
            "model_card.html", "audit.json"} <= names
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    per_origin = pd.read_csv(out / "performance_by_origin.csv")
    assert len(per_origin) == 8  # 8 whole weeks from 2017-01-03 to 2017-02-28
    flags = pd.read_csv(out / "flags.csv")
    assert len(flags) == per_origin["n_flagged_units"].sum()
    disparity = pd.read_csv(out / "disparity.csv").set_index("group")
    assert disparity["flag_share"].sum() == pytest.approx(1.0)
    assert disparity["event_share"].sum() == pytest.approx(1.0)
    # the western hot spot holds most events and (a kde policy) essentially all flags
    assert disparity.loc["west", "event_share"] > 0.7
    assert disparity.loc["west", "flag_share"] > disparity.loc["west", "event_share"]
    assert disparity.loc["west", "population"] == pytest.approx(1000, rel=0.05)
    feedback = pd.read_csv(out / "feedback_summary.csv")
    assert set(feedback["variant"]) == {"policy", "no_feedback", "citizen_only", "ipw",
                                        "randomised"}
    html = (out / "model_card.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"(src|href)\s*=\s*['\"]?https?:", html)  # self-contained
    markdown = (out / "model_card.md").read_text()
    for heading in ("Data provenance and period", "Model and parameters",
                    "Backtest performance", "Exposure of area units",
                    "Disparity across area groups", "Feedback-loop simulation", "Limitations"):
        assert f"## {heading}" in markdown
    assert "![" in markdown and "disparity.png" in markdown


@pytest.mark.parametrize(("extra", "message"), [
    (["--groups", "GROUPS"], "--groups and --group-by go together"),
    (["--groups", "GROUPS", "--group-by", "district"], "no column 'district'"),
    (["--plot-format", "gif"], "png or svg"),
    (["--area", "0.0001%"], "smaller than one unit"),
    (["--simulate-feedback", "--truth", "oracle"], "use history or forecast"),
    (["--model", "etas", "--simulate-feedback"], "needs a model with a lookback_days"),
])
def test_audit_bad_input_exits_2_and_writes_nothing(synthetic, tmp_path, extra, message):
    events, groups = synthetic
    out = tmp_path / "audit"
    args = [a.replace("GROUPS", str(groups)) for a in extra]
    result = runner.invoke(app, [*base_args(events, out), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists() or not any(out.iterdir())


def test_audit_needs_a_whole_window(synthetic, tmp_path):
    events, _ = synthetic
    args = base_args(events, tmp_path / "a")
    args[args.index("--end") + 1] = "2017-01-05"
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "holds no whole 7d window" in " ".join(result.output.split())


@pytest.fixture(scope="module")
def portland_dir(request) -> Path:
    """The Portland data: ``shared_data``, or $PLACECAST_SHARED_DATA in a worktree."""
    override = os.environ.get("PLACECAST_SHARED_DATA")
    if override:
        return Path(override) / "portland"
    return request.getfixturevalue("shared_data") / "portland"


def test_portland_audit_by_police_district(portland_dir, tmp_path):
    districts = portland_dir / "police_districts" / "Portland_Police_Districts.shp"
    out = tmp_path / "portland"
    result = runner.invoke(app, [
        "audit", str(portland_dir / "burglary_2012-03_2017-05.csv"), "--crs", "EPSG:2913",
        "--model", "kde", "--cell", "600ft", "--area", "0.25sqmi", "--start", "2017-01-03",
        "--end", "2017-03-01", "--region", str(districts), "--groups", str(districts),
        "--group-by", "DISTRICT", "--n-boot", "199", "--simulate-feedback", "--periods", "2",
        "--runs", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    per_origin = pd.read_csv(out / "performance_by_origin.csv")
    assert len(per_origin) == 8
    assert (per_origin["n_flagged_units"] == 19).all()  # 19 cells of 600 ft fit in 0.25 sq mi
    disparity = pd.read_csv(out / "disparity.csv", dtype={"group": str})
    assert len(disparity) >= 57  # the police districts (+ cells whose centroid is outside)
    assert disparity["n_units"].sum() == 11985
    assert disparity["event_share"].sum() == pytest.approx(1.0)
    assert disparity["total_events"].sum() == per_origin["n_events"].sum()
