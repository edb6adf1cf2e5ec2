"""Checkpoints through orbax's ``CheckpointManager``: one step per completed chunk, the newest kept, each
written atomically (a killed save leaves no partial step), restored against the abstract shapes of the
state (``jax.eval_shape``), so nothing is read without a target to check it against.

A checkpoint holds named items (e.g. ``state`` and ``loss``; ``params`` after RL); ``meta.json`` beside
the steps records what the checkpoint must agree on (task, vocabulary, model shape, seeds, schedule) and
is checked before anything is restored. The layout's revision is ``scaling.specs.CHECKPOINT_FORMAT``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from scaling.errors import CheckpointMismatch, ScalingError
from scaling.io import interrupts_deferred, read_json, write_json
from scaling.specs import MODEL_CHOICES

# Meta keys added later (the model settings), with the value that checkpoints written before imply: the default.
IMPLIED = {name: choices[0] for name, choices in MODEL_CHOICES.items()}


class Checkpoints:
    """The checkpoints of one directory, kept open while a stage saves chunk after chunk (one manager, so
    that a multi-host job synchronises once, not at every save). A context manager."""

    def __init__(self, directory: str | Path, keep: int = 1):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self._mngr = ocp.CheckpointManager(self.directory, options=options)

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self._mngr.close()

    def latest_step(self) -> int | None:
        """The newest saved step, None when there is none."""
        return self._mngr.latest_step()

    def save(self, step: int, items: dict, meta: dict | None = None) -> None:
        """Save pytrees ``items`` (name -> tree) as ``step``, dropping steps beyond ``keep``. Every process
        of a multi-host job calls this (orbax coordinates the write); ``meta.json`` comes from process 0."""
        if meta is not None and jax.process_index() == 0:
            write_json(self.directory / "meta.json", meta)
        args = ocp.args.Composite(**{name: ocp.args.StandardSave(tree) for name, tree in items.items()})
        with interrupts_deferred():  # a save is short; cut in the middle, its threads print errors
            self._mngr.save(step, args=args, force=True)
            self._mngr.wait_until_finished()

    def discard(self, step: int) -> None:
        """Delete ``step`` (e.g. one that cannot be restored)."""
        self._mngr.delete(step)
        self._mngr.reload()

    def clear(self) -> None:
        """Delete every step and ``meta.json`` (a checkpoint made for another run, or by another version)."""
        for step in self._mngr.all_steps():
            self._mngr.delete(step)
        self._mngr.reload()
        if jax.process_index() == 0:
            (self.directory / "meta.json").unlink(missing_ok=True)

    def restore(self, step: int, like: dict, expect: dict | None = None) -> dict:
        """The items saved at ``step``, each restored against its abstract tree in ``like`` (name -> tree of
        ``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``); ``None`` restores an item as saved.

        With ``expect``, ``meta.json`` must agree on every given key first (else a ScalingError)."""
        if expect is not None:
            check_meta(self.directory, expect)
        args = ocp.args.Composite(**{name: ocp.args.StandardRestore(tree) for name, tree in like.items()})
        restored = self._mngr.restore(step, args=args)
        return {name: restored[name] for name in like}


def latest_step(directory: str | Path) -> int | None:
    """The newest saved step of ``directory``, None when there is none (or no directory)."""
    if not Path(directory).is_dir():
        return None
    with Checkpoints(directory) as ckpt:
        return ckpt.latest_step()


def check_meta(directory: str | Path, expect: dict) -> None:
    """Refuse (CheckpointMismatch) a checkpoint made for another task, vocabulary, model shape, seed list or
    schedule, or whose meta.json is missing or unreadable."""
    path = Path(directory) / "meta.json"
    if not path.is_file():
        raise CheckpointMismatch(f"{directory}: no meta.json: not a checkpoint directory of this toolkit")
    try:
        saved = read_json(path, "checkpoint meta file")
    except ScalingError as e:
        raise CheckpointMismatch(str(e)) from None
    saved = IMPLIED | saved
    wrong = {k: (saved.get(k), v) for k, v in expect.items() if saved.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}={got!r} (expected {want!r})" for k, (got, want) in wrong.items())
        raise CheckpointMismatch(f"{directory}: checkpoint does not match: {detail}")


def layout(directory: str | Path) -> str | None:
    """What the checkpoint holds, as its meta.json says: "state" (training state and loss history) or
    "params" (parameters only, e.g. after RL); None without a meta.json."""
    path = Path(directory) / "meta.json"
    return read_json(path, "checkpoint meta file").get("layout") if path.is_file() else None
