"""Reading and writing result tables (CSV, Parquet, JSONL) with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from scaling.errors import ScalingError

READERS = {
    ".csv": pd.read_csv,
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".ndjson": lambda p: pd.read_json(p, lines=True),
}


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A DataFrame from a .csv, .parquet/.pq or .jsonl/.ndjson file."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ScalingError(f"{path}: unsupported table format {path.suffix!r}; use one of {sorted(READERS)}")
    if not path.is_file():
        raise ScalingError(f"{path}: no such file")
    try:
        return reader(path)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise ScalingError(f"{path}: cannot read as {path.suffix} ({e})") from None


def derive(df: pd.DataFrame, assign: list[str] = (), where: str | None = None) -> pd.DataFrame:
    """Add columns ``NAME = EXPR`` (pandas eval, in order) then keep rows matching ``where`` (query)."""
    for expr in assign:
        if "=" not in expr:
            raise ScalingError(f"--assign {expr!r}: expected NAME = EXPRESSION")
        try:
            df = df.eval(expr, engine="python")
        except Exception as e:  # pandas raises many types for a bad user expression
            raise ScalingError(f"--assign {expr!r}: {e}") from None
    if where:
        try:
            df = df.query(where, engine="python")
        except Exception as e:
            raise ScalingError(f"--where {where!r}: {e}") from None
    return df
