"""Every shell example in README.md and docs/*.md runs as written on the bundled sample.

The examples are extracted from the fenced ``bash``/``sh`` blocks; only file names are
replaced (``PATHS``: burglary.csv -> the bundled Portland burglaries, districts.shp -> the
bundled police districts, ...). Examples that cannot run here (installers, a web server, a
PostgreSQL server, a day-long schedule, elided options) are listed in ``NOT_RUN`` with the
reason; a test checks that every entry there still names an example, so the list cannot
silently hide a new one. The examples of one document run in order in one folder, as a
reader would type them (``simulate --params sepp.json`` uses the fit written before it).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SHARED_DATA
from placecast.cli import app
from placecast.datasets import portland_burglary_path, portland_region_path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: File names used in the examples -> the files they stand for here.
PATHS: dict[str, Path] = {
    "burglary.csv": portland_burglary_path(),
    "events.csv": portland_burglary_path(),
    "next_week.csv": portland_burglary_path(),   # re-ingesting adds no duplicate
    "new_week.csv": portland_burglary_path(),
    "districts.shp": portland_region_path(),
    "Portland_Police_Districts.shp": portland_region_path(),
    "police_districts/": portland_region_path(),
    "vehicle_theft.csv": SHARED_DATA / "portland" / "vehicle_theft_2012-03_2017-05.csv",
    "thefts.csv": SHARED_DATA / "nyc" / "motor_vehicle_thefts_2014_2017.csv",
    "japan_quakes.csv": SHARED_DATA / "quakes" / "japan_quakes.csv",
    "study.prm": SHARED_DATA / "satscan" / "satscan_test1.prm",
}

#: Examples that are not run, by their text (continuations joined, comments dropped).
NOT_RUN: dict[str, str] = {
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/placecast demo":
        "installs the package (CI installs it; the demo is tested in test_cli_core.py)",
    "python3 -m venv .venv && .venv/bin/pip install -e .[test] && .venv/bin/python -m "
    "pytest": "runs this test suite",
    "pip install -e .[service]": "installs an extra",
    "pip install placecast[service]": "installs an extra",
    "placecast serve --db placecast.duckdb": "starts a web server that runs until stopped "
                                             "(the API is tested in test_service_api.py)",
    "placecast watch watch.json --interval 1h --max-runs 24": "runs for a day by design "
                                                                "(--once is run)",
    "placecast ingest placecast.duckdb#burglary --dataset burglary --db "
    "postgresql://me@db/crime": "needs a PostgreSQL server (tested in test_store.py)",
    "placecast ingest placecast.duckdb#burglary --dataset burglary --db "
    "postgresql://analyst@db/crime": "needs a PostgreSQL server (tested in test_store.py)",
    "placecast inspect postgresql://analyst@db.example:5432/crime#burglary --since "
    "2016-01-01": "needs a PostgreSQL server (tested in test_store.py)",
    "placecast report burglary.csv ... --public --k 5 -o public.html":
        "options elided ('...'); --public is tested in test_report.py",
    "placecast backtest burglary.csv ... -o results.csv": "options elided ('...')",
    "placecast report burglary.csv ... --backtest results.csv --clusters clusters.geojson "
    "--hotspots hotspots.csv --model-card card.txt -o report.html": "options elided ('...')",
    "placecast ingest new_week.csv --dataset burglary --crs EPSG:2913 --id case_number":
        "the bundled sample has no incident-number column (--id is tested in "
        "test_store.py)",
    "placecast audit EVENTS --model kde --cell 600ft --area 0.25sqmi --start 2016-03-01 "
    "--end 2017-03-01 [--horizon 7d] [--region FILE] [--groups tracts.gpkg --group-by "
    "COLUMN [--quantiles 4] [--population POP] [--assign centroid|overlap]] "
    "[--simulate-feedback --uplift 0.5 --detection 0.5 --periods 52 --runs 3 "
    "--random-share 0.2 --truth history|forecast] [--n-boot 999] [--seed 0] "
    "[--plot-format png|svg] [--jobs 1] -o audit/": "a synopsis of the options, not a command",
    "TOKEN=pc_...": "needs the web server",
    "placecast report burglary.csv ... --basemap portland.pmtiles --reference "
    "Portland_Police_Districts.shp -o report.html":
        "options elided ('...'); --basemap is tested in test_report_maps.py",
}
#: The Japan earthquake fit takes 1.5-3 minutes here; the same fit is run and checked
#: against the published estimates by test_etas_marked.py (and the CLI path on Iran).
JAPAN = ("fits 13,724 earthquakes (1.5-3 min); checked against the published fit in "
         "test_etas_marked.py::test_japan_fit_matches_published")
#: curl examples talk to a running server (the API is tested in test_service_api.py).
SERVER_PREFIXES = ("curl ", "placecast token ")

#: Examples that take long (measured on 2 shared cores: the tuning grid 1-3 min, the audit
#: with its feedback simulation ~35 s, a year of weekly backtests ~8 s): still run in CI,
#: marked slow.
SLOW_PREFIXES = (
    "placecast tune ",
    "placecast audit ",
    "placecast backtest burglary.csv --crs EPSG:2913 --region Portland_Police_Districts.shp "
    "--models",
)


@dataclass(frozen=True)
class Example:
    """One shell command from a document."""

    document: str
    line: int
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        """The command, continuations joined, comment and quotes dropped."""
        return " ".join(self.words)

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}"


def _words(line: str) -> list[str]:
    """Shell words of a line, without a trailing ``# comment`` (``db#dataset`` is kept)."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words = []
    for word in lexer:
        if word.startswith("#"):
            break
        words.append(word)
    return words


def shell_examples(path: Path) -> list[Example]:
    """The commands of the ``bash``/``sh``/``shell`` blocks of a Markdown file."""
    examples: list[Example] = []
    inside = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = line.strip().startswith("```")
        if fence and not inside:
            inside = line.strip()[3:].strip().lower() in ("bash", "sh", "shell", "console")
            continue
        if fence:
            inside = False
            continue
        if not inside:
            continue
        if not pending:
            start = number
        pending.append(line.rstrip())
        if line.rstrip().endswith("\\"):
            pending[-1] = pending[-1][:-1]
            continue
        words = _words(" ".join(pending))
        pending = []
        if words:
            examples.append(Example(path.name, start, tuple(words)))
    return examples


ALL_EXAMPLES = [e for document in DOCUMENTS for e in shell_examples(document)]


def _skip_reason(example: Example) -> str | None:
    if example.text in NOT_RUN:
        return NOT_RUN[example.text]
    if example.text.startswith("placecast fit japan_quakes.csv"):
        return JAPAN
    if example.text.startswith(SERVER_PREFIXES):
        return "talks to the web server (the API is tested in test_service_api.py)"
    return None


def test_examples_are_found() -> None:
    # the extraction itself: README's forecast example, continuation lines joined
    texts = [e.text for e in ALL_EXAMPLES]
    assert ("placecast forecast burglary.csv --crs EPSG:2913 --model kde --cell 600ft "
            "--at 2017-03-01 --horizon 7d --region districts.shp -o forecast.csv") in texts
    assert len(ALL_EXAMPLES) >= 40


def test_every_listed_exception_names_an_example() -> None:
    texts = {e.text for e in ALL_EXAMPLES}
    stale = [text for text in NOT_RUN if text not in texts]
    assert not stale, f"NOT_RUN lists examples no document holds any more: {stale}"


def _params() -> list[object]:
    out = []
    for example in ALL_EXAMPLES:
        marks = []
        reason = _skip_reason(example)
        if reason is not None:
            marks.append(pytest.mark.skip(reason=f"not run: {reason}"))
        elif example.text.startswith(SLOW_PREFIXES):
            marks.append(pytest.mark.slow)
        out.append(pytest.param(example, id=example.id, marks=marks))
    return out


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One folder per document, shared by its examples in order."""
    return {d.name: tmp_path_factory.mktemp(d.stem) for d in DOCUMENTS}


def _watch_config(folder: Path) -> Path:
    """docs/clusters.md's watch configuration, with its file names substituted.

    Its webhook URL is replaced by a closed local port, so the delivery fails at once
    (and waits in the outbox) instead of calling example.org.
    """
    text = (ROOT / "docs" / "clusters.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{.*?\})\n```", text, re.S)
    assert block is not None, "docs/clusters.md lost its watch configuration example"
    config = json.loads(block.group(1))
    config["events"]["path"] = str(PATHS[config["events"]["path"]])
    for sink in config.get("sinks", []):
        if sink.get("type") == "webhook":
            sink["url"] = "http://127.0.0.1:9/hook"
    path = folder / "watch.json"
    path.write_text(json.dumps(config))
    return path


def _argv(example: Example, folder: Path) -> list[str]:
    words = example.words
    assert words[0] == "placecast", f"{example.id}: not a placecast command: {example.text}"
    out = []
    for word in words[1:]:
        if word == "watch.json":
            out.append(str(_watch_config(folder)))
        elif word in PATHS:
            out.append(str(PATHS[word]))
        else:
            out.append(word)
    return out


@pytest.mark.parametrize("example", _params())
def test_example_runs(example: Example, workdirs: dict[str, Path],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = workdirs[example.document]
    monkeypatch.chdir(folder)
    argv = _argv(example, folder)
    for word in argv:
        if word.startswith(str(SHARED_DATA)) and not Path(word).exists():
            pytest.fail(f"{example.id}: real data {word} not found (../shared/data)")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, (
        f"{example.id} failed (status {result.exit_code}):\n  {example.text}\n"
        f"{result.output}\n{result.exception!r}")
