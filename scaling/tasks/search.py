"""Path search by depth-first search with backtracking: a task whose trace is the search itself.

A random directed acyclic graph on V = 2 + 3d named nodes (random letters; every node reachable from
the start, at most three children each, some nodes with two parents so that several paths can reach the
goal) is given as adjacency lists in random order; the model must find a path from the start to the goal:

    prompt  'g k>f k:ab  a:f   b:    f:   ?'      start k, goal f, then 'node:children' per node
    trace   'k>a a>f'                             the search, one step per 4 tokens
    answer  'kaf'                                 the path from the start to the goal

The trace is the depth-first search that tries each node's children in listed order and skips nodes it
has already seen: 'u>v' steps from u down to the child v, 'v-u' backs up from the dead end v to u, and the
search stops at the step that reaches the goal. Each step names where it is and where it goes, so the next
step is read off the prompt and the trace by content (no positions), whatever the graph's size. Its length
ranges from 7 tokens (two steps) to 8V - 13 (every other node searched first), so a model stopped after
B thinking tokens has searched less: the share of reference searches no longer than B (the ``oracle`` of
``scaling.evaluate.budget_rows``) bounds a model that imitates them, and rises over the whole range.

Little is answerable without search: the goal is never a child of the start (drawn anywhere, about 40% of
goals at V = 8 were, and a model answered them at budget 0 with one lookup), and the answer runs from the
start (written from the goal, it could be chained back through the parents in the prompt). From a
finished search, the node after u on the path is the last one the search went down to from u: one
lookup per answer token.

The checker accepts any path along the graph's edges from the start to the goal, not one reference
string: it reads the answer's letters and looks each consecutive pair up in the problem's edge list
(the key), over numpy or jax.numpy.
"""

from __future__ import annotations

import numpy as np

from scaling.tasks.base import Blocks, Task
from scaling.tasks.checker import answer_span
from scaling.tokenizer import LETTERS, PAD, encode

MAX_CHILDREN = 3
NAMES = "abcdefghijklmnopqrstuvwxyz"  # node names are single letters
MAX_NODES = len(NAMES)


def nodes(d: int) -> int:
    """V: the number of nodes of a graph at difficulty d."""
    return 2 + 3 * d


def random_dag(V: int, rng: np.random.Generator, extra_parent: float) -> list[list[int]]:
    """Children lists of a DAG on nodes 0..V-1 (topological order, 0 the start) in which every node is
    reachable from 0: node i > 0 gets a parent among the earlier nodes with room for a child, and with
    probability ``extra_parent`` a second one. Each list is shuffled (the order the search tries)."""
    children: list[list[int]] = [[] for _ in range(V)]
    for i in range(1, V):
        room = [j for j in range(i) if len(children[j]) < MAX_CHILDREN]
        first = room[rng.integers(len(room))]
        children[first].append(i)
        others = [j for j in room if j != first and len(children[j]) < MAX_CHILDREN]
        if others and rng.random() < extra_parent:
            children[others[rng.integers(len(others))]].append(i)
    for c in children:
        rng.shuffle(c)
    return children


def depth_first(children: list[list[int]], start: int, goal: int) -> tuple[list[tuple[int, str, int]], list[int]]:
    """The steps of a depth-first search from ``start`` until it reaches ``goal`` ((u, '>', v): down to
    the child v; (v, '-', u): back from the dead end v to u), and the path it found (start first)."""
    parent = {start: start}
    stack, tried, steps = [start], {start: 0}, []
    while stack:
        u = stack[-1]
        while tried[u] < len(children[u]) and children[u][tried[u]] in parent:
            tried[u] += 1  # seen already: another branch searched it
        if tried[u] < len(children[u]):
            v = children[u][tried[u]]
            tried[u] += 1
            parent[v], tried[v] = u, 0
            steps.append((u, ">", v))
            if v == goal:
                path = [goal]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return steps, path[::-1]
            stack.append(v)
        else:
            stack.pop()
            if stack:
                steps.append((u, "-", stack[-1]))
    raise ValueError(f"goal {goal} is not reachable from {start}")  # random_dag makes every node reachable


def path_answer(gen_NxG, key_NxK, xp=np):
    """1.0 where the answer (after the first <eot>, through <eos>) is a path along the key's edges from
    its start to its goal, else 0.0. ``key`` = [start, goal, u1, v1, u2, v2, ...] token ids, PAD after
    the last edge u -> v. Any token ids are fine (never an index: only comparisons)."""
    G = gen_NxG.shape[1]
    A = MAX_NODES  # a path in a DAG visits each node at most once
    e_N, s_N = answer_span(gen_NxG, xp)
    len_N = s_N - e_N - 1
    slot_A = xp.arange(A)[None, :]
    idx_NxA = e_N[:, None] + 1 + slot_A
    got_NxA = xp.take_along_axis(gen_NxG, xp.minimum(idx_NxA, G - 1), axis=1)
    used_NxA = slot_A < len_N[:, None]
    start_N, goal_N = key_NxK[:, 0], key_NxK[:, 1]
    u_NxE, v_NxE = key_NxK[:, 2::2], key_NxK[:, 3::2]
    # got[j] -> got[j+1] must be an edge for every j + 1 < len: a (N, A-1, E) comparison with the edge list
    parent_NxA1, child_NxA1 = got_NxA[:, :-1], got_NxA[:, 1:]
    edge_NxA1xE = (
        (parent_NxA1[:, :, None] == u_NxE[:, None, :])
        & (child_NxA1[:, :, None] == v_NxE[:, None, :])
        & (u_NxE != PAD)[:, None, :]
    )
    steps_ok_N = xp.all(edge_NxA1xE.any(axis=2) | ~used_NxA[:, 1:], axis=1)
    last_N = xp.take_along_axis(got_NxA, xp.clip(len_N - 1, 0, A - 1)[:, None], axis=1)[:, 0]
    ok_N = (s_N < G) & (len_N >= 2) & (len_N <= A) & (got_NxA[:, 0] == start_N) & (last_N == goal_N) & steps_ok_N
    return ok_N.astype(xp.float32)


class PathSearch(Task):
    """Find a path from the start to the goal of a random DAG by depth-first search (module docstring).
    The goal is drawn among the nodes that are not the start's children.
    Difficulty d = graph size: V = 2 + 3d nodes (d <= 8, the 26 letters)."""

    name = "path"
    max_difficulty = (MAX_NODES - 2) // 3

    def __init__(self, extra_parent: float = 0.3):
        self.extra_parent = extra_parent

    def blocks(self, d, n, rng):
        V = nodes(d)
        W, A, K = 8 * V - 13, V, 2 + 4 * (V - 1)  # longest trace, longest path, start + goal + edges
        prompt = np.zeros((n, 6 * V + 6), np.int32)
        trace, answer, key = (np.full((n, w), PAD, np.int32) for w in (W, A, K))
        for i in range(n):
            children = random_dag(V, rng, self.extra_parent)
            name = rng.permutation(MAX_NODES)[:V]
            far = [v for v in range(1, V) if v not in children[0]]  # a goal next to the start needs no search
            goal = far[rng.integers(len(far))]
            steps, path = depth_first(children, 0, goal)
            lists = " ".join(
                NAMES[name[u]] + ":" + "".join(NAMES[name[c]] for c in children[u]).ljust(MAX_CHILDREN)
                for u in rng.permutation(V)
            )
            prompt[i] = encode(f"g {NAMES[name[0]]}>{NAMES[name[goal]]} {lists}?")
            t = encode(" ".join(NAMES[name[u]] + op + NAMES[name[v]] for u, op, v in steps))
            trace[i, : len(t)] = t
            answer[i, : len(path)] = LETTERS[name[path]]
            edges = [(u, c) for u in range(V) for c in children[u]]
            key[i, : 2 + 2 * len(edges)] = LETTERS[name[[0, goal, *(x for e in edges for x in e)]]]
        return Blocks(prompt, trace, answer, key)

    def check(self, gen_NxG, key_NxK, xp=np):
        return path_answer(gen_NxG, key_NxK, xp)
