import numpy as np
import pytest

from scaling.errors import ScalingError
from scaling.tasks import TASKS, first_eot, generate, get_task
from scaling.tasks import exact_answer as verify
from scaling.tasks.base import HELD_OUT_MODULUS, prompt_hash
from scaling.tokenizer import EOS, EOT, PAD, VOCAB_SIZE, decode, encode


def continuation(ex, i):
    """What a perfect model writes after the prompt of row i."""
    return ex.tokens[i, ex.prompt_len[i] :]


def test_tokenizer_round_trip():
    text = "a 3+9 2+5?2c1 8c0;x=0+12: hello>"
    assert decode(encode(text)) == text
    ids = np.concatenate([[1], encode("s 12?"), [EOT], encode("12"), [EOS, PAD, PAD]])
    assert decode(ids) == "<bos>s 12?<eot>12<eos>"
    assert decode(ids, keep_specials=False) == "s 12?12"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode("A")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_verifier_scores_correct_traces_one_and_wrong_answers_zero(name):
    task = TASKS[name]
    ex = generate(task, np.array([1, 2, 3, 4, 5]), np.random.default_rng(0))
    G = ex.tokens.shape[1]
    gen = np.stack([np.pad(continuation(ex, i), (0, G - len(continuation(ex, i)))) for i in range(len(ex))])
    assert task.check(gen, ex.key).tolist() == [1.0] * 5
    wrong = gen.copy()
    for i in range(len(ex)):  # change the last answer token
        j = np.flatnonzero(wrong[i] == EOS)[0] - 1
        wrong[i, j] = encode("z")[0] if wrong[i, j] != encode("z")[0] else encode("y")[0]
    assert task.check(wrong, ex.key).tolist() == [0.0] * 5
    no_eos = gen.copy()
    no_eos[no_eos == EOS] = encode("0")[0]  # an answer that runs on is wrong
    assert task.check(no_eos, ex.key).sum() == 0


def test_verifier_on_hand_made_addition_traces():
    task = get_task("add")
    ex = generate(task, np.array([3]), np.random.default_rng(0))
    text = decode(ex.tokens[0], keep_specials=True)
    prompt, rest = text.removeprefix("<bos>a ").split("?")
    pairs = prompt.split()
    a = int("".join(p[0] for p in pairs)[::-1])  # digits are written least significant first
    b = int("".join(p[2] for p in pairs)[::-1])
    answer = f"{a + b:04d}"[::-1]
    assert rest.split("<eot>")[1] == answer + "<eos>"

    def gen(s):
        return np.array([[*map(int, np.concatenate([encode(s.split("|")[0]), [EOT], encode(s.split("|")[1]), [EOS]]))]])

    assert verify(gen(f"1c0|{answer}"), ex.key)[0] == 1.0  # only the answer is checked
    assert verify(gen(f"1c0|{answer[:-1]}"), ex.key)[0] == 0.0
    assert verify(gen(f"1c0|{answer}0"), ex.key)[0] == 0.0


def test_verifier_never_crashes_on_garbage():
    ex = generate(get_task("sum"), np.array([2] * 50), np.random.default_rng(1))
    rng = np.random.default_rng(2)
    for shape in [(50, 1), (50, 3), (50, 40)]:
        garbage = rng.integers(-5, VOCAB_SIZE + 20, shape)
        r = verify(garbage, ex.key)
        assert r.shape == (50,) and set(np.unique(r)) <= {0.0, 1.0}
    only_eot = np.full((50, 5), EOT)
    assert verify(only_eot, ex.key).sum() == 0
    assert verify(np.full((50, 1), PAD), ex.key).sum() == 0


@pytest.mark.parametrize("name", sorted(TASKS))
def test_generation_is_seeded_and_splits_are_disjoint(name):
    task = TASKS[name]
    d = np.repeat([2, 3], 30 if name == "path_long" else 300)  # graphs of 50-75 nodes: fewer
    a = generate(task, d, np.random.default_rng(5), split="train")
    b = generate(task, d, np.random.default_rng(5), split="train")
    np.testing.assert_array_equal(a.tokens, b.tokens)
    ev = generate(task, d, np.random.default_rng(6), split="eval")
    train_prompts = {a.tokens[i, : a.prompt_len[i]].tobytes() for i in range(len(a))}
    eval_prompts = {ev.tokens[i, : ev.prompt_len[i]].tobytes() for i in range(len(ev))}
    assert not train_prompts & eval_prompts
    held = [prompt_hash(ev.tokens[i : i + 1, 1 : ev.prompt_len[i]]) % HELD_OUT_MODULUS for i in range(5)]
    assert all(int(h[0]) == 0 for h in held)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_cut_traces_end_with_the_answer(name):
    task = TASKS[name]
    ex = generate(task, np.full(200, 4), np.random.default_rng(0), cut_frac=1.0)
    full = generate(task, np.full(200, 4), np.random.default_rng(0))  # the same problems (cuts are drawn last)
    lengths = (ex.tokens != PAD).sum(1)
    assert np.all(lengths < (full.tokens != PAD).sum(1))  # every trace was cut short
    for i in range(len(ex)):  # what is left of it is the start of the full trace
        kept = first_eot(ex.tokens[i : i + 1])[0]
        np.testing.assert_array_equal(ex.tokens[i, :kept], full.tokens[i, :kept])
    G = ex.tokens.shape[1]  # prompts of one difficulty may differ in length (add_indexed's spaces)
    gen = np.stack([np.pad(continuation(ex, i), (0, G + 5 - len(continuation(ex, i)))) for i in range(len(ex))])
    assert task.check(gen, ex.key).mean() == 1.0  # and still ends <eot> answer <eos>
    assert len(np.unique(lengths)) > 3
    # the loss mask covers the thinking and answer tokens only
    m = ex.loss_mask
    assert np.all(m.sum(1) == lengths - ex.prompt_len)


def test_harder_difficulties_are_longer_and_answer_spaces_are_large():
    for name, task in TASKS.items():
        widths = [sum(task.widths(d)) for d in range(1, 6)]
        assert widths == sorted(widths) and widths[0] < widths[-1], name
    ex = generate(get_task("sum"), np.full(2000, 3), np.random.default_rng(0))
    assert len({decode(a) for a in ex.answer}) > 80  # 97 possible answers, not 10


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ScalingError, match="unknown task 'mult'; choose one of"):
        get_task("mult")


def test_corrupted_traces_answer_another_problem():
    task, d = get_task("add"), np.full(400, 3)
    clean = generate(task, d, np.random.default_rng(5))
    assert verify(np.stack([continuation(clean, i) for i in range(400)]), clean.key).all()
    bad = generate(task, d, np.random.default_rng(5), corrupt_frac=0.5)
    np.testing.assert_array_equal(bad.answer, clean.answer)  # the true answers are kept for verification
    np.testing.assert_array_equal(bad.tokens[:, :10], clean.tokens[:, :10])  # same prompts
    wrong = 1 - verify(np.stack([continuation(bad, i) for i in range(400)]), bad.key)
    assert 0.35 < wrong.mean() < 0.6  # about half the traces now end in a wrong answer


def test_easy_problems_have_no_carries_and_stay_in_the_training_split():
    task, d = get_task("add"), np.full(2000, 3)
    ex = generate(task, d, np.random.default_rng(3), easy_frac=0.3)
    assert verify(np.stack([continuation(ex, i) for i in range(len(d))]), ex.key).all()
    digits_ = [encode(str(k))[0] for k in range(10)]
    prompt_digits = np.isin(ex.tokens[:, 1 : ex.prompt_len[0]], digits_)
    small = np.where(prompt_digits, np.isin(ex.tokens[:, 1 : ex.prompt_len[0]], digits_[:5]), True).all(axis=1)
    assert 0.25 < small.mean() < 0.36  # the easy share, plus the few uniform draws that happen to be small
    carries = ex.tokens[:, ex.prompt_len[0] + 2 : ex.prompt_len[0] + 12 : 4]  # the carry digit of each step
    assert (carries[small] == encode("0")[0]).all()  # digits 0-4 never carry
    assert not np.any(prompt_hash(ex.tokens[:, 1 : ex.prompt_len[0]]) % np.uint64(HELD_OUT_MODULUS) == 0)
    only = generate(task, np.full(50, 2), np.random.default_rng(3), easy_frac=1.0)
    assert not np.isin(only.tokens[:, 1 : only.prompt_len[0]], digits_[5:]).any()
    plain = generate(get_task("sum"), d, np.random.default_rng(3), easy_frac=0.3)  # a task without easy problems
    np.testing.assert_array_equal(plain.tokens, generate(get_task("sum"), d, np.random.default_rng(3)).tokens)
    # The easy rows land anywhere: a training chunk's first and last steps see the same mix, not hard
    # problems first and easy ones last (which made the loss a saw tooth with the chunk's period).
    first, last = small[: len(d) // 2].mean(), small[len(d) // 2 :].mean()
    assert abs(first - last) < 0.06, (first, last)


def test_indexed_addition_finds_every_pair_and_digit_by_its_letter():
    task = get_task("add_indexed")
    ex = generate(task, np.arange(1, 7).repeat(50), np.random.default_rng(4), split="any")
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(len(ex)):
        prompt = decode(ex.tokens[i], keep_specials=False).removeprefix("a ").split("?")[0]
        pairs = prompt.split()
        d = len(pairs)
        assert d == ex.difficulty[i] and len(prompt) - len(prompt.lstrip(" ")) <= 10  # 0-10 leading spaces
        start = letters.index(pairs[0][0])
        assert [p[0] for p in pairs] == list(letters[start : start + d])  # consecutive letters from any start
        a = sum(int(p[1]) * 10**k for k, p in enumerate(pairs))  # least significant pair first
        b = sum(int(p[3]) * 10**k for k, p in enumerate(pairs))
        answer = decode(ex.tokens[i], keep_specials=True).split("<eot>")[1].removesuffix("<eos>").rstrip("<pad>")
        assert answer.replace("<pad>", "") == "".join(
            letters[start + k] + digit for k, digit in enumerate(f"{a + b:0{d + 1}d}"[::-1])
        )
    # Letters and spaces are functions of the operands: the held-out split stays a split of the sums.
    train, held = (generate(task, np.full(3000, 1), np.random.default_rng(5), split=s) for s in ("train", "eval"))

    def sums(ex):
        return {decode(t, keep_specials=False).split("?")[0].split()[-1][1:] for t in ex.tokens}

    assert sums(train).isdisjoint(sums(held)) and len(sums(train) | sums(held)) == 100
