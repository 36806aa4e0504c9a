"""One truth per backtest statistic: every output of one backtest shows the same numbers.

One small real backtest (the bundled Portland burglary sample, kde vs naive vs
prospective, five fortnightly origins) is run through the CLI once; its terminal table,
``backtest.html``, ``placecast report --backtest`` (from each format ``backtest`` writes
and from the store) and the web service must give the same summary, PAI and p-values to
the last printed digit, and those must equal an independent computation from the table.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from _helpers_service import make_service
from placecast.cli import app
from placecast.datasets import portland_burglary_path, portland_region_path
from placecast.evaluate import BacktestResult, run_backtest
from placecast.exceptions import DataError, ParameterError
from placecast.report._backtest import format_difference, format_p, format_value

runner = CliRunner()
MODELS = ("kde", "naive", "prospective")
SETTINGS = ["--region", str(portland_region_path()), "--cell", "1000ft", "--area", "2%"]
CRS = ["--crs", "EPSG:2913"]
BACKTEST = ["--models", ",".join(MODELS), "--start", "2016-10-01", "--end", "2016-11-26",
            "--step", "14d", "--horizon", "14d", "--jobs", "1"]


# ---------------------------------------------------------------------- reading outputs
class _Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(document: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(document)
    return parser.tables


def as_records(table: list[list[str]]) -> list[dict[str, str]]:
    header, *rows = table
    return [dict(zip(header, row, strict=True)) for row in rows]


def cli_summary(output: str) -> dict[str, list[str]]:
    """The first table ``placecast backtest`` prints: model -> its cells."""
    rows: dict[str, list[str]] = {}
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "PAI mean" in line)
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] in MODELS:
            rows[cells[0]] = cells[1:]
    return rows


def cli_comparisons(output: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """``model vs other`` lines: (model, other) -> (mean difference, better, worse, n, p)."""
    flat = " ".join(output.split())
    found = re.findall(r"(\S+) vs (\S+): mean PAI difference (\S+), better at (\d+) and worse "
                       r"at (\d+) of (\d+) origins; Wilcoxon signed-rank p = (\S+)", flat)
    return {(m, o): tuple(rest) for m, o, *rest in found}


SUMMARY = ("PAI mean", "median", "p10-p90", "pooled", "hit rate", "PEI*", "log score")


# ---------------------------------------------------------------------- the backtest
@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Ingest the sample, backtest it from the store (CSV, HTML, --save; then .parquet)."""
    folder = tmp_path_factory.mktemp("one_truth")
    db = folder / "placecast.duckdb"
    r = runner.invoke(app, ["ingest", str(portland_burglary_path()), "--crs", "EPSG:2913",
                            "--db", str(db), "--dataset", "portland"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["backtest", f"{db}#portland", *SETTINGS, *BACKTEST,
                            "-o", str(folder / "results.csv"),
                            "--report", str(folder / "backtest.html"),
                            "--save", "fortnightly", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "saved backtest 'fortnightly' as id" in r.output
    again = runner.invoke(app, ["backtest", f"{db}#portland", *SETTINGS, *BACKTEST,
                                "-o", str(folder / "results.parquet")])
    assert again.exit_code == 0, again.output
    return folder, r.output


def report_html(folder: Path, backtest: str, name: str) -> str:
    out = folder / name
    r = runner.invoke(app, ["report", f"{folder / 'placecast.duckdb'}#portland", *SETTINGS,
                            "--model", "kde", "--at", "2017-01-01", "--backtest", backtest,
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out.read_text(encoding="utf-8")


def report_tables(document: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    section = document[document.index('<section id="backtest">'):]
    section = section[:section.index("</section>")]
    summary, comparisons = html_tables(section)
    return as_records(summary), as_records(comparisons)


def test_cli_html_report_and_service_agree_to_the_last_digit(outputs):
    folder, output = outputs
    terminal = cli_summary(output)
    pairs = cli_comparisons(output)
    assert set(terminal) == set(MODELS) and len(pairs) == 2
    # the winner is kde here, so the report (about a kde forecast) tests the same pairs
    assert {m for m, _ in pairs} == {"kde"}

    _settings, page_summary, page_tests = (
        as_records(t) for t in html_tables((folder / "backtest.html").read_text()))
    reported_summary, reported_tests = report_tables(
        report_html(folder, str(folder / "results.csv"), "from_csv.html"))

    for table in (page_summary, reported_summary):
        assert {row["model"]: [row[c] for c in SUMMARY] for row in table} == terminal
    for table in (page_tests, reported_tests):
        assert {(row["model"], row["other"]): (row["mean PAI difference"], row["better"],
                                               row["worse"], row["n pairs"], row["Wilcoxon p"])
                for row in table} == pairs

    # the service reads the stored result: the same numbers, unrounded
    with make_service(folder) as svc:
        listed = svc.client.get("/backtests", headers=svc.headers("viewer")).json()
        (info,) = listed["backtests"]
        assert info["meta"]["dataset"] == "portland"  # what the dashboard matches on
        assert info["meta"]["name"] == "fortnightly"
        body = svc.client.get(f"/backtests/{info['id']}", headers=svc.headers("viewer")).json()
    summary = pd.DataFrame(body["summary"]).set_index(["model", "metric"])

    def served(model: str) -> list[str]:
        s = summary.loc
        return [format_value(s[(model, "pai"), "mean"]), format_value(s[(model, "pai"), "median"]),
                f"{format_value(s[(model, 'pai'), 'p10'])}-"
                f"{format_value(s[(model, 'pai'), 'p90'])}",
                format_value(s[(model, "pai"), "pooled"]),
                format_value(s[(model, "hit_rate"), "mean"], 3),
                format_value(s[(model, "pei_star"), "mean"], 3),
                format_value(s[(model, "log_score"), "mean"])]

    assert {model: served(model) for model in MODELS} == terminal
    assert {(c["model"], c["other"]): (format_difference(c["mean_difference"]),
                                       str(c["n_better"]), str(c["n_worse"]),
                                       str(c["n_pairs"]), format_p(c["p_value"]))
            for c in body["comparisons"]} == pairs

    # ... and they are right: recomputed here from the CSV with pandas and scipy
    table = pd.read_csv(folder / "results.csv")
    assert len(table) == 5 * len(MODELS)
    for model in MODELS:
        pai = table[table.model == model].pai
        assert summary.loc[(model, "pai"), "mean"] == pytest.approx(pai.mean(), rel=1e-12)
        assert summary.loc[(model, "pai"), "median"] == pytest.approx(pai.median(), rel=1e-12)
    wide = table.pivot(index="origin", columns="model", values="pai")
    for c in body["comparisons"]:
        diff = (wide[c["model"]] - wide[c["other"]]).to_numpy().copy()
        diff[np.isclose(wide[c["model"]], wide[c["other"]], rtol=1e-9, atol=1e-12)] = 0.0
        expected = stats.wilcoxon(diff[diff != 0]).pvalue
        assert c["p_value"] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------- backtest -> report
def test_report_reads_every_format_backtest_writes(outputs):
    folder, _ = outputs
    from_csv = report_tables(report_html(folder, str(folder / "results.csv"), "a.html"))
    db = folder / "placecast.duckdb"
    from placecast.store import open_store

    with open_store(db) as store:
        (info,) = store.list_backtests()
    for backtest in (str(folder / "results.parquet"), f"{db}#fortnightly", f"{db}#{info.id}"):
        assert report_tables(report_html(folder, backtest, "b.html")) == from_csv, backtest


def test_report_refuses_an_unknown_stored_backtest(outputs):
    folder, _ = outputs
    r = runner.invoke(app, ["report", str(portland_burglary_path()), *CRS, *SETTINGS, "--at",
                            "2017-01-01", "--backtest", f"{folder / 'placecast.duckdb'}#weekly",
                            "-o", str(folder / "never.html")])
    assert r.exit_code == 2
    assert "no saved backtest named or numbered 'weekly'" in " ".join(r.output.split())
    assert "fortnightly" in r.output and not (folder / "never.html").exists()


# ---------------------------------------------------------------------- backtest -> store
def test_store_and_parquet_keep_the_whole_result(outputs):
    folder, _ = outputs
    from placecast.store import open_store

    from_file = BacktestResult.read(folder / "results.parquet")
    with open_store(folder / "placecast.duckdb") as store:
        stored = store.load_backtest(store.list_backtests()[0].id)
    assert stored.meta["dataset"] == "portland" and stored.models == MODELS
    for other in (stored, BacktestResult.read(folder / "results.csv")):
        pd.testing.assert_frame_equal(other.summary(), from_file.summary(), check_exact=True)
        assert [c.to_dict() for c in other.compare()] == [c.to_dict()
                                                           for c in from_file.compare()]
    for model in MODELS:  # the per-unit arrays survive the store and the file
        assert stored.flags(model).sum() > 0
        np.testing.assert_array_equal(stored.flags(model), from_file.flags(model))
    np.testing.assert_array_equal(stored.observed["14d"], from_file.observed["14d"])
    pd.testing.assert_frame_equal(stored.calibration(), from_file.calibration())
    assert stored.n_units == from_file.n_units == len(from_file.unit_ids)


# ---------------------------------------------------------------------- the library
@pytest.fixture(scope="module")
def small():
    from placecast.datasets import portland_burglary_path
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    events = read_events(portland_burglary_path(), crs="EPSG:2913")
    units = build_units(events, UnitSpec(cell_size=800.0, region=portland_region_path()))
    return run_backtest(events, units, models=("naive", "kde"), start="2016-11-01",
                        end="2016-11-22", horizons=("7d", "14d"), area="2%")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_read_round_trip(small, tmp_path, suffix):
    path = small.write(tmp_path / f"bt{suffix}")
    back = BacktestResult.read(path)
    assert back.models == small.models and back.horizons == small.horizons
    np.testing.assert_array_equal(back.origins, small.origins)
    pd.testing.assert_frame_equal(back.to_frame(), small.to_frame(), check_exact=True)
    pd.testing.assert_frame_equal(back.summary(), small.summary(), check_exact=True)
    for horizon in small.horizons:
        assert back.compare("pai", horizon) == small.compare("pai", horizon)
    if suffix == ".parquet":
        for key in small.flag_indices:
            np.testing.assert_array_equal(back.flags(*key), small.flags(*key))
        pd.testing.assert_frame_equal(back.calibration("14d"), small.calibration("14d"))
        assert back.n_units == len(small.units) and back.region_area == small.region_area
        assert list(back.unit_ids) == [str(u) for u in small.units.unit_id]
    else:  # a bare table carries every statistic, not the flagged units
        with pytest.raises(ParameterError, match="holds no flagged units"):
            back.flags("kde")


def test_compare_reference_rule(small):
    assert [c.model for c in small.compare()] == [small.winner()]
    (c,) = small.compare("pai", "7d", reference="naive")
    assert (c.model, c.other) == ("naive", "kde")
    (w,) = small.compare("pai", "7d", reference="kde")
    assert c.p_value == w.p_value and c.mean_difference == -w.mean_difference
    with pytest.raises(ParameterError, match="reference model 'magic' is not in the backtest"):
        small.compare(reference="magic")


def test_a_table_that_is_not_one_backtest_is_refused(small, tmp_path):
    doubled = pd.concat([small.to_frame(), small.to_frame()])
    with pytest.raises(DataError, match="appears twice; a backtest has one row per origin"):
        BacktestResult.from_records(doubled)
    path = tmp_path / "bt.parquet"
    small.write(path)
    with pytest.raises(DataError, match="no such backtest file"):
        BacktestResult.read(tmp_path / "missing.csv")
    with pytest.raises(ParameterError, match="written as .csv or .parquet"):
        small.write(tmp_path / "bt.json")


# ---------------------------------------------------------------------- the model card
def test_model_card_is_rendered_not_pasted(tmp_path):
    card = tmp_path / "model_card.md"
    card.write_text("# Model card\n\nIntended use: **patrol planning**.\n\n"
                    "<script>alert(1)</script>\n\n[x](javascript:alert(2))\n")
    out = tmp_path / "r.html"
    r = runner.invoke(app, ["report", str(portland_burglary_path()), *CRS, *SETTINGS, "--model",
                            "naive", "--at", "2017-01-01", "--model-card", str(card),
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    section = page[page.index('<section id="model-card"'):]
    section = section[:section.index("</section>")]
    assert "<h1>Model card</h1>" in section and "<strong>patrol planning</strong>" in section
    assert "<script>alert(1)" not in section and "&lt;script&gt;alert(1)" in section
    assert 'href="javascript:' not in section
