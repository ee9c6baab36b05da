"""Shape library results into tables for the dashboard's charts, one module per page.

Pure helpers: data in, ``pandas.DataFrame`` out (pandas imported inside each function).
No Streamlit here; the dashboard's pages only draw what these return, so every number on
screen is computed in ``advisor/`` where the CLI and tests reach it too.

``specs`` (the specs explorer), ``machine`` (this machine's devices, live figures, kernels, roofline),
``history`` (history, collectives, fleet), ``recommender`` (the form, ranked cards, fit), ``tables``
(``display_frame``).  Every public name is re-exported here: pages use ``dashboard_data.<name>``.
"""

from __future__ import annotations

from advisor.dashboard_data.history import (
    collectives_frame,
    compare_runs,
    fleet_empty_reason,
    fleet_frame,
    history_runs_frame,
    history_trend_frame,
    run_label,
)
from advisor.dashboard_data.machine import (
    LIVE_METRICS,
    device_summary,
    kernel_frame,
    live_frame,
    live_sample_row,
    matmul_intensity,
    roofline_frame,
)
from advisor.dashboard_data.recommender import (
    BREAK_EVEN_KEYS,
    BUY_COST_KEYS,
    CLOUD_COST_KEYS,
    card_label,
    default_image_size,
    fit_option_records,
    fit_view,
    has_analytic_model,
    memory_breakdown_frame,
    memory_breakdown_records,
    model_inputs,
    parse_config_json,
    recommend_options,
    recommendation_view,
    step_range_label,
    step_range_record,
    time_breakdown_records,
    workload_summary,
)
from advisor.dashboard_data.specs import (
    COMPARE_FIELDS,
    TENSOR_PRECISION_ORDER,
    compare_frame,
    filter_specs,
    specs_frame,
    tensor_peak,
)
from advisor.dashboard_data.tables import display_frame
from advisor.probing.collectives import STRAGGLER_FRACTION  # the one straggler rule (the fleet page's threshold)
from advisor.workload.options import OPTIMIZERS, PRECISIONS  # the form's choices come from the workload contract

__all__ = ["BREAK_EVEN_KEYS", "BUY_COST_KEYS", "CLOUD_COST_KEYS", "COMPARE_FIELDS", "LIVE_METRICS", "OPTIMIZERS",
           "PRECISIONS", "STRAGGLER_FRACTION", "TENSOR_PRECISION_ORDER", "card_label", "collectives_frame",
           "compare_frame", "compare_runs", "default_image_size", "device_summary", "display_frame", "filter_specs",
           "fit_option_records", "fit_view", "fleet_empty_reason", "fleet_frame", "has_analytic_model",
           "history_runs_frame", "history_trend_frame", "kernel_frame", "live_frame",
           "live_sample_row", "matmul_intensity", "memory_breakdown_frame", "memory_breakdown_records",
           "model_inputs", "parse_config_json", "recommend_options", "recommendation_view", "roofline_frame",
           "run_label", "specs_frame", "step_range_label", "step_range_record", "tensor_peak",
           "time_breakdown_records", "workload_summary"]
