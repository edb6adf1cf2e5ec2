"""reasoning-gym datasets as problem sets: generated offline by the library, scored by its own scorer.

Difficulty d is either the d-th value of each parameter in ``levels`` (``{"max_terms": [2, 3, 4]}``:
three difficulties), or, with no ``levels``, the dataset's curriculum level d - 1 taken at the top of
each attribute's range (so that a difficulty is one setting, not a mix of the easier ones). Each
difficulty is its own dataset of ``size`` problems; the library seeds entry i with seed + i, so the
difficulties' seeds lie 10^6 apart. A score is right when it is 1 (the library gives partial credit
to answers that contain the reference).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from scaling.errors import TaskError
from scaling.tasks.answers import AnswerChecker
from scaling.tasks.problems import Problem, ProblemSet

SEED_STRIDE = 10**6


def _library():
    try:
        import reasoning_gym
        from reasoning_gym import factory
    except ImportError:
        raise TaskError("reasoning-gym tasks need the library: pip install -e '.[gym]'") from None
    return reasoning_gym, factory


def level_configs(source) -> list[dict]:
    """The dataset settings of each difficulty, in order (difficulty 1 first)."""
    _, factory = _library()
    base = json.loads(source.config)
    levels = json.loads(source.levels)
    if levels:
        lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in levels.items()}
        if len(set(lengths.values())) != 1 or min(lengths.values()) < 1:
            raise TaskError(f"reasoning_gym.levels: expected lists of one common length >= 1, got {levels}")
        n = next(iter(lengths.values()))
        return [base | {k: v[i] for k, v in levels.items()} for i in range(n)]
    if not factory.has_curriculum(source.name):
        raise TaskError(f"reasoning_gym: {source.name!r} has no curriculum; give levels: {{param: [values]}}")
    from reasoning_gym.coaching.base_curriculum import DefaultCurriculumContext, RangeAttributeMode

    curriculum = factory.create_curriculum(source.name)
    top = max(len(a.levels) for a in curriculum.attributes.values())
    context = DefaultCurriculumContext(mode=RangeAttributeMode.UPPER_BOUND)
    out = []
    for level in range(top):
        curriculum.set_global_level(level)
        cfg = asdict(curriculum.generate_configuration(base | {"seed": 0, "size": 1}, context=context))
        out.append({k: v for k, v in cfg.items() if k not in ("seed", "size")})
    return out


def _reference(name: str, d: int, i: int, answer, checker: AnswerChecker | None) -> str:
    """Entry i's reference answer as text, which supervised training imitates; some datasets have none
    (their scorer judges a solution by itself), and those cannot be trained on here."""
    where = f"reasoning_gym: {name} at difficulty {d}, problem {i}"
    if answer is None or not str(answer).strip():
        raise TaskError(f"{where}: no reference answer to train on (the dataset scores solutions without one)")
    why = None if checker is None else checker.reference_error(str(answer))
    if why is not None:
        raise TaskError(f"{where}: the {checker.kind} checker expects {why}")
    return str(answer)


def gym_task(source, checker: AnswerChecker | None = None, name: str | None = None) -> ProblemSet:
    """The problem set of a reasoning-gym dataset (``scaling.settings.GymSource``); ``checker`` replaces
    the library's scorer where given."""
    rg, factory = _library()
    if source.name not in factory.DATASETS:
        raise TaskError(f"reasoning_gym: unknown dataset {source.name!r}; known: {sorted(factory.DATASETS)[:12]}...")
    problems, datasets = [], {}
    for d, settings in enumerate(level_configs(source), 1):
        try:  # the library generates an entry when it is read, where some settings fail too
            data = rg.create_dataset(source.name, **settings, size=source.size, seed=source.seed + d * SEED_STRIDE)
            entries = [data[i] for i in range(source.size)]
        except (AssertionError, TypeError, ValueError) as e:
            raise TaskError(f"reasoning_gym: {source.name} at difficulty {d} rejects {settings}: {e}") from None
        datasets[d] = data
        for i, entry in enumerate(entries):
            answer = _reference(source.name, d, i, entry.get("answer"), checker)
            problems.append(Problem(entry["question"], answer, difficulty=d, id=f"{d}-{i}", entry=entry))

    def score(p: Problem, text: str | None) -> float:
        if checker is not None:
            return float(checker(text, p.answer))
        if text is None:
            return 0.0
        try:
            return float(datasets[p.difficulty].score_answer(text, p.entry) >= 1.0 - 1e-9)
        except Exception:  # a scorer that trips on garbage scores it wrong, never crashes the run
            return 0.0

    digest = hashlib.sha256(json.dumps([(p.prompt, p.answer, p.difficulty) for p in problems]).encode()).hexdigest()
    identity = {
        "name": name or source.name,
        "reasoning_gym": asdict(source),
        "problems_sha256": digest[:16],
        "checker": None if checker is None else [checker.kind, checker.tolerance],
    }
    return ProblemSet(name or source.name, problems, score, identity, f"reasoning_gym:{source.name}")
