from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from _helpers_selfexcite import brute_force_pairs, sepp_loglik_reference
from scipy import optimize

from placecast.events import Events, SpatialReference
from placecast.exceptions import DataError, NotFittedError, ParameterError
from placecast.forecast import TimeWindow
from placecast.models import MODELS, make_model
from placecast.models._hawkes import solve_spatial_scale, window_integrals
from placecast.models._hawkes_kernels import near_pairs
from placecast.models.sepp import SEPP, BackgroundDensity, fit_sepp, sepp_loglik
from placecast.models.simulate import simulate_sepp
from placecast.units import square_grid

SREF = SpatialReference("local:m")


def small_case(seed):
    rng = np.random.default_rng(seed)
    n = 30
    time = np.sort(rng.uniform(0, 20, n))
    x = rng.uniform(0, 600, n)
    y = rng.uniform(0, 600, n)
    time[7] = time[6]  # a tie in time: no excitation between simultaneous events
    x[12], y[12] = x[11], y[11]  # a repeat at the same place
    background = rng.uniform(1e-6, 5e-6, n)
    return time, x, y, background


@pytest.mark.parametrize(("seed", "time_cutoff", "distance_cutoff"), [
    (0, math.inf, math.inf), (1, 5.0, 250.0), (2, 12.0, math.inf), (3, math.inf, 150.0)])
def test_loglik_matches_loops_and_quadrature(seed, time_cutoff, distance_cutoff):
    time, x, y, background = small_case(seed)
    args = (time, x, y, background, 1.7, 0.6, 0.4, 80.0, 0.0, 21.0)
    fast = sepp_loglik(*args, time_cutoff=time_cutoff, distance_cutoff=distance_cutoff)
    slow = sepp_loglik_reference(*args, time_cutoff=time_cutoff,
                                 distance_cutoff=distance_cutoff)
    assert fast == pytest.approx(slow, rel=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_near_pairs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 300
    time = np.sort(rng.integers(0, 60, n).astype(float))  # many ties
    x = rng.uniform(0, 3000, n)
    y = rng.uniform(0, 2000, n)
    indptr, parent, lag, dist2 = near_pairs(time, x, y, 7.0, 400.0)
    found = {(int(parent[q]), j) for j in range(n) for q in range(indptr[j], indptr[j + 1])}
    assert found == brute_force_pairs(time, x, y, 7.0, 400.0)
    j = np.repeat(np.arange(n), np.diff(indptr))
    np.testing.assert_allclose(lag, time[j] - time[parent])
    np.testing.assert_allclose(dist2, (x[j] - x[parent]) ** 2 + (y[j] - y[parent]) ** 2)


def test_solve_spatial_scale_maximises_the_profile():
    s, r, cutoff = 50.0, 50.0 * 2 * 120.0**2, 300.0

    def negative(log_v):
        v = np.exp(log_v)
        return -(-s * np.log(-np.expm1(-cutoff**2 / (2 * v))) - s * np.log(v) - r / (2 * v))

    best = optimize.minimize_scalar(negative, bounds=(0, 20), method="bounded",
                                    options={"xatol": 1e-12})
    assert solve_spatial_scale(s, r, cutoff) == pytest.approx(np.sqrt(np.exp(best.x)),
                                                              rel=1e-6)
    assert solve_spatial_scale(s, r, math.inf) == pytest.approx(120.0)
    assert solve_spatial_scale(s, 0.0, cutoff, minimum=10.0) == pytest.approx(10.0)


def test_inner_em_reaches_the_maximum_likelihood():
    sim = simulate_sepp(background_rate=3.0, region=(0, 0, 5000, 5000), theta=0.5,
                        omega=0.3, sigma=80.0, days=200, random_state=4)
    fit, state = fit_sepp(sim.time, sim.x, sim.y, 0.0, 200.0, background_updates=0,
                          tol=1e-10, max_iter=3000)
    h = state.density(sim.x, sim.y)

    def negative(p):
        nu, theta, omega, sigma = np.exp(p)
        return -sepp_loglik(sim.time, sim.x, sim.y, nu * h, nu * 200.0, theta, omega, sigma,
                            0.0, 200.0, time_cutoff=90.0, distance_cutoff=1000.0)

    start = np.log([fit.background_rate, fit.theta, fit.omega, fit.sigma]) + 0.1
    best = optimize.minimize(negative, start, method="Nelder-Mead",
                             options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 5000})
    assert fit.converged
    assert fit.loglik == pytest.approx(-negative(np.log([fit.background_rate, fit.theta,
                                                         fit.omega, fit.sigma])), rel=1e-12)
    assert fit.loglik >= -best.fun - 1e-6
    np.testing.assert_allclose([fit.theta, fit.omega, fit.sigma], np.exp(best.x[1:]),
                               rtol=1e-3)


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_simulate_then_fit_recovers_parameters(seed):
    truth = {"branching_ratio": 0.5, "omega": 0.2, "sigma": 100.0}
    sim = simulate_sepp(background_rate=5.0, region=(0, 0, 10000, 10000), theta=0.5,
                        omega=0.2, sigma=100.0, days=365, random_state=seed)
    model = SEPP().fit(sim.to_events())
    fit = model.fit_
    assert fit.converged
    for name, value in truth.items():
        assert abs(getattr(fit, name) - value) < 3 * fit.standard_errors[name], name
    assert fit.background_rate == pytest.approx(5.0, rel=0.15)
    # the fraction triggered estimates the simulated share of offspring
    assert fit.fraction_triggered == pytest.approx(1 - sim.n_background / len(sim), abs=0.05)


def test_background_density_integrates_to_one():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1000, 500), rng.normal(0, 500, 500)
    density = BackgroundDensity.estimate(x, y, None, 300.0)
    assert density.values.sum() * density.pixel_size**2 == pytest.approx(1.0)
    assert density(np.array([1e9]), np.array([0.0]))[0] == 0.0


@pytest.fixture(scope="module")
def fitted():
    sim = simulate_sepp(background_rate=4.0, region=(0, 0, 4000, 4000), theta=0.4,
                        omega=0.3, sigma=60.0, days=300, random_state=8)
    events = sim.to_events()
    window = TimeWindow.starting("2020-10-01", "7d")
    model = SEPP(time_cutoff=60.0, distance_cutoff=600.0).fit(events.before(window.start))
    return model, events, window


def test_model_contract(fitted):
    model, events, window = fitted
    assert MODELS["sepp"] is SEPP
    fresh = make_model("sepp", time_cutoff=60.0, distance_cutoff=600.0)
    assert fresh.get_params()["time_cutoff"] == 60.0
    units = square_grid(shapely.box(0, 0, 4000, 4000), 500.0, SREF)
    with pytest.raises(NotFittedError):
        fresh.predict(units, window)
    assert fresh.fit(events.before(window.start)) is fresh
    forecast = fresh.predict(units, window)
    assert forecast.intensity.shape == (len(units),)
    assert (forecast.intensity >= 0).all()
    np.testing.assert_array_equal(forecast.intensity, model.predict(units, window).intensity)


def test_predict_total_matches_background_and_excitation(fitted):
    model, events, window = fitted
    big = square_grid(shapely.box(-20000, -20000, 24000, 24000), 4000.0, SREF)
    forecast = model.predict(big, window)
    history = events.before(window.start)
    start = float((window.start - model.origin_) / np.timedelta64(1, "D"))
    age = start - history.days_since(model.origin_)
    keep = age <= 60.0
    excitation = np.sum(model.theta_ * np.exp(-model.omega_ * age[keep]))
    e1, e2 = window_integrals(model.omega_, model.branching_ratio_, 7.0)
    nu = model.background_rate_
    expected = (nu + model.omega_ * excitation) * e1 + model.omega_ * nu * e2
    assert forecast.expected_total == pytest.approx(expected, rel=1e-3)


def test_repeat_addresses_put_sigma_on_its_bound():
    rng = np.random.default_rng(2)
    days = np.sort(rng.uniform(0, 200, 400))
    sites = rng.uniform(0, 5000, (40, 2))
    pick = rng.integers(0, 40, 400)
    events = Events.from_arrays(np.datetime64("2020-01-01") + (days * 86400).astype(
        "timedelta64[s]"), sites[pick, 0], sites[pick, 1])
    model = SEPP(sigma_min=15.0).fit(events)
    assert model.sigma_ == pytest.approx(15.0)
    assert model.fit_.details["sigma_at_bound"]
    assert math.isnan(model.fit_.standard_errors["sigma"])


@pytest.mark.parametrize(("params", "message"), [
    ({"time_cutoff": 0}, "time_cutoff must be a positive number"),
    ({"background_updates": -1}, "background_updates must be a non-negative integer"),
    ({"sigma_min": -1.0}, "sigma_min must be a length >= 0"),
    ({"theta_init": 2.0}, "theta_init must be in"),
])
def test_bad_parameters(fitted, params, message):
    _, events, _ = fitted
    with pytest.raises(ParameterError, match=message):
        SEPP(**params).fit(events)


def test_too_few_events():
    with pytest.raises(DataError, match="at least two events"):
        SEPP().fit(Events.from_arrays(["2020-01-01"], [0.0], [0.0]))
