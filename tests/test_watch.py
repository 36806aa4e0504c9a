"""``placecast watch`` end to end against a local webhook receiver."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _helpers_clusters import planted_events_frame
from placecast.alerting import Watcher, deliver_webhook, load_watch_config
from placecast.cli import app
from placecast.exceptions import DataError, ParameterError

ALERT_KEYS = {"alert_id", "check", "kind", "detected_at", "location_ids", "start", "end",
              "observed", "expected", "p_value", "recurrence_interval", "geometry"}


class Receiver:
    """A webhook receiver on 127.0.0.1 in a thread, recording the JSON it gets."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, url: str, retries: int = 2) -> Path:
    planted_events_frame().to_csv(tmp_path / "events.csv", index=False)
    config = {
        "name": "test-watch",
        "events": {"path": "events.csv", "x": "x", "y": "y", "time": "time",
                   "crs": "local:m"},
        "check": "scan",
        "scan": {"round": "100m", "max_radius": "600m", "max_days": 7, "permutations": 99,
                 "random_state": 0},
        "threshold": {"p_value": 0.05},
        "sinks": [{"type": "stdout"}, {"type": "file", "path": "alerts.jsonl"},
                  {"type": "webhook", "url": url, "timeout": 2, "retries": retries,
                   "backoff": 0.5}],
        "log": "watch.log",
    }
    path = tmp_path / "watch.json"
    path.write_text(json.dumps(config))
    return path


def test_watch_sends_each_new_cluster_once(tmp_path: Path, receiver: Receiver) -> None:
    out = io.StringIO()
    watcher = Watcher(load_watch_config(_config(tmp_path, f"http://127.0.0.1:{receiver.port}/")),
                      stdout=out)
    first = watcher.run_once()
    assert first.ran_check and len(first.new_alerts) >= 1
    assert len(receiver.received) == len(first.new_alerts)
    alert = receiver.received[0]
    assert set(alert) == ALERT_KEYS  # areas and counts only
    assert alert["observed"] > alert["expected"] and alert["p_value"] <= 0.05
    assert alert["geometry"]["type"] == "Polygon"
    assert [json.loads(line) for line in out.getvalue().splitlines()] == receiver.received
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == len(first.new_alerts)
    # unchanged data: the check does not even run
    second = watcher.run_once()
    assert not second.ran_check and second.new_alerts == ()
    # forced: the cluster persists, so nothing is re-sent
    third = watcher.run_once(force=True)
    assert third.ran_check and third.n_signals >= 1 and third.new_alerts == ()
    assert len(receiver.received) == len(first.new_alerts)


def test_unreachable_receiver_is_retried_logged_and_nothing_lost(tmp_path: Path) -> None:
    port = _free_port()
    waits: list[float] = []
    watcher = Watcher(load_watch_config(_config(tmp_path, f"http://127.0.0.1:{port}/hook",
                                                retries=3)),
                      stdout=io.StringIO(), sleep=waits.append)
    report = watcher.run_once()
    assert len(report.new_alerts) >= 1
    assert report.queued == len(report.new_alerts)
    assert waits[:3] == [0.5, 1.0, 2.0]            # exponential backoff between 4 tries
    assert "delivery failed" in (tmp_path / "watch.log").read_text()
    outbox = (tmp_path / ".test-watch.outbox.jsonl").read_text().splitlines()
    assert len(outbox) == len(report.new_alerts)
    # still down on the next run: still kept
    again = watcher.run_once()
    assert again.queued == len(report.new_alerts)
    # the receiver comes up: the next run delivers what was waiting
    receiver = Receiver(port=port)
    try:
        later = watcher.run_once()
        assert later.queued == 0 and later.delivered == len(report.new_alerts)
        assert [a["alert_id"] for a in receiver.received] == [
            a.alert_id for a in report.new_alerts]
    finally:
        receiver.close()
    assert (tmp_path / ".test-watch.outbox.jsonl").read_text() == ""


def test_webhook_http_error_is_a_failure(receiver: Receiver) -> None:
    bad = Receiver(status=500)
    try:
        ok, error = deliver_webhook({"a": 1}, f"http://127.0.0.1:{bad.port}/", retries=1,
                                    backoff=0, sleep=lambda s: None)
        assert not ok and "HTTP 500" in error and len(bad.received) == 2
    finally:
        bad.close()
    ok, _ = deliver_webhook({"a": 1}, f"http://127.0.0.1:{receiver.port}/", sleep=lambda s: None)
    assert ok and receiver.received == [{"a": 1}]


def test_watch_cli_once_and_bounded_schedule(tmp_path: Path, receiver: Receiver) -> None:
    config = _config(tmp_path, f"http://127.0.0.1:{receiver.port}/")
    res = CliRunner().invoke(app, ["watch", str(config), "--once"])
    assert res.exit_code == 0, res.output
    assert '"alert_id"' in res.output
    res = CliRunner().invoke(app, ["watch", str(config), "--interval", "0", "--max-runs", "2"])
    assert res.exit_code == 0, res.output
    assert len(receiver.received) >= 1
    res = CliRunner().invoke(app, ["watch", str(config), "--interval", "5s"])
    assert res.exit_code == 2 and "--max-runs" in res.output


def test_bad_watch_configs(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text('{"check": "magic", "events": {"path": "e.csv"}}')
    with pytest.raises(ParameterError, match="check 'magic' is unknown"):
        load_watch_config(path)
    path.write_text('{"events": {"path": "e.csv"}, "sinks": [{"type": "webhook", "url": "x"}]}')
    with pytest.raises(ParameterError, match="needs an http\\(s\\) url"):
        load_watch_config(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_watch_config(path)
    toml = tmp_path / "w.toml"
    toml.write_text('name = "t"\ncheck = "hotspots"\n[events]\npath = "e.csv"\n'
                    '[[sinks]]\ntype = "file"\npath = "a.jsonl"\n')
    cfg = load_watch_config(toml)
    assert cfg.check == "hotspots" and cfg.sinks[0]["path"] == str(tmp_path / "a.jsonl")


def test_watch_emerging_hot_spots(tmp_path: Path) -> None:
    from placecast.datasets import portland_burglary_path

    config = tmp_path / "hot.toml"
    config.write_text(f'name = "hot"\ncheck = "hotspots"\n'
                      f'[events]\npath = "{portland_burglary_path()}"\ncrs = "EPSG:2913"\n'
                      '[hotspots]\ncell = "1000m"\nstep = "91d"\ndistance = "1200m"\n'
                      'patterns = ["new hot spot", "intensifying hot spot", '
                      '"persistent hot spot", "sporadic hot spot"]\n'
                      '[[sinks]]\ntype = "file"\npath = "alerts.jsonl"\n')
    watcher = Watcher(load_watch_config(config))
    first = watcher.run_once()
    assert first.new_alerts and first.queued == 0
    kinds = {a.kind for a in first.new_alerts}
    assert kinds <= {"new hot spot", "intensifying hot spot", "persistent hot spot",
                     "sporadic hot spot"}
    alert = json.loads((tmp_path / "alerts.jsonl").read_text().splitlines()[0])
    assert set(alert) == ALERT_KEYS and alert["geometry"]["type"] == "Polygon"
    lon, lat = alert["geometry"]["coordinates"][0][0]
    assert -123 < lon < -122 and 45 < lat < 46  # Portland, WGS 84
    assert watcher.run_once(force=True).new_alerts == ()


def test_watch_satscan_check_reruns_only_when_inputs_change(shared_data: Path,
                                                            tmp_path: Path) -> None:
    import shutil

    for name in ("satscan_test1.prm", "satscan_test1.cas", "satscan_test1.geo"):
        shutil.copy(shared_data / "satscan" / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    config = tmp_path / "sat.json"
    config.write_text(json.dumps({
        "name": "sat", "check": "satscan",
        "satscan": {"prm": "satscan_test1.prm"},
        "threshold": {"p_value": 1.0}, "sinks": [{"type": "file", "path": "a.jsonl"}]}))
    watcher = Watcher(load_watch_config(config))
    first = watcher.run_once()
    assert first.ran_check and [a.location_ids for a in first.new_alerts] == [
        ("23", "6", "16"), ("10",)]
    # the .prm's own replications (SaTScan's stream): the p-values SaTScan printed
    assert [a.p_value for a in first.new_alerts] == [50 / 248, 144 / 248]
    assert not watcher.run_once().ran_check
    with open(tmp_path / "satscan_test1.cas", "a") as handle:
        handle.write("3\t1\t990\n")  # a new case: the check runs again
    assert watcher.run_once().ran_check
