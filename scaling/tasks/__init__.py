"""Procedurally generated, exactly verifiable reasoning tasks on one character-level tokenizer."""

from scaling.errors import ScalingError
from scaling.tasks.arithmetic import Addition, RunningSum
from scaling.tasks.base import Examples, Task, generate
from scaling.tasks.checker import answer_span, exact_answer, first_eot, written_tokens
from scaling.tasks.search import PathSearch
from scaling.tasks.symbolic import Cipher, VariableChain

TASKS: dict[str, Task] = {
    t.name: t for t in (RunningSum(), Addition(), VariableChain(), Cipher(1), Cipher(3), PathSearch())
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ScalingError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None


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
