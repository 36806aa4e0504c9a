"""Explained forecasts in the service: ``explain: true`` and the GeoJSON's reasons."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("lightgbm")

from _helpers_service import CELL, make_service, memphis_csv  # noqa: E402

REQUEST = {"dataset": "memphis", "model": "boost", "cell_size": CELL, "at": "2019-12-01",
           "horizon": "14d", "area": "2%", "explain": True}
EXPLAINED = ("reason_1", "effect_1", "reason_2", "effect_2", "reason_3", "effect_3")


@pytest.fixture(scope="module")
def explained(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("explain")
    with make_service(folder) as svc:
        assert svc.upload("memphis", memphis_csv(shared_data)).status_code == 201
        r = svc.client.post("/forecasts", headers=svc.headers("analyst"), json=REQUEST)
        assert r.status_code == 201, r.text
        yield svc, r.json()["id"], folder


def _features(svc, forecast_id):
    r = svc.client.get(f"/forecasts/{forecast_id}/geojson?area=2%25",
                       headers=svc.headers("viewer"))
    assert r.status_code == 200, r.text
    return r.json()["features"]


def test_geojson_carries_the_libraries_explanations(explained, shared_data):
    """Each feature's reasons and effects are the library's ``details`` for that unit."""
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units, run_forecast

    svc, forecast_id, _ = explained
    events = read_events(memphis_csv(shared_data))
    units = build_units(events, UnitSpec(cell_size=1000.0))
    direct = run_forecast(events, model="boost", at="2019-12-01", horizon="14d",
                          units=units, explain=True)
    assert direct.details is not None
    features = _features(svc, forecast_id)
    assert len(features) == len(units)
    by_unit = {f["properties"]["unit_id"]: f["properties"] for f in features}
    for i, unit in enumerate(map(str, direct.units.unit_id)):
        props = by_unit[unit]
        for name in EXPLAINED:
            want = direct.details[name].iloc[i]
            if name.startswith("reason"):
                assert props[name] == want, (unit, name)
            else:
                assert props[name] == pytest.approx(float(want), abs=1e-6), (unit, name)
    # The flagged units are explained: their first reason is a named feature that
    # multiplies the expected count by more than 1.
    flagged = [p for p in by_unit.values() if p["flagged"]]
    assert flagged
    assert all(p["reason_1"] and p["effect_1"] > 1.0 for p in flagged)
    intensity = np.array([by_unit[u]["intensity"] for u in map(str, direct.units.unit_id)])
    np.testing.assert_allclose(intensity, direct.intensity, rtol=1e-5, atol=1e-6)


def test_explanations_survive_a_restart(explained):
    """The explanation columns are kept with the service's state, not only in memory."""
    svc, forecast_id, folder = explained
    before = _features(svc, forecast_id)
    with make_service(folder) as again:
        after = _features(again, forecast_id)
    assert [f["properties"] for f in after] == [f["properties"] for f in before]


def test_unexplained_forecast_has_no_reason_columns(explained):
    svc, _, _ = explained
    r = svc.client.post("/forecasts", headers=svc.headers("analyst"),
                        json={**REQUEST, "model": "naive", "explain": False})
    assert r.status_code == 201, r.text
    props = _features(svc, r.json()["id"])[0]["properties"]
    assert set(props) == {"unit_id", "intensity", "rank", "flagged"}


@pytest.mark.parametrize("model", ["kde", "naive"])
def test_explain_with_a_model_that_cannot_is_a_clear_422(explained, model):
    svc, _, _ = explained
    n_before = len(svc.app.state.store.list_forecasts())
    r = svc.client.post("/forecasts", headers=svc.headers("analyst"),
                        json={**REQUEST, "model": model})
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "explain"
    assert f"the {model} model cannot explain" in body["detail"]
    assert "boost" in body["detail"] and "--" not in body["detail"]
    assert "`" not in body["detail"]  # parameter names rendered as JSON fields
    assert len(svc.app.state.store.list_forecasts()) == n_before  # nothing saved


def test_explain_must_be_a_boolean(explained):
    svc, _, _ = explained
    r = svc.client.post("/forecasts", headers=svc.headers("analyst"),
                        json={**REQUEST, "explain": "maybe"})
    assert r.status_code == 422 and "explain" in r.json()["detail"]
