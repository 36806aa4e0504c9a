"""Model card: one document per forecasting policy, in Markdown and self-contained HTML.

The card gathers what a deployment decision needs: where the data came from and which
period it covers, the model and its parameters, backtest performance with uncertainty,
exposure and disparity across areas, the feedback-loop simulation, and the known
limitations. It is built from plain results (``ExposureResult``, ``DisparityResult``,
``FeedbackResult``, a per-origin performance table) so it does not depend on how they were
computed. The HTML embeds its figures (base64 PNG or inline SVG): no network, no CDN.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from placecast.audit._disparity import DisparityResult
from placecast.audit._exposure import ExposureResult
from placecast.audit._feedback import FeedbackResult
from placecast.exceptions import ParameterError

__all__ = ["DEFAULT_LIMITATIONS", "ModelCard", "build_model_card", "summarise_performance"]

#: Limitations every card states; callers may add their own.
DEFAULT_LIMITATIONS = (
    "Recorded events are not all events: they reflect reporting and, where a forecast sent "
    "patrols, detection. A backtest on recorded data cannot tell where events happened "
    "unrecorded.",
    "The feedback simulation is a model: the detection uplift and base detection "
    "probability are assumptions set by the user, not measured; results show the direction "
    "and rough size of the effect, not a prediction.",
    "Bootstrap intervals resample periods (weeks) as if independent; serial dependence "
    "makes them too narrow.",
    "Area groups carry only area-level attributes supplied by the user; disparity between "
    "groups of areas says nothing about any person, and unit-to-group assignment (by "
    "centroid or largest overlap) misplaces units on group boundaries.",
    "Forecasts flag places, not people. Nothing in this audit or the model may be used to "
    "target individuals.",
)


def summarise_performance(per_origin: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                          n_boot: int = 999, level: float = 0.95,
                          random_state: int | None = 0) -> pd.DataFrame:
    """Mean of each per-origin metric with a percentile bootstrap interval over origins.

    Parameters
    ----------
    per_origin : DataFrame
        One row per forecast origin, one numeric column per metric.
    metrics : sequence of str, optional
        Columns to summarise (default every numeric column).
    n_boot : int
        Bootstrap resamples of the origins.
    level : float
        Confidence level.
    random_state : int, optional
        Seed.

    Returns
    -------
    DataFrame
        ``metric``, ``mean``, ``low``, ``high``, ``median``, ``n_origins`` (origins where
        the metric is defined).
    """
    columns = list(metrics) if metrics is not None else [
        c for c in per_origin.columns if pd.api.types.is_numeric_dtype(per_origin[c])]
    rng = np.random.default_rng(random_state)
    tail = (1 - level) / 2 * 100
    rows = []
    for column in columns:
        values = per_origin[column].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            rows.append((column, np.nan, np.nan, np.nan, np.nan, 0))
            continue
        draws = rng.integers(0, values.size, size=(int(n_boot), values.size))
        means = values[draws].mean(axis=1)
        low, high = np.percentile(means, [tail, 100 - tail]) if n_boot else (np.nan, np.nan)
        rows.append((column, float(values.mean()), float(low), float(high),
                     float(np.median(values)), int(values.size)))
    return pd.DataFrame(rows, columns=["metric", "mean", "low", "high", "median", "n_origins"])


# ---------------------------------------------------------------------- document blocks
@dataclass(frozen=True)
class _Block:
    kind: str  # "h2", "p", "list", "table", "figure", "kv"
    content: Any
    caption: str = ""


@dataclass(frozen=True, eq=False)
class ModelCard:
    """A model card as a list of blocks, rendered to Markdown or self-contained HTML.

    Attributes
    ----------
    title : str
        Card title.
    blocks : tuple
        The content, in order.
    facts : dict
        The key numbers of the card, JSON-ready (``to_dict``).
    """

    title: str
    blocks: tuple[_Block, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Title and key facts, JSON-ready."""
        return {"title": self.title, **self.facts}

    def to_markdown(self, figure_dir: str | os.PathLike[str] | None = None) -> str:
        """The card as Markdown; figures are linked relative to ``figure_dir``."""
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "h2":
                out += [f"## {block.content}", ""]
            elif block.kind == "p":
                out += [str(block.content), ""]
            elif block.kind == "list":
                out += [f"- {item}" for item in block.content] + [""]
            elif block.kind == "kv":
                out += ["| | |", "|---|---|"]
                out += [f"| {_md_escape(k)} | {_md_escape(_fmt(v))} |"
                        for k, v in block.content.items()]
                out.append("")
            elif block.kind == "table":
                out += [_markdown_table(block.content), ""]
                if block.caption:
                    out += [f"*{block.caption}*", ""]
            elif block.kind == "figure":
                path = Path(block.content)
                link = path.name if figure_dir is None else os.path.relpath(path, figure_dir)
                out += [f"![{block.caption}]({link})", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        """The card as one self-contained HTML page (figures embedded, no external links)."""
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            if block.kind == "h2":
                parts.append(f"<h2>{html.escape(str(block.content))}</h2>")
            elif block.kind == "p":
                parts.append(f"<p>{html.escape(str(block.content))}</p>")
            elif block.kind == "list":
                items = "".join(f"<li>{html.escape(str(i))}</li>" for i in block.content)
                parts.append(f"<ul>{items}</ul>")
            elif block.kind == "kv":
                rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}"
                               "</td></tr>" for k, v in block.content.items())
                parts.append(f"<table class='kv'>{rows}</table>")
            elif block.kind == "table":
                frame = _formatted(block.content)
                parts.append(frame.to_html(index=False, border=0, classes="data",
                                           escape=True, na_rep=""))
                if block.caption:
                    parts.append(f"<p class='caption'>{html.escape(block.caption)}</p>")
            elif block.kind == "figure":
                parts.append(_embed_figure(Path(block.content), block.caption))
        body = "\n".join(parts)
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n"
        )

    def write(self, directory: str | os.PathLike[str], stem: str = "model_card"
              ) -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``directory`` (atomically)."""
        from placecast.io._atomic import atomic_path

        directory = Path(directory)
        md_path, html_path = directory / f"{stem}.md", directory / f"{stem}.html"
        with atomic_path(md_path) as tmp:
            tmp.write_text(self.to_markdown(directory), encoding="utf-8")
        with atomic_path(html_path) as tmp:
            tmp.write_text(self.to_html(), encoding="utf-8")
        return md_path, html_path


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;"
    "background:#fafafa}main{max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}"
    "th,td{padding:.2rem .5rem;border-bottom:1px solid #e4e4e4;text-align:right}"
    "table.kv th{text-align:left;font-weight:600}table.kv td{text-align:left}"
    "td:first-child{text-align:left}.caption{font-size:.85rem;color:#555}"
    "img,svg{max-width:100%;height:auto}"
)


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "n/a" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        return f"{value:,.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = [_fmt(v) for v in out[column]]
    return out


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_table(frame: pd.DataFrame) -> str:
    shown = _formatted(frame)
    header = "| " + " | ".join(_md_escape(c) for c in shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(_md_escape(v) for v in row) + " |"
            for row in shown.astype(str).itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _embed_figure(path: Path, caption: str) -> str:
    if not path.exists():
        raise ParameterError(f"{path}: figure for the model card not found; pass existing "
                             "plot files as `figures`.", param="figures")
    if path.suffix.lower() == ".svg":
        svg = path.read_text(encoding="utf-8")
        start = svg.find("<svg")
        figure = svg[start:] if start >= 0 else svg
    else:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        figure = f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
    return f"<figure>{figure}<figcaption>{html.escape(caption)}</figcaption></figure>"


# ---------------------------------------------------------------------- the card
def build_model_card(
    *,
    title: str,
    provenance: dict[str, Any],
    policy: dict[str, Any],
    performance: pd.DataFrame | None = None,
    exposure: ExposureResult | None = None,
    disparity: DisparityResult | None = None,
    feedback: FeedbackResult | None = None,
    figures: dict[str, str | os.PathLike[str]] | None = None,
    limitations: Sequence[str] = (),
    n_table_rows: int = 15,
) -> ModelCard:
    """Assemble a model card from the audit's parts.

    Parameters
    ----------
    title : str
        Card title (e.g. ``"kde on 600 ft cells, 0.25 sq mi, weekly"``).
    provenance : dict
        Data source, file, CRS, event count, period, filters.
    policy : dict
        Model name and parameters, units, area budget, horizon, backtest origins.
    performance : DataFrame, optional
        ``summarise_performance`` output (metric, mean, low, high, ...).
    exposure, disparity, feedback : results, optional
        The audit's parts; sections are omitted when None.
    figures : dict, optional
        ``{"disparity": path, "feedback": path}`` - PNG or SVG files to show.
    limitations : sequence of str
        Limitations added to ``DEFAULT_LIMITATIONS``.
    n_table_rows : int
        Rows shown of long tables (the CSV files hold all).

    Returns
    -------
    ModelCard
    """
    figures = dict(figures or {})
    blocks: list[_Block] = []
    facts: dict[str, Any] = {"provenance": provenance, "policy": policy}
    blocks.append(_Block("p", "A model card for a place-based forecasting policy: what it "
                         "flags, how well, and which areas bear the flags. It concerns areas "
                         "only, never persons."))
    blocks += [_Block("h2", "Data provenance and period"), _Block("kv", provenance)]
    blocks += [_Block("h2", "Model and parameters"), _Block("kv", policy)]
    if performance is not None:
        blocks.append(_Block("h2", "Backtest performance"))
        blocks.append(_Block("table", performance, "Mean over forecast origins with a 95% "
                             "percentile bootstrap interval (resampling origins). hit_rate = "
                             "share of events in flagged units; pai = hit rate / share of "
                             "area flagged; pei_star = events caught / most any same number "
                             "of units could catch; log_score = Poisson predictive "
                             "log-likelihood per event (higher is better)."))
        facts["performance"] = performance.to_dict(orient="records")
    if exposure is not None:
        s = exposure.summary
        blocks.append(_Block("h2", "Exposure of area units"))
        blocks.append(_Block("p", (
            f"Over {s['n_periods']} periods the policy made {s['n_flags']:,} unit-period "
            f"flags on {s['n_units_ever_flagged']:,} of {s['n_units']:,} units. The top 1% "
            f"of units held {s['top_1pct_share_flags']:.0%} of flags (and "
            f"{s['top_1pct_share_events']:.0%} of events); Gini of flags "
            f"{s['gini_flags']:.3f} vs events {s['gini_events']:.3f}. A flagged unit stayed "
            f"flagged the next period with probability {s['persistence']:.2f}; runs last "
            f"{s['mean_run_length']:.1f} periods on average (longest {s['max_run_length']}). "
            f"{s['share_flags_on_units_without_events']:.0%} of flags fell on units with no "
            f"event in the audit period. {s['n_over']} units were flagged at least "
            f"{s['factor']:g} times their share of events, {s['n_under']} at most 1/"
            f"{s['factor']:g} of it.")))
        concentration = pd.DataFrame({
            "measure": ["top 1% share", "top 5% share", "top 10% share", "Gini"],
            "flags": [s["top_1pct_share_flags"], s["top_5pct_share_flags"],
                      s["top_10pct_share_flags"], s["gini_flags"]],
            "events": [s["top_1pct_share_events"], s["top_5pct_share_events"],
                       s["top_10pct_share_events"], s["gini_events"]],
        })
        blocks.append(_Block("table", concentration, "Concentration of flags and of events "
                             "over units."))
        top = exposure.units.head(n_table_rows)[
            ["unit_id", "n_flagged", "flag_share", "n_events", "event_share", "ratio",
             "longest_run", "status"]]
        blocks.append(_Block("table", top, f"The {len(top)} most-flagged units."))
        facts["exposure"] = dict(s)
    if disparity is not None:
        blocks.append(_Block("h2", "Disparity across area groups"))
        desc = disparity.description
        blocks.append(_Block("p", (
            f"Units grouped by {desc.get('group_by', 'group')} from "
            f"{desc.get('source', 'the group file')} ({desc.get('method', 'centroid')}). "
            "A ratio (share of flagged area / share of events) above 1 means the group's "
            "areas were flagged more than their events justify; intervals are "
            f"{disparity.level:.0%} bootstrap intervals over {disparity.n_periods} periods.")))
        columns = ["group", "n_units", "event_share", "flag_share", "ratio", "ratio_low",
                   "ratio_high", "exposure_per_area"]
        if "exposure_per_capita" in disparity.table:
            columns.append("exposure_per_capita")
        table = disparity.table.sort_values("flag_share", ascending=False)
        blocks.append(_Block("table", table[columns].head(n_table_rows),
                             f"Groups by share of flagged area (top {n_table_rows}; all in "
                             "disparity.csv)."))
        if "disparity" in figures:
            blocks.append(_Block("figure", figures["disparity"],
                                 "Share of flagged area vs share of events per group."))
        facts["disparity"] = disparity.to_dict()
    if feedback is not None:
        blocks.append(_Block("h2", "Feedback-loop simulation"))
        p = feedback.params
        blocks.append(_Block("p", (
            f"{p['n_periods']} simulated periods, {p['n_runs']} run(s): events are recorded "
            f"with probability {p['detection']:g} (citizen reports), {p['detection_flagged']:g}"
            f" in flagged units (uplift {p['uplift']:g}); the model is refitted on recorded "
            "events each period. Drift = total-variation distance between the flagged "
            "allocation and the allocation the true intensity implies (0 = same, 1 = "
            "disjoint); 'no_feedback' is the noise floor without uplift.")))
        blocks.append(_Block("table", feedback.summary(), "Drift per variant: start and end "
                             "are means over the first and last 4 periods."))
        if "feedback" in figures:
            blocks.append(_Block("figure", figures["feedback"], "Drift over time per variant."))
        facts["feedback"] = feedback.to_dict()
    blocks += [_Block("h2", "Limitations"), _Block("list", [*DEFAULT_LIMITATIONS,
                                                           *limitations])]
    return ModelCard(title=title, blocks=tuple(blocks), facts=facts)
