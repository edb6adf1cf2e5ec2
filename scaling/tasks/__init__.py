"""Reasoning tasks: procedurally generated, exactly verifiable ones on the character tokenizer (``TASKS``),
and problem sets (a JSONL file, a reasoning-gym dataset) on the byte tokenizer, checked on the host."""

import functools
from pathlib import Path

from scaling.errors import ScalingError, TaskError
from scaling.tasks.answers import AnswerChecker
from scaling.tasks.arithmetic import Addition, IndexedAddition, RunningSum
from scaling.tasks.base import Examples, Task, generate
from scaling.tasks.checker import answer_span, exact_answer, first_eot, written_tokens
from scaling.tasks.search import PathSearch
from scaling.tasks.symbolic import Cipher, VariableChain

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        RunningSum(),
        Addition(),
        IndexedAddition(),
        VariableChain(),
        Cipher(1),
        Cipher(3),
        PathSearch(),
        PathSearch(indexed=True),
        PathSearch(name_len=2, first=0, step=25, max_nodes=200),
    )
}


def get_task(spec) -> Task:
    """The task of a ``task`` setting: a built-in task's name, or a problem-set setting
    (``scaling.settings.ProblemsTask``), loaded once per process (again when its file changes)."""
    if isinstance(spec, str):
        try:
            return TASKS[spec]
        except KeyError:
            raise ScalingError(f"unknown task {spec!r}; choose one of {sorted(TASKS)}") from None
    stamp = None
    if spec.jsonl is not None:
        try:
            st = Path(spec.jsonl).stat()
        except OSError:
            raise TaskError(f"{spec.jsonl}: no such problem file") from None
        stamp = (st.st_mtime_ns, st.st_size)
    return _problem_set(spec, stamp)


@functools.cache
def _problem_set(spec, stamp) -> Task:
    from scaling.tasks.problems import file_task

    if spec.jsonl is not None:
        return file_task(spec.jsonl, AnswerChecker(spec.checker or "exact", spec.tolerance), spec.name)
    from scaling.tasks.gym import gym_task

    checker = None if spec.checker is None else AnswerChecker(spec.checker, spec.tolerance)
    return gym_task(spec.reasoning_gym, checker, spec.name)


__all__ = [
    "TASKS",
    "Examples",
    "Task",
    "answer_span",
    "exact_answer",
    "first_eot",
    "generate",
    "get_task",
    "written_tokens",
]
