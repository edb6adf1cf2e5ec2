"""A stand-in for the wandb package, for tests: the calls the tracker makes, one JSON line each, in
``<dir>/stand_in_wandb.jsonl`` (``dir`` as given to ``init``)."""

import json
from pathlib import Path


class Run:
    def __init__(self, **kwargs):
        self.path, self.finished = Path(kwargs["dir"]) / "stand_in_wandb.jsonl", False
        self._write({"call": "init", **kwargs})
        self.id = kwargs["id"]

    def _write(self, doc: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(doc) + "\n")

    def log(self, data: dict, step: int | None = None) -> None:
        assert not self.finished, "log after finish"
        self._write({"call": "log", "id": self.id, "step": step, "data": data})

    def finish(self) -> None:
        self.finished = True
        self._write({"call": "finish", "id": self.id})


def init(**kwargs) -> Run:
    return Run(**kwargs)
