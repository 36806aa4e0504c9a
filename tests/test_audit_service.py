"""The service's audit job is ``run_audit``: same origins, same exposure numbers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")

from _helpers_service import CELL, make_service, memphis_csv  # noqa: E402


@pytest.fixture(scope="module")
def audited(tmp_path_factory, shared_data):
    """A service with the Memphis robberies and one finished audit job."""
    with make_service(tmp_path_factory.mktemp("audit_service")) as svc:
        r = svc.upload("memphis", memphis_csv(shared_data))
        assert r.status_code == 201, r.text
        body = {"dataset": "memphis", "model": "kde", "cell_size": CELL, "horizon": "7d",
                "start": "2019-11-01", "end": "2019-11-15", "step": "7d", "area": "2%",
                "factor": 3.0}
        r = svc.client.post("/audits", headers=svc.headers("analyst"), json=body)
        assert r.status_code == 202, r.text
        assert svc.app.state.jobs.wait_idle(120)
        job = svc.client.get(f"/audits/{r.json()['id']}", headers=svc.headers("viewer")).json()
        assert job["status"] == "succeeded", job
        events = svc.app.state.store.load_events("memphis")
        yield job["result"], events


def test_service_audit_equals_run_audit(audited):
    from placecast.audit import run_audit
    from placecast.pipeline import UnitSpec, build_units

    result, events = audited
    units = build_units(events, UnitSpec(cell_size=1000.0))
    # the request's `end` is the last origin; the audit's is the end of the last window
    audit = run_audit(events, units, model="kde", start="2019-11-01", end="2019-11-22",
                      horizon="7d", area="2%", factor=3.0)
    expected = audit.exposure.to_dict()
    assert result["n_origins"] == audit.n_periods == 3
    assert result["summary"] == pytest.approx(expected["summary"], rel=0, abs=0)
    assert [row["unit_id"] for row in result["over_under"]] == [
        row["unit_id"] for row in expected["over_under"]][:500]
    np.testing.assert_array_equal([row["n_flagged"] for row in result["over_under"]],
                                  [row["n_flagged"] for row in expected["over_under"]][:500])
    assert [row["metric"] for row in result["performance"]] == list(
        audit.performance["metric"])
    np.testing.assert_allclose([row["mean"] for row in result["performance"]],
                               audit.performance["mean"].to_numpy(), rtol=1e-12)


def test_service_audit_keeps_the_old_origins_and_flags(audited):
    """Independent of run_audit: the backtest over origins start..end (last origin)."""
    from placecast.audit import exposure_audit
    from placecast.evaluate import run_backtest
    from placecast.pipeline import UnitSpec, build_units

    result, events = audited
    units = build_units(events, UnitSpec(cell_size=1000.0))
    backtest = run_backtest(events, units, models=["kde"], start="2019-11-01",
                            end="2019-11-15", step="7d", horizons=["7d"], area="2%")
    direct = exposure_audit(backtest.flags("kde", "7d"), backtest.observed["7d"],
                            unit_id=units.unit_id, factor=3.0)
    assert len(backtest.origins) == result["n_origins"]
    for key in ("n_flags", "n_units_ever_flagged", "gini_flags", "gini_events",
                "persistence", "n_over", "n_under"):
        assert result["summary"][key] == pytest.approx(direct.summary[key], rel=1e-12), key
