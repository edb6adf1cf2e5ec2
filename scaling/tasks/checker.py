"""Reading a generation, written once over an array namespace ``xp`` (numpy on the host, jax.numpy inside
the jitted RL step): where thinking ends, where the answer ends, and whether the answer is right.

A generation is what the model wrote after the prompt: ``thinking <eot> answer <eos> ...``. Rows without
an <eot> have no answer; ids outside the vocabulary are just wrong tokens, never an error.
"""

from __future__ import annotations

import numpy as np

from scaling.tokenizer import EOS, EOT, PAD


def first_eot(gen_NxG, xp=np):
    """(N,) position of the first <eot>, G where there is none (= thinking tokens written)."""
    is_eot = gen_NxG == EOT
    return xp.where(is_eot.any(axis=1), xp.argmax(is_eot, axis=1), gen_NxG.shape[1])


def answer_span(gen_NxG, xp=np):
    """(N,) first <eot> e and the first <eos> after it s (G where absent): the answer is gen[e+1:s]."""
    G = gen_NxG.shape[1]
    e_N = first_eot(gen_NxG, xp)
    after_NxG = (gen_NxG == EOS) & (xp.arange(G)[None, :] > e_N[:, None])
    s_N = xp.where(after_NxG.any(axis=1), xp.argmax(after_NxG, axis=1), G)
    return e_N, s_N


def written_tokens(gen_NxG, xp=np):
    """(N,) thinking tokens (before the first <eot>) and (N,) answer tokens (after it, through the
    first <eos>; to the end without an <eos>; 0 without an <eot>)."""
    G = gen_NxG.shape[1]
    e_N, s_N = answer_span(gen_NxG, xp)
    answer_N = xp.where(s_N < G, s_N - e_N, xp.where(e_N < G, G - e_N - 1, 0))
    return e_N, answer_N


def exact_answer(gen_NxG, answer_NxA, xp=np):
    """1.0 where the tokens after the first <eot> are exactly the answer (its tokens before the PAD
    padding) then <eos>, else 0.0 (float32)."""
    N, G = gen_NxG.shape
    answer_len_N = (answer_NxA != PAD).sum(axis=1)
    A = answer_NxA.shape[1]
    e_N = first_eot(gen_NxG, xp)
    slot_A1 = xp.arange(A + 1)[None, :]
    idx_NxA1 = e_N[:, None] + 1 + slot_A1
    got_NxA1 = xp.take_along_axis(gen_NxG, xp.minimum(idx_NxA1, G - 1), axis=1)
    got_NxA1 = xp.where(idx_NxA1 < G, got_NxA1, -1)  # running off the end never matches
    want_NxA1 = xp.concatenate([answer_NxA, xp.full((N, 1), PAD, dtype=answer_NxA.dtype)], axis=1)
    want_NxA1 = xp.where(slot_A1 == answer_len_N[:, None], EOS, want_NxA1)
    used_NxA1 = slot_A1 <= answer_len_N[:, None]
    ok_N = xp.all((got_NxA1 == want_NxA1) | ~used_NxA1, axis=1) & (e_N < G)
    return ok_N.astype(xp.float32)
