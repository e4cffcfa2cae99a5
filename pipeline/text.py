"""The one text core: normalization and tokenization used by every stage and by scoring.

Training, evaluation and scoring all import these functions, so a question becomes the same
tokens everywhere. Both run as pyarrow compute kernels over whole columns (no Python loop
per question): the ~800k questions of the full Quora release tokenize in about two seconds.

Tokenization rule: after optional lowercasing, every character that is not a letter, mark,
digit or whitespace becomes a token of its own, and the rest is split on whitespace.
"Don't use C++?" -> ["don", "'", "t", "use", "c", "+", "+", "?"]; CJK runs stay whole. With
`end_marks: drop` the marks that close a question go first: "Why?", "Why??", "Why." and "Why"
are one question (a question asks the same with any of them). With `end_marks: complete` a
question that ends without "?", "!" or "." gets a "?": "why" reads as "why?", while "?", "!"
and "." keep whatever they tell apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.params import Bool, Choice, Section

TEXT = Section(
    "text",
    {
        "lowercase": Bool(),
        "unicode_form": Choice("NFKC", "NFC", "NFKD", "NFD"),
        "end_marks": Choice("keep", "drop", "complete"),
    },
)

WHITESPACE = r"[\s\p{Z}]+"
# anything but single ASCII spaces: runs of spaces, other whitespace, ASCII control characters
ODD_SPACE = r"\s\s|[\x00-\x1f\x7f]"
INVISIBLE = r"[\p{Cc}\p{Cf}]"  # control and format characters (NUL, zero-width space, BOM)
SYMBOL = r"([^\p{L}\p{M}\p{N}\s\p{Z}])"
END_MARKS = r"[\s?!.]+$"  # what closes a question: "?", "??", "!", ".", "?!"
CLOSED = r"[?!.]\s*$"  # a question that ends with one of them
# SYMBOL on ASCII text (RE2's \s is [\t\n\f\r ]): the same matches, compiled ~50x faster,
# which is most of tokenizing a few questions (a query of the service, say)
ASCII_SYMBOL = r"([^A-Za-z0-9\t\n\f\r ])"


@dataclass(frozen=True)
class TextConfig:
    """Tokenizer settings, saved in every model bundle so scoring tokenizes as training did."""

    lowercase: bool = True
    unicode_form: str = "NFKC"
    end_marks: str = "keep"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TextConfig:
        return cls(
            lowercase=bool(values["lowercase"]),
            unicode_form=values["unicode_form"],
            # bundles made before the setting kept every end mark
            end_marks=values.get("end_marks", "keep"),
        )


def to_arrow(texts: Iterable) -> pa.Array:
    """A pyarrow string array; None/NaN become nulls."""
    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts
    if isinstance(texts, pd.Series):
        return to_arrow(pa.Array.from_pandas(texts.astype("string"), type=pa.string()))
    return pa.array(list(texts) if not isinstance(texts, np.ndarray) else texts, type=pa.string())


def normalize_arrow(texts: Iterable, form: str = "NFKC") -> pa.Array:
    arr = to_arrow(texts)
    # Regex kernels are slow, and most questions are plain ASCII with single spaces: find the
    # few that need work with fast substring tests and rewrite only those.
    non_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(arr), True))
    if form and pc.any(non_ascii).as_py():  # ASCII is already in every normal form
        arr = pc.replace_with_mask(arr, non_ascii, pc.utf8_normalize(arr.filter(non_ascii), form))
    # non-ASCII whitespace only occurs in non-ASCII text
    odd_space = pc.or_(non_ascii, pc.fill_null(pc.match_substring_regex(arr, ODD_SPACE), False))
    if pc.any(odd_space).as_py():
        spaced = pc.replace_substring_regex(arr.filter(odd_space), WHITESPACE, " ")
        visible = pc.replace_substring_regex(spaced, INVISIBLE, "")
        collapsed = pc.replace_substring_regex(visible, WHITESPACE, " ")
        arr = pc.replace_with_mask(arr, odd_space, collapsed)
    return pc.utf8_trim_whitespace(arr)


def normalize(texts: Iterable, form: str = "NFKC") -> pd.Series:
    """Unicode-normalize (NFKC by default), drop invisible characters (controls, zero-width
    and other format characters) and collapse all whitespace into single spaces: a question
    of nothing but invisible characters becomes empty.

    Prepare and scoring both call this, so scored text is cleaned exactly like training text.
    Missing values stay missing.
    """
    return pd.Series(normalize_arrow(texts, form), dtype="string")


def tokenize(texts: Iterable, config: TextConfig = TextConfig()) -> pa.ListArray:
    """Tokens of each (already normalized) text as an arrow list array; null text -> no tokens."""
    arr = pc.fill_null(to_arrow(texts), "")
    if config.lowercase:
        arr = pc.utf8_lower(arr)
    if config.end_marks == "drop":
        bare = pc.replace_substring_regex(arr, END_MARKS, "")
        # a question of nothing but marks keeps them: it still has tokens
        arr = pc.if_else(pc.equal(bare, ""), arr, bare)
    elif config.end_marks == "complete":
        # empty text stays empty: it has no tokens, and "?" alone would be one
        open_ended = pc.invert(pc.or_(pc.match_substring_regex(arr, CLOSED), pc.equal(arr, "")))
        arr = pc.if_else(open_ended, pc.binary_join_element_wise(arr, "?", ""), arr)
    symbol = ASCII_SYMBOL if pc.all(pc.string_is_ascii(arr)).as_py() else SYMBOL
    # trimmed: Arrow 26's utf8_split_whitespace now and then keeps the text's trailing
    # whitespace in its last token ("? " for "?"; it reads past the string)
    spaced = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, symbol, r" \1 "))
    tokens = pc.utf8_split_whitespace(spaced)
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    return _drop_empty_tokens(tokens)


def canonical(texts: Iterable, config: TextConfig = TextConfig()) -> pa.Array:
    """Each text's tokens joined by single spaces: texts that differ only in what the text
    core erases (case when lowercasing, spacing around symbols, closing marks when dropping
    them, a missing "?" when completing it) get the same key, as every model sees them as the
    same question."""
    return pc.binary_join(tokenize(texts, config), " ")


def _drop_empty_tokens(tokens: pa.ListArray) -> pa.ListArray:
    """Splitting leaves "" for empty text and after a trailing symbol; remove them."""
    flat = tokens.flatten()
    keep = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    if keep.all():
        return tokens
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(tokens)), lengths)
    kept_lengths = np.bincount(rows[keep], minlength=len(tokens))
    offsets = np.concatenate([[0], np.cumsum(kept_lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep)))


def token_lists(texts: Iterable, config: TextConfig = TextConfig()) -> list[list[str]]:
    """Tokens as Python lists, for libraries that want them (gensim)."""
    return tokenize(texts, config).to_pylist()
