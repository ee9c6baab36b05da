"""Tables ready for display: missing values as "–", numbers formatted, never "-0.0"."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def round_for_display(value: float, digits: int) -> float:
    """Round for display; ``-0.0`` becomes ``0.0`` (so nothing prints as "-0.0%")."""
    return round(float(value), digits) + 0.0


def display_frame(frame: pd.DataFrame, formats: Mapping[str, str] | None = None) -> Any:
    """A table ready for ``st.dataframe``: missing values as "–", numbers formatted, never "-0.0".

    Missing values show as "–" (not "None"/"NaN"); numbers are formatted with ``formats``
    (``{column: "{:,.1f}"}``).

    Complete numeric columns stay numbers (formatted through a ``Styler``, so sorting uses the values);
    a column with gaps becomes its display strings, because Streamlit draws a missing number as "None"
    whatever the Styler says.
    """
    formats = dict(formats or {})

    def formatter(spec: str) -> Any:
        def fmt(value: Any) -> str:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "–"
            text = spec.format(value)
            if "-" in text and not any(c in "123456789" for c in text):
                return spec.format(0.0)  # a negative number that rounds to zero is zero, not "-0.0"
            return text
        return fmt

    out = frame.copy()
    funcs = {}
    for col in out.columns:
        fmt = formatter(formats.get(col, "{}"))
        if out[col].isna().any():
            out[col] = [fmt(v) for v in out[col]]
        elif col in formats:
            funcs[col] = fmt
    return out.style.format(funcs or None, na_rep="–")
