"""Adapters: one per real source, each turning a source's files into the canonical tables.

Every adapter is a module with a ``read(path, **options) -> Dataset`` function returning the
canonical tables (polars LazyFrames, see :mod:`analysis.schema`), the input files' checksums and
row counts, and ``excluded`` (source rows removed before the canonical tables, by reason, so the
coverage ledger still accounts for every input row). Bad input raises
:class:`analysis.schema.DataError` with file, line, column and value.

``SOURCES`` maps the names accepted by ``--source`` to the reading function.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from analysis.load import Dataset, load

SOURCES: dict[str, str] = {
    "canonical": "analysis.load:load",
    "dsa-tdb": "analysis.sources.dsa_tdb:read",
    "meta-ad-library": "analysis.sources.meta_ad_library:read",
    "google-political-ads": "analysis.sources.google_political_ads:read",
}
#: The reader used for ``--mapping FILE.toml`` (any CSV or Parquet export, mapped to the contract).
MAPPED = "analysis.sources.mapping:read"


def read_source(path: str | Path, *, source: str = "canonical",
                mapping: str | Path | None = None) -> Dataset:
    """Read ``path`` (a folder, a file or a zip) with the adapter named ``source``."""
    import importlib

    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    target = MAPPED if mapping is not None and source == "canonical" else SOURCES[source]
    module, _, function = target.partition(":")
    reader: Callable[..., Dataset] = getattr(importlib.import_module(module), function)
    if mapping is not None:
        return reader(Path(path), mapping=Path(mapping))
    return reader(Path(path))


__all__ = ["SOURCES", "read_source", "load"]
