"""One Alert and one alert id: ``placecast watch`` and the service agree on a cluster's id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _helpers_service import CELL, make_service, memphis_csv
from placecast.cli import app
from placecast.clusters import ALERT_ID_LENGTH, Alert, alert_id, scan_alerts
from placecast.exceptions import ParameterError

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
MOVED = {"type": "Polygon", "coordinates": [[[5, 0], [6, 0], [6, 1], [5, 1], [5, 0]]]}


def test_alert_id_is_one_length_and_depends_on_kind_area_and_start() -> None:
    base = alert_id("space-time cluster", ["c1_r2", "c1_r3"], "2019/11/20", SQUARE)
    assert len(base) == ALERT_ID_LENGTH == 16 and int(base, 16) >= 0
    # the order of the locations does not matter
    assert alert_id("space-time cluster", ["c1_r3", "c1_r2"], "2019/11/20", SQUARE) == base
    # everything that makes it another cluster does
    others = {alert_id("new hot spot", ["c1_r2", "c1_r3"], "2019/11/20", SQUARE),
              alert_id("space-time cluster", ["c1_r2"], "2019/11/20", SQUARE),
              alert_id("space-time cluster", ["c1_r2", "c1_r3"], "2019/11/21", SQUARE),
              # same cell ids in another data set's grid: another place
              alert_id("space-time cluster", ["c1_r2", "c1_r3"], "2019/11/20", MOVED)}
    assert base not in others and len(others) == 4


def test_scan_alerts_thresholds(shared_data: Path) -> None:
    from placecast.clusters import read_satscan

    run = read_satscan(shared_data / "satscan" / "satscan_test1.prm")
    result = run.scan.run(run.data)
    everything = scan_alerts(result, check="t", p_value=1.0)
    assert [a.location_ids for a in everything] == [c.location_ids for c in result.clusters]
    assert all(isinstance(a, Alert) and a.kind == "space-time cluster" for a in everything)
    strict = scan_alerts(result, check="t", p_value=0.3)
    assert [a.alert_id for a in strict] == [a.alert_id for a in everything
                                            if a.p_value <= 0.3]
    assert len(strict) < len(everything)
    rare = scan_alerts(result, check="t", p_value=1.0, recurrence_interval=1e12)
    assert rare == []
    with pytest.raises(ParameterError, match="`p_value` must be between 0 and 1") as info:
        scan_alerts(result, check="t", p_value=1.5)
    assert info.value.param == "p_value"


@pytest.fixture(scope="module")
def memphis_service(tmp_path_factory, shared_data):  # noqa: ANN001, ANN201
    with make_service(tmp_path_factory.mktemp("alerts")) as svc:
        r = svc.upload("memphis", memphis_csv(shared_data))
        assert r.status_code == 201, r.text
        yield svc


def _service_job(svc, route: str, body: dict) -> dict:  # noqa: ANN001
    r = svc.client.post(route, headers=svc.headers("analyst"), json=body)
    assert r.status_code == 202, r.text
    assert svc.app.state.jobs.wait_idle(120)
    job = svc.client.get(f"{route}/{r.json()['id']}", headers=svc.headers("viewer")).json()
    assert job["status"] == "succeeded", job
    return job["result"]


def _watch(tmp_path: Path, shared_data: Path, check: str, options: dict,
           threshold: dict) -> list[dict]:
    config = tmp_path / f"{check}.json"
    config.write_text(json.dumps({
        "name": f"memphis-{check}", "check": check,
        "events": {"path": str(memphis_csv(shared_data))}, check: options,
        "threshold": threshold, "sinks": [{"type": "file", "path": "alerts.jsonl"}]}))
    res = CliRunner().invoke(app, ["watch", str(config), "--once"])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in
            (tmp_path / "alerts.jsonl").read_text().splitlines()]


def _key(alert: dict) -> tuple:
    return alert["kind"], tuple(sorted(alert["location_ids"])), alert["start"]


def test_watch_and_service_scan_give_a_cluster_the_same_id(memphis_service, shared_data,
                                                           tmp_path):
    svc = memphis_service
    result = _service_job(svc, "/scans", {
        "dataset": "memphis", "cell_size": CELL, "n_intervals": 30, "n_permutations": 19,
        "random_state": 3, "alpha": 0.99})
    stored = {a["id"]: a for a in svc.client.get(
        "/alerts?kind=space-time%20cluster", headers=svc.headers("viewer")).json()["alerts"]}
    service = [stored[i] for i in result["new_alerts"]]
    assert service and all(a["dataset"] == "memphis" for a in service)
    # the same scan as a watch: 30 daily intervals, clusters up to 15 days (the service's
    # default, half the study period), the same permutations and seed
    watched = _watch(tmp_path, shared_data, "scan", {
        "cell": CELL, "study_days": 30, "max_days": 15, "permutations": 19,
        "random_state": 3}, {"p_value": 0.99})
    assert watched
    by_key = {_key(a): a["id"] for a in service}
    common = [a for a in watched if _key(a) in by_key]
    # the most likely cluster is reported by both, and every shared cluster has one id
    assert _key(watched[0]) == _key(service[0])
    assert common and [a["alert_id"] for a in common] == [by_key[_key(a)] for a in common]
    assert watched[0]["alert_id"] == service[0]["id"]
    assert all(len(a["alert_id"]) == ALERT_ID_LENGTH for a in watched)


def test_watch_and_service_hotspots_give_a_unit_the_same_id(memphis_service, shared_data,
                                                            tmp_path):
    svc = memphis_service
    result = _service_job(svc, "/hotspots", {
        "dataset": "memphis", "cell_size": CELL, "step": "7d", "n_steps": 10,
        "distance": "2000m"})
    stored = {a["id"]: a for a in svc.client.get(
        "/alerts", headers=svc.headers("viewer")).json()["alerts"]}
    service = {_key(stored[i]): i for i in result["new_alerts"]}
    watched = _watch(tmp_path, shared_data, "hotspots", {
        "cell": CELL, "step": "7d", "n_steps": 10, "distance": "2000m"}, {"p_value": 1.0})
    assert service and len(watched) == len(service)
    assert {_key(a): a["alert_id"] for a in watched} == service


def test_io_satscan_names_are_deprecated_aliases_of_clusters() -> None:
    import placecast.clusters
    import placecast.io

    for name in ("read_satscan", "read_satscan_parameters", "write_satscan_files",
                 "write_satscan_report"):
        with pytest.warns(DeprecationWarning, match=f"placecast.clusters.{name}"):
            assert getattr(placecast.io, name) is getattr(placecast.clusters, name)
    with pytest.raises(AttributeError):
        placecast.io.scan_data_from_events  # noqa: B018


def test_io_imports_no_other_stage() -> None:
    """``io`` is a leaf: none of its modules imports clusters (or any stage above it)."""
    import ast
    from pathlib import Path

    import placecast.io

    folder = Path(placecast.io.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            if path.name == "__init__.py" and module == "placecast.clusters":
                continue  # the deprecated aliases, loaded on first use only
            assert not module.startswith(("placecast.clusters", "placecast.evaluate",
                                          "placecast.models", "placecast.audit")), (path, module)
