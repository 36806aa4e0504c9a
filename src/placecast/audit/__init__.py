"""Accountability for place-based forecasting policies: exposure, disparity, feedback loops.

Everything here is about **area units** (cells, beats, districts, tracts), never persons.
Group attributes (population, census shares) are area-level figures the user supplies and
are used only to audit. The functions take plain arrays - a flags matrix
``(n_periods, n_units)`` of booleans and the observed events per unit per period - so any
backtest can feed them. :func:`run_audit` is the whole stage in one call (the policy
backtest, exposure, disparity, feedback simulation and model card) and returns an
:class:`AuditResult` that writes and reads back every file of ``placecast audit``.
"""

from placecast.audit._disparity import (
    DisparityResult,
    GroupAssignment,
    assign_groups,
    disparity_audit,
    plot_disparity,
    polygon_overlaps,
)
from placecast.audit._exposure import (
    ExposureResult,
    exposure_audit,
    gini,
    persistence,
    run_lengths,
    top_share,
)
from placecast.audit._feedback import (
    FEEDBACK_VARIANTS,
    URN_VARIANTS,
    FeedbackResult,
    UrnResult,
    model_refit,
    plot_feedback,
    select_top,
    simulate_feedback,
    simulate_urn,
    sum_refit,
    total_variation,
)
from placecast.audit._model_card import (
    DEFAULT_LIMITATIONS,
    ModelCard,
    build_model_card,
    summarise_performance,
)
from placecast.audit._run import (
    AUDIT_FILES,
    PERFORMANCE_METRICS,
    AuditResult,
    PolicyBacktest,
    audit_origins,
    backtest_policy,
    check_directory,
    check_plot_format,
    model_card_text,
    read_model_card,
    run_audit,
)

__all__ = [
    "AUDIT_FILES",
    "DEFAULT_LIMITATIONS",
    "FEEDBACK_VARIANTS",
    "PERFORMANCE_METRICS",
    "URN_VARIANTS",
    "AuditResult",
    "DisparityResult",
    "ExposureResult",
    "FeedbackResult",
    "GroupAssignment",
    "ModelCard",
    "PolicyBacktest",
    "UrnResult",
    "assign_groups",
    "audit_origins",
    "backtest_policy",
    "build_model_card",
    "check_directory",
    "check_plot_format",
    "disparity_audit",
    "exposure_audit",
    "gini",
    "model_card_text",
    "model_refit",
    "persistence",
    "plot_disparity",
    "plot_feedback",
    "polygon_overlaps",
    "read_model_card",
    "run_audit",
    "run_lengths",
    "select_top",
    "simulate_feedback",
    "simulate_urn",
    "sum_refit",
    "summarise_performance",
    "top_share",
    "total_variation",
]
