"""Tokenizers: the character-level one of the built-in tasks and a byte-level one for any text.

A sequence reads  <bos> PROMPT THINKING <eot> ANSWER <eos> <pad>...  where <eot> ends the thinking
section. Ids 0-3 are the special tokens of every tokenizer. The character tokenizer maps 48 characters
to the next ids (built-in prompts end in '?'); the byte tokenizer closes a prompt with its own <sep>
(id 4), so that any text, natural language included, can be a prompt, and maps byte b to id 5 + b.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


SEP = 4  # the byte tokenizer's end of prompt
BYTE_OFFSET = 5


def byte_encode(text: str) -> np.ndarray:
    """Byte-tokenizer ids of ``text``: its UTF-8 bytes shifted past the specials."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + BYTE_OFFSET


def byte_text(ids) -> str | None:
    """The text of byte-tokenizer content ids, or None where they are not strict UTF-8 (a special or an
    id outside the vocabulary among them, invalid byte sequences)."""
    ids = np.asarray(ids).ravel()
    if np.any((ids < BYTE_OFFSET) | (ids >= BYTE_OFFSET + 256)):
        return None
    try:
        return (ids - BYTE_OFFSET).astype(np.uint8).tobytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def byte_decode(ids, keep_specials: bool = True) -> str:
    """Readable text of byte-tokenizer ids (invalid UTF-8 shown as U+FFFD)."""
    out, run = [], bytearray()
    for i in [*np.asarray(ids).ravel().tolist(), -1]:
        if BYTE_OFFSET <= i < BYTE_OFFSET + 256:
            run.append(i - BYTE_OFFSET)
            continue
        out.append(run.decode("utf-8", errors="replace"))
        run = bytearray()
        if i == -1:
            break
        if keep_specials and 0 < i < len(SPECIALS):
            out.append(SPECIALS[i])
        elif keep_specials and i == SEP:
            out.append("<sep>")
        elif i >= BYTE_OFFSET + 256 or i < 0:
            out.append("\ufffd")
    return "".join(out)


@dataclass(frozen=True)
class Tokenizer:
    """What a task's tokens mean: its vocabulary size and how to write and read text."""

    name: str
    vocab_size: int
    encode: Callable[[str], np.ndarray]
    decode: Callable[..., str]  # (ids, keep_specials=True) -> text


CHAR_TOKENIZER = Tokenizer("chars", VOCAB_SIZE, encode, decode)
BYTE_TOKENIZER = Tokenizer("bytes", BYTE_OFFSET + 256, byte_encode, byte_decode)
