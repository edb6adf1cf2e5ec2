"""Reading saved laws back: one ``load`` for both kinds of law file (a ``Law`` and a ``Ladder``)."""

from __future__ import annotations

import os
from pathlib import Path

from scaling.laws.ladder import Ladder, ladder_from_dict
from scaling.laws.law import Law, law_from_dict, read_saved


def load(path: str | os.PathLike) -> Law | Ladder:
    """Read a law saved by ``Law.save`` or a ladder saved by ``Ladder.save``; its predictions equal the
    saved one's exactly."""
    d = read_saved(path)
    if d.get("kind") == "ladder":
        return ladder_from_dict(d, Path(path))
    return law_from_dict(d, Path(path))
