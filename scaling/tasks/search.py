"""Path search by depth-first search with backtracking: a task whose trace is the search itself.

A random directed acyclic graph on V named nodes (random letters; every node reachable from
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
string: it reads the answer's node names and looks each consecutive pair up in the problem's edge list
(the key), over numpy or jax.numpy.

``path_indexed`` numbers each node's children, in the prompt and in the trace alike:

    prompt  'g k>f k1a k2b a1f ?'                 the edges 'u1v', 'u2w' of each node in turn
    trace   'k1a a1f'                             a step down repeats its edge; 'a-k' backs up

so that each step down is one lookup of what follows a pair of tokens (the node and the child's number),
which a one-layer model with trigram inputs (``ModelConfig.inputs``) can make, and a child seen already is
entered and left at once ('k2b b-k') instead of skipped, so that no step asks which nodes the search has
seen. At most half the nodes get a second parent there, which bounds the trace at 8E - 5 tokens for E edges.

``path_long`` is the same search on graphs of 25 to 200 nodes named by two letters ('kq>fa kq:abcdef'),
whose traces run to (4 + 2)(2V - 3) - 1 tokens: thousands of thinking tokens, for accelerators.
"""

from __future__ import annotations

import numpy as np

from scaling.tasks.base import Blocks, Task
from scaling.tasks.checker import answer_span
from scaling.tokenizer import LETTERS, PAD, VOCAB_SIZE, encode

MAX_CHILDREN = 3
NAMES = "abcdefghijklmnopqrstuvwxyz"  # the letters of node names (26 one-letter names)


def random_dag(V: int, rng: np.random.Generator, extra_parent: float, max_extra: int) -> list[list[int]]:
    """Children lists of a DAG on nodes 0..V-1 (topological order, 0 the start) in which every node is
    reachable from 0: node i > 0 gets a parent among the earlier nodes with room for a child, and with
    probability ``extra_parent`` a second one (at most ``max_extra`` nodes get one). Each list is shuffled
    (the order the search tries)."""
    children: list[list[int]] = [[] for _ in range(V)]
    extra = 0
    room = [0]  # the earlier nodes with room for a child, ascending (updated, not rebuilt: V in the hundreds)
    for i in range(1, V):
        k = int(rng.integers(len(room)))
        parents = [room[k]]
        others = room[:k] + room[k + 1 :]
        if others and rng.random() < extra_parent and extra < max_extra:
            parents.append(others[rng.integers(len(others))])
            extra += 1
        for j in parents:
            children[j].append(i)
            if len(children[j]) == MAX_CHILDREN:
                room.remove(j)
        room.append(i)
    for c in children:
        rng.shuffle(c)
    return children


def depth_first(
    children: list[list[int]], start: int, goal: int, revisit: bool = False
) -> tuple[list[tuple[int, str, int]], list[int]]:
    """The steps of a depth-first search from ``start`` until it reaches ``goal`` ((u, '>', v): down to
    the child v; (v, '-', u): back from the dead end v to u), and the path it found (start first). A child
    seen already (another branch searched it) is skipped, or with ``revisit`` entered and left at once."""
    parent = {start: start}
    stack, tried, steps = [start], {start: 0}, []
    while stack:
        u = stack[-1]
        while tried[u] < len(children[u]) and children[u][tried[u]] in parent:
            if revisit:
                steps += [(u, ">", children[u][tried[u]]), (children[u][tried[u]], "-", u)]
            tried[u] += 1
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


def node_codes(tokens_NxAxZ, xp=np):
    """(N, A) one integer per node name of Z tokens (base VOCAB_SIZE; the token itself when Z = 1), and
    (N, A) whether each name's tokens are in the vocabulary (a name with an id outside it names no node)."""
    Z = tokens_NxAxZ.shape[-1]
    in_vocab_NxA = xp.all((tokens_NxAxZ >= 0) & (tokens_NxAxZ < VOCAB_SIZE), axis=-1)
    code_NxA = tokens_NxAxZ[..., 0]
    for z in range(1, Z):
        code_NxA = code_NxA * VOCAB_SIZE + tokens_NxAxZ[..., z]
    return code_NxA, in_vocab_NxA


def path_answer(gen_NxG, key_NxY, xp=np, name_len: int = 1, max_nodes: int = len(NAMES)):
    """1.0 where the answer (after the first <eot>, through <eos>) is a path along the key's edges from
    its start to its goal, else 0.0. The answer is node names of ``name_len`` tokens each; ``key`` =
    [start, goal, u1, v1, u2, v2, ...] node codes (``node_codes``; for one-token names the token ids), PAD
    after the last edge u -> v. Any token ids are fine (never an index: only comparisons)."""
    G, Z = gen_NxG.shape[1], name_len
    A = max_nodes  # a path in a DAG visits each node at most once
    e_N, s_N = answer_span(gen_NxG, xp)
    len_N = s_N - e_N - 1  # answer tokens
    nodes_N = len_N // Z
    slot_AZ = xp.arange(A * Z)[None, :]
    idx_NxAZ = e_N[:, None] + 1 + slot_AZ
    tok_NxAZ = xp.take_along_axis(gen_NxG, xp.minimum(idx_NxAZ, G - 1), axis=1)
    got_NxA, named_NxA = node_codes(tok_NxAZ.reshape(-1, A, Z), xp)
    used_NxA = xp.arange(A)[None, :] < nodes_N[:, None]
    start_N, goal_N = key_NxY[:, 0], key_NxY[:, 1]
    u_NxE, v_NxE = key_NxY[:, 2::2], key_NxY[:, 3::2]
    # got[j] -> got[j+1] must be an edge for every j + 1 < len: a (N, A-1, E) comparison with the edge list
    parent_NxA1, child_NxA1 = got_NxA[:, :-1], got_NxA[:, 1:]
    edge_NxA1xE = (
        (parent_NxA1[:, :, None] == u_NxE[:, None, :])
        & (child_NxA1[:, :, None] == v_NxE[:, None, :])
        & (u_NxE != PAD)[:, None, :]
    )
    steps_ok_N = xp.all(edge_NxA1xE.any(axis=2) | ~used_NxA[:, 1:], axis=1)
    named_N = xp.all(named_NxA | ~used_NxA, axis=1)
    last_N = xp.take_along_axis(got_NxA, xp.clip(nodes_N - 1, 0, A - 1)[:, None], axis=1)[:, 0]
    whole_N = (s_N < G) & (len_N % Z == 0) & (nodes_N >= 2) & (nodes_N <= A)
    ok_N = whole_N & named_N & (got_NxA[:, 0] == start_N) & (last_N == goal_N) & steps_ok_N
    return ok_N.astype(xp.float32)


class PathSearch(Task):
    """Find a path from the start to the goal of a random DAG by depth-first search (module docstring).
    The goal is drawn among the nodes that are not the start's children. Difficulty d = graph size,
    V = ``first`` + ``step`` d nodes: ``path`` has one-letter names and V = 2 + 3d (d <= 8, the 26
    letters), and ``path_indexed`` (``indexed``) the same graphs with numbered edges; ``path_long`` has
    two-letter names and V = 25d (d <= 8, up to 200 nodes), whose searches run to thousands of tokens (for
    accelerators)."""

    def __init__(
        self, extra_parent: float = 0.3, name_len: int = 1, first: int = 2, step: int = 3, max_nodes=26, indexed=False
    ):
        if max_nodes > len(NAMES) ** name_len:
            raise ValueError(f"{max_nodes} nodes need names of more than {name_len} letters")
        self.extra_parent, self.name_len, self.first, self.step = extra_parent, name_len, first, step
        self.indexed = indexed
        self.name = ("path" if name_len == 1 else "path_long") + ("_indexed" if indexed else "")
        self.max_difficulty = (max_nodes - first) // step

    def nodes(self, d: int) -> int:
        """V: the number of nodes of a graph at difficulty d."""
        return self.first + self.step * d

    def names(self, V: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        """V distinct random node names (strings) and their codes (``node_codes`` of their tokens)."""
        if self.name_len == 1:
            idx = rng.permutation(len(NAMES))[:V]
            return [NAMES[i] for i in idx], LETTERS[idx]
        idx = rng.choice(len(NAMES) ** self.name_len, V, replace=False)
        letters_VxZ = np.stack([idx // len(NAMES) ** m % len(NAMES) for m in reversed(range(self.name_len))], 1)
        return ["".join(NAMES[i] for i in row) for row in letters_VxZ.tolist()], node_codes(LETTERS[letters_VxZ])[0]

    def widths(self, d):
        V, Z = self.nodes(d), self.name_len
        steps = 2 * V - 3  # every node but the start and the goal entered and left, then the goal entered
        if self.indexed:  # every edge gone down and back up, but the last
            steps = 2 * self.max_edges(V) - 1
        # prompt 'g s>t ' then V lists 'u:abc' (or the edges 'u1v ') and '?'; trace steps 'u>v' apart; the
        # path; start, goal, edges
        listing = self.max_edges(V) * (2 * Z + 2) + 1 if self.indexed else V * (4 * Z + 2)
        return listing + 2 * Z + 4, (2 * Z + 2) * steps - 1, Z * V

    def text(self, name, children, steps, rng) -> tuple[str, str]:
        """The prompt's listing of the graph (nodes in random order) and the trace of ``steps``: lists
        'u:ab ' and steps 'u>a', 'a-u'; or (``indexed``) numbered edges 'u1a u2b' and steps that repeat
        them, 'u1a', 'a-u', 'u2b'."""
        order, Z = rng.permutation(len(name)), self.name_len
        if not self.indexed:
            lists = " ".join(
                name[u] + ":" + "".join(name[c] for c in children[u]).ljust(MAX_CHILDREN * Z) for u in order
            )
            return lists, " ".join(name[u] + op + name[v] for u, op, v in steps)
        numbered = [[f"{name[u]}{i + 1}{name[c]}" for i, c in enumerate(cs)] for u, cs in enumerate(children)]

        def step(u, op, v):
            return f"{name[u]}-{name[v]}" if op == "-" else numbered[u][children[u].index(v)]

        return " ".join(x for u in order for x in numbered[u]) + " ", " ".join(step(*s) for s in steps)

    def max_extra(self, V: int) -> int:
        """How many nodes of a graph on V nodes may get a second parent: half of the V - 1 besides the start
        where the trace walks every edge (``indexed``), else each."""
        return (V - 1) // 2 if self.indexed else V - 1

    def max_edges(self, V: int) -> int:
        """The most edges of a graph on V nodes: a parent for each node but the start, and the extra ones."""
        return V - 1 + self.max_extra(V)

    def key_width(self, d):
        return 2 + 4 * (self.nodes(d) - 1)  # at most two parents per node

    def blocks(self, d, n, rng):
        V, Z = self.nodes(d), self.name_len
        (L, W, A), Y = self.widths(d), self.key_width(d)
        prompt = np.zeros((n, L), np.int32)
        trace, answer, key = (np.full((n, w), PAD, np.int32) for w in (W, A, Y))
        for i in range(n):
            children = random_dag(V, rng, self.extra_parent, self.max_extra(V))
            name, code = self.names(V, rng)
            far = [v for v in range(1, V) if v not in children[0]]  # a goal next to the start needs no search
            goal = far[rng.integers(len(far))]
            steps, path = depth_first(children, 0, goal, revisit=self.indexed)
            lists, thinking = self.text(name, children, steps, rng)
            p = encode(f"g {name[0]}>{name[goal]} {lists}?")
            prompt[i, : len(p)] = p
            t = encode(thinking)
            trace[i, : len(t)] = t
            answer[i, : Z * len(path)] = encode("".join(name[u] for u in path))
            edges = [(u, c) for u in range(V) for c in children[u]]
            key[i, : 2 + 2 * len(edges)] = code[[0, goal, *(x for e in edges for x in e)]]
        return Blocks(prompt, trace, answer, key)

    def check(self, gen_NxG, key_NxY, xp=np):
        return path_answer(gen_NxG, key_NxY, xp, self.name_len, self.nodes(self.max_difficulty))
