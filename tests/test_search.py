"""The path-search task: its checker (numpy and jax.numpy alike), its traces as searches, budget forcing on
long traces, and the split above the training range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.model import init_params
from scaling.sample import budgets_width, decode_budgets, left_pad
from scaling.sample import decode as sample
from scaling.specs import ModelConfig
from scaling.tasks import first_eot, generate, get_task
from scaling.tasks.base import HELD_OUT_MODULUS, prompt_hash
from scaling.tasks.search import node_codes
from scaling.tokenizer import EOS, EOT, PAD, VOCAB_SIZE, decode, encode

TASK, LONG, INDEXED = get_task("path"), get_task("path_long"), get_task("path_indexed")
IN_JIT = {t.name: jax.jit(lambda g, k, t=t: t.check(g, k, jnp)) for t in (TASK, LONG, INDEXED)}  # one compile per shape


def both(gen, key, task=TASK):
    """The numpy verdicts, after asserting that the jitted jax.numpy checker agrees."""
    host = task.check(gen, key)
    np.testing.assert_array_equal(np.asarray(IN_JIT[task.name](jnp.asarray(gen), jnp.asarray(key))), host)
    return host.tolist()


def answers(*texts, G=40):
    """Generations 'thinking|answer' (no '|': no <eot>; a trailing '$': no <eos>), PAD-padded to G."""
    rows = []
    for t in texts:
        think, _, said = t.partition("|")
        ids = list(encode(think))
        if "|" in t:
            ids += [EOT, *encode(said.rstrip("$"))] + ([] if said.endswith("$") else [EOS])
        rows.append(np.pad(np.array(ids[:G], np.int32), (0, G - min(len(ids), G))))
    return np.stack(rows)


def key_of(start, goal, edges, M=1):
    """The checker's key of a graph whose node names have M letters: start, goal, then 'uv' edges."""
    names = [start, goal, *(e[i : i + M] for e in edges.split() for i in (0, M))]
    ids = node_codes(np.stack([encode(n) for n in names]))[0]
    return np.pad(ids, (0, 20 - len(ids))).astype(np.int32)


def test_checker_accepts_every_valid_path_and_nothing_else():
    # a -> b -> d, a -> c -> d, c -> e: two valid answers from a to d
    key = key_of("a", "d", "ab bd ac cd ce")
    cases = {
        "a>b b>d|abd": 1,
        "|acd": 1,  # another valid path, and no thinking at all
        "x>y|abd": 1,  # the thinking is not checked
        "|ad": 0,  # no edge a -> d
        "|acbd": 0,  # c -> b is not an edge
        "|dba": 0,  # written the wrong way round
        "|ab": 0,  # does not reach the goal
        "|bd": 0,  # does not leave from the start
        "|aecd": 0,  # a -> e is not an edge
        "|a": 0,
        "|": 0,  # empty answer
        "|abd$": 0,  # no <eos>: the answer runs on
        "abd": 0,  # no <eot>: no answer
        "|aabd": 0,  # a -> a is not an edge
        "|ab d": 0,
    }
    gen = answers(*cases)
    assert both(gen, np.stack([key] * len(cases))) == [float(v) for v in cases.values()]


def test_checker_never_crashes_and_pad_is_never_an_edge():
    key = key_of("a", "d", "ab bd")
    pad_path = np.array([[EOT, encode("a")[0], PAD, encode("d")[0], EOS, PAD]], np.int32)
    assert both(pad_path, key[None]) == [0.0]  # the key's PAD padding is not an edge a -> PAD
    rng = np.random.default_rng(0)
    keys = np.stack([key] * 64)
    for G in (1, 30):
        garbage = rng.integers(-5, VOCAB_SIZE + 20, (64, G)).astype(np.int32)
        garbage[:, 0] = EOT  # always an answer to read
        assert set(both(garbage, keys)) <= {0.0, 1.0}
    long = answers("|a" + "bd" * 30, G=80)  # longer than any path of the graph
    assert both(long, key[None]) == [0.0]


def test_checker_reads_names_of_two_letters():
    # ab -> cd -> ef, ab -> ce -> ef; 'ce' and 'cd' share a letter, 'ab' + 'c' is no name
    key = key_of("ab", "ef", "abcd cdef abce ceef", M=2)
    cases = {
        "|abcdef": 1,
        "|abceef": 1,
        "|abef": 0,  # no edge ab -> ef
        "|abcdefe": 0,  # an odd number of letters: not a list of names
        "|abcdce": 0,  # ends at ce, not the goal
        "|acdef": 0,
        "|ab  cdef": 0,  # a blank is no name
        "|abcd": 0,
        "|ab": 0,
    }
    gen = answers(*cases)
    assert both(gen, np.stack([key] * len(cases)), LONG) == [float(v) for v in cases.values()]
    rng = np.random.default_rng(0)
    garbage = rng.integers(-5, VOCAB_SIZE + 20, (64, 30)).astype(np.int32)
    garbage[:, 0] = EOT
    assert set(both(garbage, np.stack([key] * 64), LONG)) <= {0.0, 1.0}
    # an id outside the vocabulary never spells a name, even where its code would match one
    a, b = encode("ab")
    spoof = np.array([[EOT, a - 1, b + VOCAB_SIZE, *encode("cdef"), EOS]], np.int32)
    assert both(spoof, key[None], LONG) == [0.0]


def children_of(prompt, M=1, indexed=False):
    """The children lists a prompt names: 'u:abc' lists, or (``indexed``) edges 'u1a u2b' numbered in order."""
    items = prompt[4 + 2 * M :].split()
    if not indexed:
        lists = [item.split(":") for item in items if ":" in item]
        return {u: [c[i : i + M] for i in range(0, len(c.strip()), M)] for u, c in lists}
    children = {}
    for item in items:
        u, i, v = item[:M], int(item[M]), item[M + 1 :]
        children.setdefault(u, []).append(v)
        assert len(children[u]) == i, item  # numbered in order from 1
    return children


def replay(text, M=1, indexed=False):
    """Check that a generated problem's trace is the depth-first search it describes (node names of M
    letters), from its text alone; return (the path found as a list of names, the children lists, how many
    seen nodes were entered again). A seen child is skipped, or (``indexed``: a down step 'u2v' names the
    child's number) entered and left at once."""
    prompt, rest = text.removeprefix("<bos>").split("?")
    start, goal = prompt[2 : 2 + M], prompt[3 + M : 3 + 2 * M]
    children = children_of(prompt, M, indexed)
    thinking = rest.split("<eot>")[0]
    seen, stack, tried, again = {start}, [(start, False)], {start: 0}, 0
    for step in thinking.split(" "):
        u, op, v = step[:M], step[M], step[M + 1 :]
        (top, entered_again), mine = stack[-1], children.get(u, [])
        assert u == top and not (entered_again and op != "-"), (step, text)  # a seen node is left at once
        todo = [c for c in mine[tried[u] :] if indexed or c not in seen]
        if op != "-":
            assert todo and v == todo[0], (step, text)  # the next child (not yet seen), in listed order
            tried[u] = mine.index(v) + 1
            assert op == (str(tried[u]) if indexed else ">"), (step, text)
            again += v in seen
            stack.append((v, v in seen))
            if v not in seen:
                seen.add(v)
                tried[v] = 0
        else:
            assert entered_again or not todo, (step, text)  # back up only from a dead end
            assert v == stack[-2][0], (step, text)
            stack.pop()
    assert stack[-1][0] == goal, text  # the search stops where it reaches the goal
    return [node for node, _ in stack], children, again


@pytest.mark.parametrize(
    ("task", "levels", "longest"), [(TASK, range(1, 9), 150), (INDEXED, range(1, 9), 150), (LONG, (1, 2, 8), 2000)]
)
def test_traces_are_correct_searches_whose_paths_verify(task, levels, longest):
    ex = generate(task, np.repeat(levels, 8 if task is LONG else 40), np.random.default_rng(0))
    lengths, revisits = [], 0
    for i in range(len(ex)):
        text = decode(ex.tokens[i])
        path, children, again = replay(text, task.name_len, task.indexed)
        revisits += again
        assert text.split("<eot>")[1] == "".join(path) + "<eos>"
        V = task.nodes(int(ex.difficulty[i]))
        assert len(children) == V if not task.indexed else sum(map(len, children.values())) <= task.max_edges(V)
        lengths.append(first_eot(ex.tokens[i : i + 1])[0] - ex.prompt_len[i])
    lengths = np.array(lengths)
    assert lengths.max() > longest  # hundreds of tokens on 26 nodes, thousands on 200
    assert task is LONG or lengths.min() == 7  # two steps
    assert (revisits > 0) == task.indexed  # seen nodes entered again and left, or skipped
    gen = np.stack([np.pad(ex.tokens[i, ex.prompt_len[i] :], (0, ex.prompt_len[i])) for i in range(len(ex))])
    assert both(gen, ex.key, task) == [1.0] * len(ex)
    # some nodes have two parents, so several paths can reach a goal: the trace reports one of them
    edges = ((ex.key != PAD).sum(1) - 2) // 2
    assert (edges > np.array([task.nodes(int(d)) for d in ex.difficulty]) - 1).mean() > 0.5


def test_budget_forcing_on_long_traces():
    """Every budget from one pass, up to hundreds of thinking tokens on the largest graphs, equals a
    separate forced decode, with <eot> exactly at the budget."""
    ex = generate(TASK, np.full(4, TASK.max_difficulty), np.random.default_rng(1), split="eval")
    prompts, valid = left_pad(ex.tokens, ex.prompt_len)
    budgets = (0, 16, 64, 190)
    A = int(ex.answer_len.max()) + 1
    width = budgets_width(budgets, A)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=prompts.shape[1] + width + len(budgets) * A)
    params = init_params(cfg, jax.random.key(0))
    # A model that never ends its thinking on its own: <eot> gets logit 0, every other token +-10s.
    kernel, scale = params["head"]["kernel"], params["final_norm"]["scale"]
    kernel[...], scale[...] = kernel[...].at[:, EOT].set(0.0), scale[...] * 30.0
    gen_UxNxG = np.asarray(decode_budgets(cfg, params, prompts, valid, budgets=budgets, answer_len=A))
    for u, b in enumerate(budgets):
        assert first_eot(gen_UxNxG[u]).tolist() == [b] * len(ex)
        assert set(TASK.check(gen_UxNxG[u], ex.key).tolist()) <= {0.0, 1.0}
        if b == 190:
            alone = np.asarray(sample(cfg, params, prompts, valid, jax.random.key(0), budget=b, max_new=b + A + 1))
            np.testing.assert_array_equal(gen_UxNxG[u][:, : b + A + 1], alone)


def test_no_above_range_or_held_out_problem_is_trained_on():
    train = generate(TASK, np.repeat([1, 2, 3], 300), np.random.default_rng(2), split="train", cut_frac=0.3)
    above = generate(TASK, np.repeat([4, 5], 100), np.random.default_rng(3), split="eval")
    held = generate(TASK, np.repeat([1, 2, 3], 100), np.random.default_rng(4), split="eval")
    graph_nodes = [len(decode(t).split("?")[0].split(":")) - 1 for t in train.tokens]
    assert max(graph_nodes) == TASK.nodes(3)  # training never sees a graph above its range
    assert min(len(decode(t).split("?")[0].split(":")) - 1 for t in above.tokens) == TASK.nodes(4)

    def prompts(ex):
        return {ex.tokens[i, : ex.prompt_len[i]].tobytes() for i in range(len(ex))}

    assert not prompts(train) & (prompts(above) | prompts(held))
    h = [prompt_hash(held.tokens[i : i + 1, 1 : held.prompt_len[i]])[0] for i in range(len(held))]
    assert all(int(x) % HELD_OUT_MODULUS == 0 for x in h)


@pytest.mark.parametrize("d", [1, 8])
def test_prompt_names_every_node_with_its_children(d):
    ex = generate(TASK, np.full(20, d), np.random.default_rng(d))
    for t in ex.tokens:
        prompt = decode(t).removeprefix("<bos>").split("?")[0]
        items = prompt[6:].split(" ")
        names = [s[0] for s in items if ":" in s]
        assert len(names) == len(set(names)) == TASK.nodes(d)
        assert prompt[2] in names and prompt[4] in names and prompt[2] != prompt[4]


def test_rl_prompt_batches_carry_each_graph_for_the_in_graph_checker():
    from scaling.rl_train import chunk_prompts
    from scaling.settings import RLConfig

    levels = np.arange(1, 4)
    batch, d_CxP = chunk_prompts(
        TASK, RLConfig(prompts_per_step=4, chunk_steps=2), levels, np.full(3, 0.5), np.random.default_rng(0)
    )
    assert batch.key_PxY.shape == (2, 4, TASK.key_width(3))  # one shape for every chunk: the widest key
    for prompt, key, d in zip(batch.prompts_PxL.reshape(8, -1), batch.key_PxY.reshape(8, -1), d_CxP.ravel()):
        text = decode(prompt, keep_specials=False).removesuffix("?")
        assert decode(key[:2]) == text[2] + text[4]  # start and goal
        edges = int((key[2:] != PAD).sum()) // 2
        assert edges == sum(len(item[2:].strip()) for item in text[6:].split(" ") if ":" in item)
        assert len([item for item in text.split(" ") if ":" in item]) == TASK.nodes(int(d))
