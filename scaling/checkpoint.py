"""Orbax checkpoints of a training state, one directory per completed chunk, the newest kept.

The state pytree (parameters, optimiser state, step) is saved as its flat list of leaves; the
structure is rebuilt from a freshly initialised state of the same config, so any pytree works.
Orbax writes into a temporary directory and renames it: a killed save leaves no partial chunk.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from scaling.errors import ScalingError
from scaling.laws.law import atomic_write_text

_CHUNK = re.compile(r"^chunk_(\d+)$")


def _chunks(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _CHUNK.match(p.name)) and p.is_dir())


def latest_chunk(directory: str | Path) -> int | None:
    chunks = _chunks(Path(directory))
    return chunks[-1] if chunks else None


def save(
    directory: str | Path, chunk: int, state, loss_SxN: np.ndarray, meta: dict | None = None, keep: int = 1
) -> Path:
    """Save ``state`` and the loss history after ``chunk``; keep only the newest ``keep`` chunks.

    ``meta`` (task, vocabulary, model shape, seeds) is written beside the chunks and checked on restore.
    """
    directory = Path(directory).absolute()
    primary = jax.process_index() == 0  # orbax coordinates the save itself; our own files come from process 0
    if meta is not None and primary:
        atomic_write_text(directory / "meta.json", json.dumps(meta, sort_keys=True) + "\n")
    leaves = jax.tree.leaves(state)
    payload = {"leaves": {f"{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}, "loss": loss_SxN}
    path = directory / f"chunk_{chunk:06d}"
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, payload, force=True)
    ckptr.wait_until_finished()
    for old in _chunks(directory)[:-keep] if primary else []:
        shutil.rmtree(directory / f"chunk_{old:06d}", ignore_errors=True)
    return path


def check_meta(directory: str | Path, expect: dict) -> None:
    """Refuse a checkpoint made for another task, vocabulary, model shape or seed list."""
    path = Path(directory) / "meta.json"
    if not path.is_file():
        raise ScalingError(f"{directory}: no meta.json: not a checkpoint directory of this toolkit")
    saved = json.loads(path.read_text())
    wrong = {k: (saved.get(k), v) for k, v in expect.items() if saved.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}={got!r} (expected {want!r})" for k, (got, want) in wrong.items())
        raise ScalingError(f"{directory}: checkpoint does not match: {detail}")


def restore(directory: str | Path, chunk: int, like_state, expect: dict | None = None) -> tuple[object, np.ndarray]:
    """The state saved after ``chunk`` (structured like ``like_state``) and its loss history.

    With ``expect``, the saved meta must agree on every given key (else a ScalingError).
    """
    if expect is not None:
        check_meta(directory, expect)
    path = Path(directory).absolute() / f"chunk_{chunk:06d}"
    payload = ocp.StandardCheckpointer().restore(path)
    leaves, treedef = jax.tree.flatten(like_state)
    restored = [payload["leaves"][f"{i:05d}"] for i in range(len(leaves))]
    return jax.tree.unflatten(treedef, restored), np.asarray(payload["loss"])
