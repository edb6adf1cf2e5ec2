"""A task made of given problems: a JSONL file of text problems on the byte tokenizer, checked on the host.

One problem per line, a JSON object:
    prompt      str, required     the question (any text)
    answer      str, required     the reference answer, as the task's checker reads it
    id          str or int        unique within the file
    trace       str               reference thinking for supervised training (without it: prompt -> answer)
    difficulty  int >= 1          default 1
    split       "train" | "eval"  default: by hash of the prompt, as for the generated tasks (1 in 8 held out)
Other keys are warned about once. A problem set is finite: training draws from it in epochs (a fresh
permutation per draw), evaluation takes its held-out problems in order of a seeded permutation.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import TaskError
from scaling.tasks.answers import AnswerChecker
from scaling.tasks.base import HELD_OUT_MODULUS, Blocks, Task, prompt_hash
from scaling.tasks.checker import answer_span
from scaling.tokenizer import BYTE_TOKENIZER, PAD, SEP, byte_encode, byte_text

KEYS = ("prompt", "answer", "id", "trace", "difficulty", "split")
SPLITS = ("train", "eval")


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    trace: str = ""
    difficulty: int = 1
    split: str | None = None  # None: by hash of the prompt
    id: str | None = None
    entry: Any = None  # what a library's scorer needs (reasoning-gym), beside the reference answer


class ProblemSet(Task):
    """A finite set of problems; ``score(problem, answer_text)`` is the checker (1.0 right, 0.0 wrong;
    ``answer_text`` None where the model wrote no answer or invalid UTF-8)."""

    tokenizer = BYTE_TOKENIZER
    in_graph = False

    def __init__(self, name: str, problems: list[Problem], score: Callable, identity: dict, source: str):
        if not problems:
            raise TaskError(f"{source}: no problems")
        self.name, self.problems, self.score, self._identity, self.source = name, problems, score, identity, source
        prompts = [np.append(byte_encode(p.prompt), SEP) for p in problems]
        traces = [byte_encode(p.trace) for p in problems]
        answers = [byte_encode(p.answer) for p in problems]
        split = np.array([p.split or "" for p in problems], dtype="<U5")
        unsplit = np.flatnonzero(split == "")
        held_out = _hash_held_out([prompts[i] for i in unsplit])
        split[unsplit] = np.where(held_out, "eval", "train")
        difficulty = np.array([p.difficulty for p in problems])
        self.levels = sorted({int(d) for d in difficulty})
        self.min_difficulty, self.max_difficulty = self.levels[0], self.levels[-1]
        self._blocks, self._pool = {}, {}
        for d in self.levels:
            rows = np.flatnonzero(difficulty == d)
            self._blocks[d] = Blocks(
                _pad([prompts[i] for i in rows]),
                _pad([traces[i] for i in rows]),
                _pad([answers[i] for i in rows]),
                rows[:, None].astype(np.int32),  # the checker's key: the problem's index
            )
            for s in SPLITS:
                self._pool[d, s] = np.flatnonzero(split[rows] == s)
            self._pool[d, "any"] = np.arange(len(rows))

    @property
    def identity(self) -> dict:
        return self._identity

    def problem_counts(self, split: str) -> dict[int, int]:
        """Problems per difficulty in ``split``."""
        return {d: len(self._pool[d, split]) for d in self.levels}

    def blocks(self, d: int, n: int, rng: np.random.Generator) -> Blocks:
        return self.split_blocks(d, n, "any", rng)

    def split_blocks(self, d: int, n: int, split: str, rng: np.random.Generator, easy: bool = False) -> Blocks:
        """n problems of difficulty d from ``split``: whole permutations of it (epochs), then part of one."""
        pool = self._pool.get((d, split), np.zeros(0, int))
        if not len(pool):
            raise TaskError(f"{self.source}: no {split} problems at difficulty {d} (levels: {self.levels})")
        epochs = -(-n // len(pool))
        order = np.concatenate([rng.permutation(pool) for _ in range(epochs)])[:n] if n else pool[:0]
        return self._blocks[d].rows(order)

    def check(self, gen_NxG, key_NxY, xp=np):
        """The score of each generated answer (the text between the first <eot> and the <eos> after it)."""
        if xp is not np:
            raise TaskError(f"task {self.name!r} is checked on the host (it has no jax.numpy checker)")
        gen_NxG, G = np.asarray(gen_NxG), np.shape(gen_NxG)[1]
        e_N, s_N = answer_span(gen_NxG)
        out = np.zeros(len(gen_NxG), np.float32)
        for i, (e, s, k) in enumerate(zip(e_N, s_N, np.asarray(key_NxY)[:, 0])):
            if s < G:  # an answer closed by <eos>
                out[i] = self.score(self.problems[k], byte_text(gen_NxG[i, e + 1 : s]))
        return out


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(rows), max(map(len, rows))), PAD, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _hash_held_out(prompts: list[np.ndarray]) -> np.ndarray:
    """Whether each prompt (its own tokens, no padding) falls in the held-out split."""
    held = np.zeros(len(prompts), bool)
    lengths = np.array([len(p) for p in prompts])
    for n in np.unique(lengths):
        rows = np.flatnonzero(lengths == n)
        held[rows] = prompt_hash(np.stack([prompts[i] for i in rows])) % np.uint64(HELD_OUT_MODULUS) == 0
    return held


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise TaskError(f"{path}: cannot read the problem file ({e.strerror})") from None


def read_jsonl(path: str | Path, checker: AnswerChecker) -> list[Problem]:
    """The problems of a JSONL file, validated: TaskError naming the file, the line and the field."""
    return parse_jsonl(_read(Path(path)), Path(path), checker)


def parse_jsonl(data: bytes, path: Path, checker: AnswerChecker) -> list[Problem]:
    """``read_jsonl`` of the bytes ``data`` read from ``path`` (named in the errors)."""
    problems, ids, unknown = [], {}, {}
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TaskError(f"{where}: not a JSON object on one line ({e})") from None
        if not isinstance(row, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in row.keys() - set(KEYS):
            unknown.setdefault(key, n)
        problems.append(_problem(row, where, checker))
        pid = problems[-1].id
        if pid is not None:
            if pid in ids:
                raise TaskError(f"{where}: id: {pid!r} repeats the id of line {ids[pid]}")
            ids[pid] = n
    if not problems:
        raise TaskError(f"{path}: no problems (expected one JSON object per line)")
    if unknown:
        first = sorted(unknown.items(), key=lambda kv: (kv[1], kv[0]))
        listed = ", ".join(f"{k!r} (first on line {n})" for k, n in first)
        warnings.warn(f"{path}: ignoring unknown keys {listed}; known keys: {list(KEYS)}", stacklevel=3)
    return problems


def _problem(row: dict, where: str, checker: AnswerChecker) -> Problem:
    for key in ("prompt", "answer"):
        if key not in row:
            raise TaskError(f"{where}: {key}: missing (every problem needs a prompt and an answer)")
    for key in ("prompt", "answer", "trace"):
        if key in row and not isinstance(row[key], str):
            raise TaskError(f"{where}: {key}: expected a string, got {row[key]!r}")
    if not row["prompt"]:
        raise TaskError(f"{where}: prompt: expected a non-empty string, got ''")
    d = row.get("difficulty", 1)
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise TaskError(f"{where}: difficulty: expected an integer >= 1, got {d!r}")
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise TaskError(f"{where}: split: expected one of {list(SPLITS)}, got {split!r}")
    pid = row.get("id")
    if pid is not None and (not isinstance(pid, (str, int)) or isinstance(pid, bool)):
        raise TaskError(f"{where}: id: expected a string or an integer, got {pid!r}")
    error = checker.reference_error(row["answer"])
    if error:
        raise TaskError(f"{where}: answer: expected {error} (checker {checker.kind!r})")
    return Problem(row["prompt"], row["answer"], row.get("trace", ""), d, split, None if pid is None else str(pid))


def file_task(path: str | Path, checker: AnswerChecker, name: str | None = None) -> ProblemSet:
    """The problem set of a JSONL file, named after the file unless ``name`` is given; its identity is the
    digest of the file's bytes and the checker, so editing the file invalidates the results made with it."""
    data = _read(Path(path))  # read once: the problems and the digest are of the same bytes
    problems = parse_jsonl(data, Path(path), checker)
    digest = hashlib.sha256(data).hexdigest()[:16]
    name = name or Path(path).stem
    identity = {"name": name, "jsonl_sha256": digest, "checker": checker.kind, "tolerance": checker.tolerance}
    return ProblemSet(name, problems, lambda p, text: float(checker(text, p.answer)), identity, str(path))
