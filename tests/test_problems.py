"""Problem sets from JSONL files: the byte tokenizer, the answer checkers, validation, splits and epochs."""

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from scaling.errors import TaskError
from scaling.tasks import generate
from scaling.tasks.answers import AnswerChecker, read_number
from scaling.tasks.problems import file_task, read_jsonl
from scaling.tokenizer import BYTE_TOKENIZER, EOS, EOT, PAD, SEP, byte_decode, byte_encode, byte_text

EXAMPLE = Path(__file__).parents[1] / "examples" / "word_problems" / "word_problems.jsonl"


def write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_byte_tokenizer_takes_any_text_and_reads_back_only_valid_utf8():
    text = "Combien font 2 × 3 ? Réponse : 6 🙂"
    ids = byte_encode(text)
    assert byte_text(ids) == text and BYTE_TOKENIZER.decode(ids) == text
    assert ids.min() > SEP and ids.max() < BYTE_TOKENIZER.vocab_size
    assert byte_text(ids[:-1]) is None  # a cut multi-byte character is not text
    assert byte_text(np.array([EOT])) is None and byte_text(np.array([10_000])) is None
    assert byte_decode(np.array([*byte_encode("ab"), EOT, *byte_encode("c")])) == "ab<eot>c"


def test_checkers_exact_numeric_and_their_reference_errors():
    exact = AnswerChecker("exact")
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed and exact(f"  {decomposed}\n", composed)
    assert not exact("Café", "café") and not exact("cafe.", "cafe") and not exact(None, "x")
    numeric = AnswerChecker("numeric", tolerance=1e-3)
    assert numeric("4.50", "4.5") and numeric(" 1/2", "0.5") and numeric("1,000", "1000") and numeric("9.0001", "9")
    assert not numeric("9.1", "9") and not numeric("nan", "9") and not numeric("1/0", "9") and not numeric("9x", "9")
    assert read_number("1e400") is None and read_number("x" * 10_000) is None
    assert numeric.reference_error("abc") and numeric.reference_error(" ") and numeric.reference_error("12") is None


def test_math_checker_accepts_equivalent_forms():
    pytest.importorskip("math_verify", reason="the math extra (math-verify) is not installed")
    math = AnswerChecker("math")
    assert math("0.5", "1/2") and math("\\frac{1}{2}", "0.5") and not math("0.6", "1/2")
    assert not math("}}{{\\frac{", "1/2") and not math(None, "1/2")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "a", "answer": "1"}, {"answer": "2"}], r":2: prompt: missing"),
        ([{"prompt": "a"}], r":1: answer: missing"),
        ([{"prompt": "a", "answer": 3}], r":1: answer: expected a string, got 3"),
        ([{"prompt": "a", "answer": "1", "difficulty": 0}], r":1: difficulty: expected an integer >= 1"),
        ([{"prompt": "a", "answer": "1", "difficulty": "2"}], r":1: difficulty: expected an integer >= 1"),
        ([{"prompt": "a", "answer": "1", "split": "test"}], r":1: split: expected one of \['train', 'eval'\]"),
        ([{"prompt": "a", "answer": "1", "id": 7}, {"prompt": "b", "answer": "2", "id": "7"}], r":2: id: '7' repeats"),
        ([{"prompt": "a", "answer": "one"}], r":1: answer: expected a number .*got 'one' \(checker 'numeric'\)"),
        (['{"prompt": "a", "answer": "1"', "{}"], r":1: not a JSON object on one line"),
        (["[1, 2]"], r":1: expected a JSON object, got list"),
        (["", "  "], r"no problems"),
    ],
)
def test_bad_problem_files_name_the_line_and_the_field(tmp_path, rows, message):
    path = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TaskError, match=message):
        read_jsonl(path, AnswerChecker("numeric"))


def test_unknown_keys_are_warned_about_once(tmp_path):
    rows = [{"prompt": f"p{i}", "answer": "1", "source": "x", "note": i} for i in range(5)]
    with pytest.warns(UserWarning, match=r"ignoring unknown keys 'note' \(first on line 1\), 'source'") as seen:
        read_jsonl(write(tmp_path / "p.jsonl", rows), AnswerChecker())
    assert len(seen) == 1


def test_splits_epochs_and_checking_generations(tmp_path):
    rows = [{"prompt": f"What is {i} plus 1?", "answer": str(i + 1), "trace": f"{i}+1", "id": i} for i in range(40)]
    rows += [{"prompt": f"Twice {i}?", "answer": str(2 * i), "difficulty": 2, "split": "eval"} for i in range(3)]
    task = file_task(write(tmp_path / "p.jsonl", rows), AnswerChecker("numeric"), name="plus")
    assert (task.name, task.min_difficulty, task.max_difficulty) == ("plus", 1, 2)
    assert task.problem_counts("eval")[2] == 3 and task.problem_counts("train")[2] == 0
    held = task.problem_counts("eval")[1]
    assert 0 < held < 40 and held + task.problem_counts("train")[1] == 40  # 1 in 8 by hash, on average

    # Training draws whole permutations of the training split (epochs) and never a held-out problem.
    n_train = task.problem_counts("train")[1]
    ex = generate(task, np.ones(2 * n_train, int), np.random.default_rng(0), split="train")
    drawn = np.bincount(ex.key[:, 0], minlength=43)
    assert sorted(set(drawn[drawn > 0])) == [2] and (drawn > 0).sum() == n_train
    ev = generate(task, np.ones(held, int), np.random.default_rng(0), split="eval")
    assert set(ev.key[:, 0]).isdisjoint(np.flatnonzero(drawn))

    # The sequence: <bos> prompt <sep> trace <eot> answer <eos>, in bytes.
    i = int(ex.key[0, 0])
    text = BYTE_TOKENIZER.decode(ex.tokens[0])
    assert text == f"<bos>What is {i} plus 1?<sep>{i}+1<eot>{i + 1}<eos>"

    # Scoring: the answer between the first <eot> and the next <eos>, as text; garbage scores 0.
    def gen(answer_ids, close=True):
        row = [*byte_encode("thinking"), EOT, *answer_ids, *([EOS] if close else [])]
        return np.array(row + [PAD] * (24 - len(row)), np.int32)

    key = np.full((6, 1), i)
    gens = np.stack(
        [
            gen(byte_encode(f" {i + 1}.0 ")),  # right: a number within tolerance
            gen(byte_encode(str(i + 2))),  # wrong
            gen(byte_encode(str(i + 1)), close=False),  # never closed by <eos>
            gen([0xC3 + 5]),  # invalid UTF-8
            gen([EOT, 300, -4]),  # specials and ids outside the vocabulary
            np.full(24, EOS, np.int32),  # no <eot>
        ]
    )
    np.testing.assert_array_equal(task.check(gens, key), [1, 0, 0, 0, 0, 0])
    with pytest.raises(TaskError, match="checked on the host"):
        task.check(gens, key, xp=object())


def test_example_problem_set_is_made_by_its_script(tmp_path):
    script = EXAMPLE.with_name("make_problems.py")
    copy = tmp_path / "make_problems.py"
    copy.write_text(script.read_text())
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True)
    assert (tmp_path / "word_problems.jsonl").read_bytes() == EXAMPLE.read_bytes()
    task = file_task(EXAMPLE, AnswerChecker("numeric"))
    assert task.levels == [1, 2, 3] and min(task.problem_counts("eval").values()) >= 64


SWEEP = """
models: [d32]
seeds: [0]
train: {{steps: 10, batch_size: 8, difficulties: [1, 2], chunk_steps: 10}}
eval: {{difficulties: [1, {top}], n_per_difficulty: 8, samples: 0}}
testtime: {{budgets: [], ks: [], rounds: 0}}
rl: {{prompts: 8, prompts_per_step: 4, group_size: 2, chunk_steps: 2, ladder: [8]}}
"""


def sweep(tmp_path: Path, task: str, top: int):
    from scaling.sweep import run_sweep

    config = tmp_path / "sweep.yaml"
    config.write_text(f"task: {task}\n" + SWEEP.format(top=top))
    return run_sweep(config, tmp_path / "out", progress=False), tmp_path / "out"


def test_sweep_on_the_example_file_runs_sft_eval_and_rl_with_the_host_checker(tmp_path):
    res, out = sweep(tmp_path, f"{{jsonl: {EXAMPLE}, checker: numeric}}", top=3)
    rows = res.results
    assert set(rows["task"]) == {EXAMPLE.stem} and set(rows["difficulty"]) == {1, 2, 3}
    assert set(rows["source"]) == {"eval", "rl_ladder"} and rows["in_train_range"].sum() < len(rows)
    assert rows["value"].between(0, 1).all() and rows["answer_loss"].notna().all()
    (rl_dir,) = (out / "stages").glob("rl-*")
    metrics = [json.loads(line) for line in (rl_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(0 <= m["pass_rate"] <= 1 for m in metrics)  # 2 steps x 1 seed


def test_reasoning_gym_task_runs_sft_eval_and_an_rl_chunk(tmp_path):
    pytest.importorskip("reasoning_gym", reason="the gym extra (reasoning-gym) is not installed")
    task = (
        "{reasoning_gym: {name: basic_arithmetic, size: 64, config: {min_digits: 1, max_digits: 1, operators: [+],"
        " allow_parentheses: false, allow_negation: false}, levels: {min_terms: [2, 3, 4], max_terms: [2, 3, 4]}}}"
    )
    res, _ = sweep(tmp_path, task, top=3)  # trained on difficulties 1-2, evaluated on 1-3
    rows = res.results
    assert set(rows["task"]) == {"basic_arithmetic"} and set(rows["difficulty"]) == {1, 2, 3}
    assert set(rows["source"]) == {"eval", "rl_ladder"}
    assert set(rows.loc[~rows["in_train_range"], "difficulty"]) == {3}


def test_reasoning_gym_datasets_without_usable_reference_answers_fail_before_compute():
    pytest.importorskip("reasoning_gym", reason="the gym extra (reasoning-gym) is not installed")
    from scaling.settings import GymSource
    from scaling.tasks.gym import gym_task

    with pytest.raises(TaskError, match=r"graph_color at difficulty 1, problem 0: no reference answer to train on"):
        gym_task(
            GymSource("graph_color", levels=json.dumps({"min_num_vertices": [4], "max_num_vertices": [6]}), size=2)
        )
    with pytest.raises(TaskError, match=r"graph_color at difficulty 1 rejects .*empty range"):  # fails on access
        gym_task(GymSource("graph_color", levels=json.dumps({"max_num_vertices": [6]}), size=2))
    with pytest.raises(TaskError, match=r"spell_backward at difficulty 1, problem 0: the numeric checker expects a"):
        words = GymSource("spell_backward", levels=json.dumps({"max_word_len": [5]}), size=2)
        gym_task(words, AnswerChecker("numeric"))


def test_a_bad_problem_file_fails_before_compute_naming_line_and_field(tmp_path, capsys):
    from scaling.cli import main

    bad = write(tmp_path / "bad.jsonl", [{"prompt": "1+1", "answer": "2"}, {"prompt": "2+2", "answer": ["4"]}])
    config = tmp_path / "c.yaml"
    config.write_text(f"task: {{jsonl: {bad}}}\nmodels: [d32]\ntrain: {{steps: 10}}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: answer: expected a string" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "stages").exists()


def test_reasoning_gym_difficulties_from_levels_or_the_curriculum():
    pytest.importorskip("reasoning_gym", reason="the gym extra (reasoning-gym) is not installed")
    from scaling.settings import GymSource
    from scaling.tasks.gym import gym_task, level_configs

    given = level_configs(GymSource("chain_sum", json.dumps({"min_digits": 1}), json.dumps({"max_terms": [2, 4]})))
    assert [(c["min_digits"], c["max_terms"]) for c in given] == [(1, 2), (1, 4)]
    curriculum = level_configs(GymSource("chain_sum"))  # one setting per level: the top of each range
    assert [(c["min_terms"], c["max_terms"]) for c in curriculum[:3]] == [(2, 2), (3, 3), (4, 4)]
    task = gym_task(GymSource("chain_sum", size=40))
    assert task.levels == list(range(1, len(curriculum) + 1))
    first = next(i for i, p in enumerate(task.problems) if p.difficulty == 1)
    p = task.problems[first]
    assert task.score(p, p.answer) == 1.0 and task.score(p, f"1{p.answer}") == 0.0 and task.score(p, None) == 0.0


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("{jsonl: EX, checker: bogus}", r"task: unknown checker 'bogus'; choose one of \['exact', 'numeric', 'math'\]"),
        ("{jsonl: EX, tolerance: -1}", r"task: tolerance: expected a number >= 0, got -1.0"),
        ("{jsonl: missing.jsonl}", r"task: missing.jsonl: no such problem file"),
        ("{checker: exact}", r"task: expected exactly one of jsonl or reasoning_gym"),
        (
            "{jsonl: EX, checker: numeric}\neval: {difficulties: [1, 4]}",
            r"eval.difficulties: expected \[lo, hi\] with 1",
        ),
    ],
)
def test_bad_task_settings_are_config_errors_before_compute(tmp_path, task, message):
    from scaling.config import ConfigError
    from scaling.plan import make_plan

    config = tmp_path / "c.yaml"
    config.write_text(
        f"task: {task.replace('EX', str(EXAMPLE))}\nmodels: [d32]\ntrain: {{steps: 10, difficulties: [1, 2]}}\n"
    )
    with pytest.raises(ConfigError, match=message):
        make_plan(config)


def test_a_sweep_over_tasks_warns_about_repeats_naming_the_problem_set(tmp_path):
    from scaling.plan import make_plan

    config = tmp_path / "c.yaml"
    config.write_text(
        f"axes: {{task: [add, {{jsonl: {EXAMPLE}, checker: numeric}}]}}\n"
        "models: [d32]\ntrain: {steps: 2000, batch_size: 32, difficulties: [1, 2]}\neval: {difficulties: [1, 3]}\n"
    )
    with pytest.warns(UserWarning, match=r"supervised training repeats the training problems of task 'word_problems'"):
        make_plan(config)
    config.write_text(
        f"task: {{jsonl: {EXAMPLE}, checker: numeric}}\nmodels: [d32]\ntrain: {{steps: 10, difficulties: [1, 2]}}\n"
        "rl: {prompts: 8192, prompts_per_step: 64}\neval: {difficulties: [1, 3], n_per_difficulty: 200}\n"
    )
    with pytest.warns(UserWarning) as caught:
        plan = make_plan(config)
    said = " ".join(str(w.message) for w in caught)
    assert "RL repeats the training problems of task 'word_problems'" in said
    assert "evaluation scores some held-out problems of task 'word_problems'" in said and "1: 97 < 200" in said
    from scaling.plan import dry_run_doc

    train = file_task(EXAMPLE, AnswerChecker("numeric")).problem_counts("train")
    epochs = {s["kind"]: s["epochs"] for s in dry_run_doc(plan, {})["stages"]}
    assert epochs["rl"] == pytest.approx(8192 / (train[1] + train[2])) and epochs["eval"] is None
