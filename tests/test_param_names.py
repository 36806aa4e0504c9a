"""Library errors name Python parameters (``param``); the CLI shows flags, the service fields.

Since the library is called from Python, the command line and the web service, its
messages name a parameter as `` `name` `` and carry it in ``PlacecastError.params``; each
front end renders it in its own terms (``render_message``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import placecast
from placecast.cli import app
from placecast.cli._app import flag_for
from placecast.events import to_datetime64
from placecast.exceptions import DataError, ParameterError, PlacecastError, render_message
from placecast.io import ColumnMap, read_events
from placecast.models import SEPP, make_model
from placecast.pipeline import UnitSpec, build_units
from placecast.quantities import parse_area, parse_duration, parse_length
from placecast.seismic import build_catalog

runner = CliRunner()

_CSV = "time,x,y\n2017-01-01,1000,2000\n2017-01-02,1100,2100\n2017-01-03,1200,2150\n"


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(_CSV)
    return path


def _raised(call, *args, **kwargs) -> PlacecastError:
    with pytest.raises(PlacecastError) as info:
        call(*args, **kwargs)
    return info.value


# ------------------------------------------------------------------ library: param names
@pytest.mark.parametrize(("call", "param", "text"), [
    (lambda: parse_length("600", name="cell_size"), "cell_size", "`cell_size` '600' has no unit"),
    (lambda: parse_area("0.25", name="area"), "area", "`area` '0.25' has no unit"),
    (lambda: parse_duration("7", name="horizon"), "horizon", "`horizon` '7' has no unit"),
    (lambda: to_datetime64("2017-13-45", name="start"), "start", "`start` '2017-13-45' is not"),
    (lambda: make_model("nosuch"), "model", "unknown model 'nosuch'"),
    (lambda: make_model("kde", nosuch=1), "model_params", "has no parameter 'nosuch'"),
    (lambda: build_catalog(np.array(["2000-01-01"] * 3, dtype="datetime64[ns]"), [1, 2, 3],
                           [1, 2, 3], [4, 5, 6], distance_unit="miles"),
     "distance_unit", "`distance_unit` 'miles' must be"),
])
def test_library_errors_carry_the_python_parameter_name(call, param, text):
    err = _raised(call)
    assert err.param == param
    assert text in str(err)
    assert not re.search(r"(?<![\w-])--[a-z]", str(err)), str(err)


def test_a_plain_word_is_not_a_parameter():
    err = _raised(parse_length, "600")
    assert err.param is None and str(err).startswith("length '600' has no unit")


def test_reader_errors_name_the_reading_option(small_csv: Path, tmp_path: Path):
    no_crs = _raised(read_events, small_csv)
    assert isinstance(no_crs, DataError) and no_crs.param == "crs"
    assert "Pass `crs` EPSG:xxxx" in str(no_crs)
    bad_crs = _raised(read_events, small_csv, crs="EPSG:99999999")
    assert isinstance(bad_crs, ParameterError) and bad_crs.param == "crs"
    zone = _raised(read_events, small_csv, crs="local:m", timezone="Mars/Olympus_Mons")
    assert zone.param == "timezone" and "`timezone` 'Mars/Olympus_Mons'" in str(zone)
    both = _raised(read_events, small_csv, columns=ColumnMap(x="x", y="y", lon="x", lat="y"))
    assert both.params == ("x", "y", "lon", "lat")
    missing = _raised(read_events, small_csv, columns=ColumnMap(time="when"), crs="local:m")
    assert missing.param == "time" and "Pass the right name with `time`." in str(missing)


def test_model_and_unit_errors_name_their_parameter(small_csv: Path):
    events = read_events(small_csv, crs="local:m")
    assert _raised(SEPP(sigma_min=-1.0).fit, events).param == "sigma_min"
    err = _raised(build_units, events, UnitSpec(kind="polygons"))
    assert err.param == "polygons" and "`polygons` FILE" in str(err)


# ------------------------------------------------------------------ CLI: flags
def test_flag_for_maps_python_names_to_the_flags_the_cli_has():
    assert flag_for("crs") == "--crs"
    assert flag_for("time_format") == "--time-format"
    assert flag_for("skip_bad_rows") == "--skip-bad-rows"
    assert flag_for("cell_size") == "--cell"
    assert flag_for("polygons") == "--units-file"
    assert flag_for("incident_id") == "--id"
    assert flag_for("mark") == "--magnitude"


def test_the_cli_shows_the_flag(small_csv: Path):
    result = runner.invoke(app, ["inspect", str(small_csv)])
    assert result.exit_code == 2
    assert "Pass --crs EPSG:xxxx" in result.output and "`" not in result.output
    result = runner.invoke(app, ["inspect", str(small_csv), "--crs", "local:m",
                                 "--timezone", "Mars/Olympus_Mons"])
    assert result.exit_code == 2
    assert "--timezone 'Mars/Olympus_Mons' is not a known time zone" in result.output


def test_the_cli_shows_a_renamed_flag(small_csv: Path):
    result = runner.invoke(app, ["forecast", str(small_csv), "--crs", "local:m",
                                 "--units", "polygons", "--at", "2017-01-04",
                                 "-o", str(small_csv.with_name("f.csv"))])
    assert result.exit_code == 2, result.output
    assert "polygon units need a polygon file (--units-file FILE)" in result.output


def test_render_message_leaves_other_backticks_alone():
    err = ParameterError("give `start` or run `placecast datasets`", param="start")
    assert render_message(err, flag_for) == "give --start or run `placecast datasets`"


# ------------------------------------------------------------------ service: JSON fields
def test_the_service_names_the_json_field(tmp_path: Path, small_csv: Path):
    pytest.importorskip("fastapi")
    from _helpers_service import make_service

    with make_service(tmp_path / "svc") as svc:
        r = svc.upload("nocrs", small_csv)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["field"] == "crs"
        assert "Pass crs EPSG:xxxx" in body["detail"] and "`" not in body["detail"]


# ------------------------------------------------------------------ no flags in the library
_FLAG = re.compile(r"(?<![\w-])--[a-z]")
SRC = Path(placecast.__file__).parent


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)]


def flag_mentions() -> list[str]:
    """``file:line`` of library code outside ``cli/`` whose error text names a flag.

    Looks at the string literals of ``raise`` statements and at ``name=``/``what=``
    arguments (the label a helper such as ``parse_length`` puts in its messages).
    """
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            texts: list[str] = []
            if isinstance(node, ast.Raise) and node.exc is not None:
                texts = _strings(node.exc)
            elif isinstance(node, ast.keyword) and node.arg in ("name", "what"):
                texts = _strings(node.value)
            if any(_FLAG.search(text) for text in texts):
                line = node.lineno if isinstance(node, ast.Raise) else node.value.lineno
                found.append(f"{relative}:{line}")
    return sorted(found, key=lambda where: (where.split(":")[0], int(where.split(":")[1])))


def test_the_scan_finds_a_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "pkg"
    (package / "cli").mkdir(parents=True)
    (package / "lib.py").write_text('def f(x):\n    raise ValueError(f"use a later --end, {x}")\n'
                                    'def g(t):\n    return parse(t, name="--step")\n'
                                    'def h(t):\n    raise ValueError("pass a later `end`")\n')
    (package / "cli" / "app.py").write_text('raise SystemExit("use --end")\n')
    monkeypatch.setitem(globals(), "SRC", package)
    assert flag_mentions() == ["lib.py:2", "lib.py:4"]


def test_no_library_error_names_a_command_line_flag():
    found = flag_mentions()
    assert found == [], "library messages that name CLI flags: " + ", ".join(found)
