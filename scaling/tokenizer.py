"""Character-level tokenizer shared by every task.

A sequence reads  <bos> PROMPT ? THINKING <eot> ANSWER <eos> <pad>...  where <eot> ends the
thinking section. Ids 0-3 are the special tokens; the rest are single characters.
"""

from __future__ import annotations

import numpy as np

from scaling.errors import TaskError

PAD, BOS, EOT, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eot>", "<eos>")
CHARS = "0123456789abcdefghijklmnopqrstuvwxyz+-*=;:,.?>| "
VOCAB = (*SPECIALS, *CHARS)
VOCAB_SIZE = len(VOCAB)

_ENCODE = np.full(256, -1, dtype=np.int32)
for _i, _c in enumerate(CHARS):
    _ENCODE[ord(_c)] = _i + len(SPECIALS)


def encode(text: str) -> np.ndarray:
    """Token ids of ``text`` (characters only; specials are added by the tasks)."""
    codes = np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)
    ids = _ENCODE[codes]
    if np.any(ids < 0):
        bad = sorted({text[i] for i in np.flatnonzero(ids < 0)})
        raise TaskError(f"characters {bad} are not in the vocabulary {CHARS!r}")
    return ids


def char_ids(chars: str) -> np.ndarray:
    """Ids of each character of ``chars``, e.g. char_ids('0123456789')[digit] is a digit's id."""
    return encode(chars)


DIGITS = char_ids("0123456789")
LETTERS = char_ids("abcdefghijklmnopqrstuvwxyz")


def decode(ids, keep_specials: bool = True) -> str:
    """Text of a token sequence; specials as <eot> etc. (dropped if ``keep_specials`` is False)."""
    out = []
    for i in np.asarray(ids).ravel().tolist():
        if 0 <= i < len(SPECIALS):
            if keep_specials and i != PAD:
                out.append(SPECIALS[i])
        elif 0 <= i < VOCAB_SIZE:
            out.append(VOCAB[i])
        else:
            out.append("\ufffd")
    return "".join(out)
