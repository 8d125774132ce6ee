"""Input frames of the statistics: pandas or polars, rows or cells, all turned into polars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

    Frame = pl.DataFrame | pl.LazyFrame | pd.DataFrame


def as_lazy(frame: Frame, columns: Sequence[str] | None = None) -> pl.LazyFrame:
    """A polars LazyFrame of ``frame``; for pandas, only ``columns`` are converted (when given).

    Raises
    ------
    TypeError
        For anything that is not a polars DataFrame/LazyFrame or a pandas DataFrame.
    """
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    import pandas as pd

    if isinstance(frame, pd.DataFrame):
        present = [c for c in columns or () if c in frame.columns]
        return pl.from_pandas(frame[present] if present else frame).lazy()
    raise TypeError("expected a polars DataFrame or LazyFrame or a pandas DataFrame, "
                    f"got {type(frame).__name__}")
