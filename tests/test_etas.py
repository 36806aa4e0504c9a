from __future__ import annotations

import numpy as np
import pytest
import shapely
from _helpers_selfexcite import grid_etas_loglik_reference
from scipy import optimize

from placecast.events import Events, SpatialReference
from placecast.exceptions import DataError, DataQualityWarning, NotFittedError, ParameterError
from placecast.forecast import TimeWindow
from placecast.models import MODELS, make_model
from placecast.models._hawkes import solve_decay, window_integrals
from placecast.models.etas import GridETAS, fit_grid_etas, grid_etas_loglik, smooth_over_units
from placecast.models.simulate import simulate_grid_etas
from placecast.units import square_grid

SREF = SpatialReference("local:m")


@pytest.fixture(scope="module")
def cells():
    return square_grid(shapely.box(0, 0, 3000, 3000), 1000.0, SREF)


@pytest.fixture(scope="module")
def simulated(cells):
    sim = simulate_grid_etas(mu=np.full(9, 0.5), units=cells, theta=0.5, omega=0.2,
                             days=400, random_state=11)
    return sim


def small_case(seed):
    rng = np.random.default_rng(seed)
    time = np.sort(rng.uniform(0, 30, 25))
    time[5] = time[4]  # a tie: simultaneous events must not excite each other
    cell = rng.integers(0, 3, 25)
    cell[5] = cell[4]
    mu = np.array([0.2, 0.35, 0.1])
    return time, cell, mu


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loglik_matches_loop_and_quadrature(seed):
    time, cell, mu = small_case(seed)
    fast = grid_etas_loglik(time, cell, mu, 0.4, 0.7, 0.0, 31.0)
    slow = grid_etas_loglik_reference(time, cell, mu, 0.4, 0.7, 0.0, 31.0)
    assert fast == pytest.approx(slow, rel=1e-8)


def test_em_reaches_the_maximum_likelihood(cells):
    time, cell, _ = small_case(3)
    time = np.concatenate([time, time[:10] + 0.3])  # some clustering to identify theta
    cell = np.concatenate([cell, cell[:10]])
    fit, mu, _ = fit_grid_etas(time, cell, 3, 0.0, 31.0, tol=1e-10, max_iter=5000)

    def negative(p):
        return -grid_etas_loglik(time, cell, np.exp(p[2:]), np.exp(p[0]), np.exp(p[1]),
                                 0.0, 31.0)

    start = np.log([0.3, 0.5, 0.3, 0.3, 0.3])
    best = optimize.minimize(negative, start, method="Nelder-Mead",
                             options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000,
                                      "maxfev": 40000})
    assert fit.converged
    assert fit.loglik >= -best.fun - 1e-6
    assert fit.loglik == pytest.approx(grid_etas_loglik(time, cell, mu, fit.theta, fit.omega,
                                                        0.0, 31.0), rel=1e-12)
    np.testing.assert_allclose([fit.theta, fit.omega], np.exp(best.x[:2]), rtol=1e-3)


def test_standard_errors_match_numerical_hessian(simulated, cells):
    days = simulated.time
    fit, mu, _ = fit_grid_etas(days, simulated.cell, 9, 0.0, 400.0, tol=1e-10, max_iter=2000)
    p0 = np.concatenate([[fit.theta, fit.omega], mu])

    def loglik(p):
        return grid_etas_loglik(days, simulated.cell, p[2:], p[0], p[1], 0.0, 400.0)

    k = len(p0)
    steps = 1e-4 * p0
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.zeros(k), np.zeros(k)
            ei[i], ej[j] = steps[i], steps[j]
            hess[i, j] = (loglik(p0 + ei + ej) - loglik(p0 + ei - ej) - loglik(p0 - ei + ej)
                          + loglik(p0 - ei - ej)) / (4 * steps[i] * steps[j])
    se = np.sqrt(np.diag(np.linalg.inv(-hess)))
    np.testing.assert_allclose([fit.standard_errors["theta"], fit.standard_errors["omega"]],
                               se[:2], rtol=1e-3)


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_simulate_then_fit_recovers_parameters(cells, seed):
    theta, omega = 0.5, 0.2
    sim = simulate_grid_etas(mu=np.full(9, 0.5), units=cells, theta=theta, omega=omega,
                             days=600, random_state=seed)
    fit, mu, _ = fit_grid_etas(sim.time, sim.cell, 9, 0.0, 600.0)
    assert fit.converged
    assert abs(fit.theta - theta) < 3 * fit.standard_errors["theta"]
    assert abs(fit.omega - omega) < 3 * fit.standard_errors["omega"]
    assert mu.sum() == pytest.approx(4.5, rel=0.2)


def test_window_integrals_match_monte_carlo(cells):
    # a fresh process (no history) in one cell: expected count over D days
    one = square_grid(shapely.box(0, 0, 100, 100), 100.0, SREF)
    mu, theta, omega, days = 0.3, 0.6, 0.5, 10.0
    e1, e2 = window_integrals(omega, theta, days)
    expected = mu * e1 + omega * mu * e2
    rng = np.random.default_rng(5)
    counts = [len(simulate_grid_etas(mu=[mu], units=one, theta=theta, omega=omega, days=days,
                                     random_state=rng)) for _ in range(3000)]
    assert abs(np.mean(counts) - expected) < 4 * np.std(counts) / np.sqrt(len(counts))
    # no triggering: the background alone
    e1, e2 = window_integrals(2.0, 0.0, days)
    assert mu * e1 + 2.0 * mu * e2 == pytest.approx(mu * days)


def test_solve_decay_maximises_the_profile():
    rng = np.random.default_rng(0)
    horizon = rng.uniform(0, 50, 200)
    s, d = 40.0, 120.0
    omega = solve_decay(s, d, horizon)

    def negative(log_omega):
        w = np.exp(log_omega)
        return -(s * np.log(w) - w * d - s * np.log(np.sum(-np.expm1(-w * horizon))))

    best = optimize.minimize_scalar(negative, bounds=(-10, 5), method="bounded",
                                    options={"xatol": 1e-12})
    assert omega == pytest.approx(np.exp(best.x), rel=1e-6)


def test_model_contract(simulated, cells):
    assert MODELS["etas"] is GridETAS
    model = make_model("etas", cell_size=500.0, tol=1e-7)
    assert model.get_params()["cell_size"] == 500.0
    events = simulated.to_events()
    with pytest.raises(NotFittedError):
        model.predict(cells, TimeWindow.starting("2021-01-01", "7d"))
    assert model.fit(events) is model
    assert model.units_.description["cell_size_m"] == 500.0
    window = TimeWindow.starting("2021-02-01", "7d")
    forecast = model.predict(cells, window)
    assert forecast.intensity.shape == (9,)
    assert (forecast.intensity >= 0).all()
    assert forecast.model == "etas"
    again = make_model("etas", cell_size=500.0, tol=1e-7).fit(events).predict(cells, window)
    np.testing.assert_array_equal(forecast.intensity, again.intensity)


def test_predict_by_hand_on_fitted_and_on_other_units(simulated, cells):
    events = simulated.to_events()
    window = TimeWindow.starting("2021-02-05", "14d")
    history = events.before(window.start)
    model = GridETAS(tol=1e-9).fit(history, units=cells)
    start = float((window.start - model.origin_) / np.timedelta64(1, "D"))
    days = history.days_since(model.origin_)
    index = cells.assign(history.x, history.y)

    def by_hand(mu, theta, omega, cell):
        rate0 = mu[cell] + omega * np.sum(theta * np.exp(-omega * (start - days[index == cell])))
        e1, e2 = window_integrals(omega, theta, 14.0)
        return rate0 * e1 + omega * mu[cell] * e2

    # on the fitted units: the fitted estimates (period: first to last event)
    direct = model.predict(cells, window)
    for cell in (0, 4):
        assert direct.intensity[cell] == pytest.approx(
            by_hand(model.mu_, model.theta_, model.omega_, cell), rel=1e-12)
    # on other units (an equal grid): refit there, the period ending at the window start
    same_grid = square_grid(shapely.box(0, 0, 3000, 3000), 1000.0, SREF)
    refit = model.predict(same_grid, window)
    fit, mu, _ = fit_grid_etas(days, index, 9, float(days.min()), start, tol=1e-9)
    for cell in (0, 4):
        assert refit.intensity[cell] == pytest.approx(by_hand(mu, fit.theta, fit.omega, cell),
                                                      rel=1e-5)
    np.testing.assert_allclose(direct.intensity, refit.intensity, rtol=0.02)


def test_background_smoothing_preserves_the_total(simulated, cells):
    values = np.arange(9, dtype=float)
    smooth = smooth_over_units(values, cells, 800.0)
    assert smooth.sum() == pytest.approx(values.sum())
    assert smooth.std() < values.std()
    events = simulated.to_events()
    window = TimeWindow.starting("2021-02-01", "7d")
    plain = GridETAS().fit(events, units=cells).predict(cells, window)
    smoothed = GridETAS(background_smoothing=800.0).fit(events, units=cells).predict(cells,
                                                                                     window)
    assert smoothed.expected_total == pytest.approx(plain.expected_total)


@pytest.mark.parametrize(("params", "message"), [
    ({"cell_size": -5}, "cell_size must be a positive number"),
    ({"theta_init": 1.5}, "theta_init must be in"),
    ({"max_iter": 0}, "max_iter must be a positive integer"),
    ({"background_smoothing": "wide"}, "background_smoothing must be a positive number"),
])
def test_bad_parameters(simulated, params, message):
    with pytest.raises(ParameterError, match=message):
        GridETAS(**params).fit(simulated.to_events())


def test_events_outside_units_warn_and_no_events_fail(cells):
    ev = Events.from_arrays(["2020-01-01", "2020-01-02", "2020-01-05"], [10.0, 20.0, 9e6],
                            [10.0, 20.0, 9e6])
    with pytest.warns(DataQualityWarning, match="1 of 3 events lie outside the units"):
        GridETAS().fit(ev, units=cells)
    far = Events.from_arrays(["2020-01-01", "2020-01-02"], [9e6, 9e6], [9e6, 9e6])
    with pytest.raises(DataError, match="no event falls inside the units"):
        GridETAS().fit(far, units=cells)
    with pytest.raises(DataError, match="observation period is empty"):
        GridETAS().fit(Events.from_arrays(["2020-01-01"], [1.0], [1.0]))
