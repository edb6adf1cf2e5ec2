"""Files the toolkit writes: atomic (readers see the old file or the new one, never half) and strict.

JSON is strict (RFC 8259): no NaN or Infinity tokens. ``to_strict`` writes NaN as null and an infinite
float as the string "inf" or "-inf"; ``from_strict`` turns those strings back into floats for the keys
that hold numbers, so a saved law's unbounded asymptote round-trips.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import ScalingError


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) held back until the body ends, then raised as KeyboardInterrupt: for a write
    that runs its own worker threads (orbax's checkpoint save), which an interrupt in the middle leaves
    half torn down, printing their errors. Outside the main thread the body runs as it is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer to fill; renamed onto ``path`` when the body ends
    without an error (removed otherwise). The temporary name is unique, so concurrent writers of one
    file never collide: the last rename wins, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` and flush it (logs that ``tail -f`` follows; a kill loses no line
    already written)."""
    with open(path, "a") as f:
        f.write(text)
        f.flush()


def to_strict(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python values, NaN as None and +-inf as "inf" / "-inf"."""
    if isinstance(obj, dict):
        return {str(k): to_strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_strict(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
    return obj


def from_strict(value: Any) -> Any:
    """Inverse of ``to_strict`` for one number: "inf" / "-inf" -> float, None -> nan, else float(value)."""
    return math.nan if value is None else float(value)


def restore_floats(obj: Any, keys: set[str]) -> Any:
    """``obj`` with the values under ``keys`` (at any depth, also inside lists) turned back into floats by
    ``from_strict``: what ``to_strict`` wrote as null or "inf" reads as nan or inf again."""
    if isinstance(obj, dict):
        return {k: _floats(v) if k in keys else restore_floats(v, keys) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore_floats(v, keys) for v in obj]
    return obj


def _floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return from_strict(value)


def dumps(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``obj`` (see ``to_strict``), newline-terminated."""
    return json.dumps(to_strict(obj), indent=indent, allow_nan=False, default=str) + "\n"


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """The one writer of every JSON file: strict, atomic."""
    return atomic_write_text(path, dumps(obj, indent))


def _no_constants(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def loads_strict(text: str) -> Any:
    """Parse JSON, rejecting NaN / Infinity tokens as a strict parser does."""
    return json.loads(text, parse_constant=_no_constants)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """A JSON document (lenient about NaN / Infinity, which files written before strictness hold),
    or a ScalingError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ScalingError(f"{path}: no such {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScalingError(f"{path}: not a valid {what} ({e})") from None


def write_table(df, path_without_suffix: str | os.PathLike) -> None:
    """CSV and Parquet copies of a DataFrame, each written atomically."""
    base = Path(path_without_suffix)
    atomic_write_text(base.with_suffix(".csv"), df.to_csv(index=False))
    with atomic_path(base.with_suffix(".parquet")) as tmp:
        df.to_parquet(tmp, index=False)


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Atomically create ``path`` by calling ``writer(temporary_path)`` (e.g. a figure's savefig)."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)
