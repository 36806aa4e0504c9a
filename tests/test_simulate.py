from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from placecast.cli import app
from placecast.events import SpatialReference
from placecast.exceptions import ParameterError
from placecast.forecast import TimeWindow
from placecast.models.etas import GridETAS
from placecast.models.sepp import SEPP
from placecast.models.simulate import simulate_grid_etas, simulate_sepp
from placecast.units import square_grid

SREF = SpatialReference("local:m")


def test_sepp_offspring_follow_the_kernels():
    sim = simulate_sepp(background_rate=20.0, region=(0, 0, 20000, 20000), theta=0.6,
                        omega=0.25, sigma=150.0, days=400, random_state=1)
    child = sim.parent >= 0
    delay = sim.time[child] - sim.time[sim.parent[child]]
    r2 = (sim.x[child] - sim.x[sim.parent[child]]) ** 2 + (
        sim.y[child] - sim.y[sim.parent[child]]) ** 2
    assert (delay > 0).all()
    # exponential delays (mean 1/omega, slightly short because of the end of the period)
    assert np.mean(delay) == pytest.approx(4.0, rel=0.05)
    # Gaussian displacement: E r^2 = 2 sigma^2
    assert np.mean(r2) == pytest.approx(2 * 150.0**2, rel=0.05)
    # each event has Poisson(0.6) children: total ~ background / (1 - 0.6)
    assert len(sim) == pytest.approx(sim.n_background / 0.4, rel=0.05)
    assert sim.n_background == pytest.approx(8000, rel=0.05)
    assert (np.diff(sim.time) >= 0).all()
    assert (sim.generation[child] == sim.generation[sim.parent[child]] + 1).all()


def test_sepp_cutoffs_truncate_the_kernels():
    sim = simulate_sepp(background_rate=10.0, region=(0, 0, 5000, 5000), theta=0.9,
                        omega=0.05, sigma=300.0, days=200, time_cutoff=10.0,
                        distance_cutoff=200.0, random_state=2)
    child = sim.parent >= 0
    assert child.any()
    assert (sim.time[child] - sim.time[sim.parent[child]] <= 10.0).all()
    assert (np.hypot(sim.x[child] - sim.x[sim.parent[child]],
                     sim.y[child] - sim.y[sim.parent[child]]) <= 200.0 + 1e-9).all()


def test_grid_etas_offspring_stay_in_their_cell():
    cells = square_grid(shapely.box(0, 0, 2000, 2000), 500.0, SREF)
    sim = simulate_grid_etas(mu=np.linspace(0.1, 1.0, 16), units=cells, theta=0.5,
                             omega=0.5, days=100, random_state=3)
    child = sim.parent >= 0
    assert (sim.cell[child] == sim.cell[sim.parent[child]]).all()
    np.testing.assert_array_equal(cells.assign(sim.x, sim.y), sim.cell)


def test_same_seed_same_draw_and_bad_parameters():
    kwargs = dict(background_rate=2.0, region=(0, 0, 1000, 1000), theta=0.3, omega=1.0,
                  sigma=50.0, days=50)
    a = simulate_sepp(**kwargs, random_state=7)
    b = simulate_sepp(**kwargs, random_state=7)
    np.testing.assert_array_equal(a.x, b.x)
    with pytest.raises(ParameterError, match="branching ratio must be in"):
        simulate_sepp(**{**kwargs, "theta": 1.2}, random_state=1)
    with pytest.raises(ParameterError, match="region box"):
        simulate_sepp(**{**kwargs, "region": (0, 0, -1, 5)}, random_state=1)
    cells = square_grid(shapely.box(0, 0, 1000, 1000), 500.0, SREF)
    with pytest.raises(ParameterError, match="mu must hold 4 non-negative rates"):
        simulate_grid_etas(mu=[1.0, 2.0], units=cells, theta=0.2, omega=1.0, days=5)


def test_fitted_models_simulate():
    cells = square_grid(shapely.box(0, 0, 2000, 2000), 1000.0, SREF)
    sim = simulate_grid_etas(mu=np.full(4, 0.5), units=cells, theta=0.4, omega=0.5,
                             days=200, random_state=4)
    window = TimeWindow.starting("2021-01-01", "30d")
    etas = GridETAS(random_state=1).fit(sim.to_events(), units=cells)
    drawn = etas.simulate(window)
    assert len(drawn) > 0 and (drawn.time >= window.start).all()
    assert (cells.assign(drawn.x, drawn.y) >= 0).all()
    sepp = SEPP(random_state=1).fit(sim.to_events())
    drawn = sepp.simulate(window)
    assert len(drawn) > 0 and (drawn.time < window.end).all()


def test_cli_simulate_then_fit(tmp_path):
    runner = CliRunner()
    events_csv = tmp_path / "sim.csv"
    result = runner.invoke(app, ["simulate", "--model", "sepp", "--param", "theta=0.5",
                                 "--param", "omega=0.2", "--param", "sigma=100",
                                 "--param", "background_rate=5", "--days", "300",
                                 "--bbox", "0,0,8000,8000", "--seed", "5", "-o",
                                 str(events_csv)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(events_csv)
    assert list(frame.columns) == ["time", "x", "y", "parent", "generation"]
    out = tmp_path / "params.json"
    result = runner.invoke(app, ["fit", str(events_csv), "--model", "sepp", "--crs",
                                 "local:m", "-o", str(out)])
    assert result.exit_code == 0, result.output
    params = json.loads(out.read_text())
    for key in ("theta", "branching_ratio", "omega", "sigma", "loglik", "iterations",
                "run_time_s", "background", "standard_errors"):
        assert key in params
    assert abs(params["branching_ratio"] - 0.5) < 4 * params["standard_errors"][
        "branching_ratio"]
    out_etas = tmp_path / "etas.json"
    result = runner.invoke(app, ["fit", str(events_csv), "--model", "etas", "--crs",
                                 "local:m", "--cell", "400m", "-o", str(out_etas)])
    assert result.exit_code == 0, result.output
    etas = json.loads(out_etas.read_text())
    assert etas["cell_size_m"] == 400.0 and etas["sigma"] is None
    # simulate again from the fitted parameters
    again = tmp_path / "again.csv"
    result = runner.invoke(app, ["simulate", "--params", str(out), "--days", "30", "--seed",
                                 "1", "-o", str(again)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(again)) > 0


def test_cli_errors_exit_2(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--model", "hawkes", "-o",
                                 str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "simulate knows 'etas' and 'sepp'" in result.output
    result = runner.invoke(app, ["simulate", "--bbox", "0,0,-5,5", "-o",
                                 str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "max > min" in result.output
    result = runner.invoke(app, ["simulate", "--param", "bandwidth=3", "-o",
                                 str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert not (tmp_path / "x.csv").exists()
