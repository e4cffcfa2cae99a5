"""Spelling correction against a model's vocabulary (`features.spelling`).

A misspelt word is a rare token without a word vector, so a model reads "Itailan" as an
unknown word where the other question says "Italian", and a changed word is what tells two
questions apart: a typo turns a duplicate into a non-duplicate. The corrector reads a word
that has no vector as the most frequent word with a vector one edit away (a letter dropped,
added or changed, or two neighbours swapped: the optimal string alignment distance), when
that word is far more frequent in the train questions (`MIN_RATIO`), starts with the same
letter, and the word is long enough (`MIN_LENGTH`) but not a run of characters
(`MAX_LENGTH`). These limits come from the changes it
made on the full release's val questions: without them, most were names and acronyms that
the vectors lack, not typos (mistry -> misery, dravid -> david, isro -> iso, endian ->
indian); typos rarely change a word's first letter.

Candidates come from SymSpell's delete index (Garbe 2012): two words within one edit share
a "delete", one of the words with at most one letter removed. Every step is a whole-batch
operation (Arrow slices, a pandas hash index built once, rapidfuzz's `cpdist`), run over
the distinct unknown words of a batch, never per question.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import process
from rapidfuzz.distance import OSA

MIN_LENGTH = 5  # shorter words are one edit from too many others, and often acronyms
MAX_LENGTH = 30  # longer "words" are not typos but runs of characters (URLs, "aaaa...", code),
# and a word's deletes cost its length squared
MIN_RATIO = 50  # the correction is at least this many times as frequent in the train questions
LETTERS = r"^[A-Za-z]+$"  # ASCII letters only: numbers, codes, symbols and other scripts stay


def deletes(words: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each word and each of its one-letter deletes: (index of the word, the key)."""
    lengths = pc.utf8_length(words).to_numpy(zero_copy_only=False)
    owners, keys = [np.arange(len(words))], [words]
    for position in range(int(lengths.max(initial=0))):
        longer = np.flatnonzero(lengths > position)
        cut = pc.utf8_replace_slice(
            words.take(pa.array(longer)), start=position, stop=position + 1, replacement=""
        )
        owners.append(longer)
        keys.append(cut)
    return np.concatenate(owners), pa.concat_arrays(keys)


def first_letters(words: pa.Array) -> np.ndarray:
    return np.asarray(pc.utf8_slice_codeunits(words, 0, 1).to_numpy(zero_copy_only=False))


class SpellingCorrector:
    """Maps words without a vector to the most frequent vector word one edit away.

    `words` are the vocabulary, most frequent first (the order `TextModel.fit` gives it),
    `known` marks the words with a vector (only those are targets), and `idf` is each word's
    smooth idf, whose differences give frequency ratios: idf_a - idf_b = ln((1 + df_b) /
    (1 + df_a)).
    """

    def __init__(self, words: np.ndarray, known: np.ndarray, idf: np.ndarray):
        self.idf = np.asarray(idf, np.float64)
        words = pa.array(np.asarray(words, dtype=object), pa.string())
        letters = pc.match_substring_regex(words, LETTERS).to_numpy(zero_copy_only=False)
        length = pc.utf8_length(words).to_numpy(zero_copy_only=False)
        fits = (length >= MIN_LENGTH - 1) & (length <= MAX_LENGTH + 1)
        self.targets = np.flatnonzero(np.asarray(known, bool) & letters & fits)
        self.words = words
        self._first = first_letters(words)
        owners, keys = deletes(words.take(pa.array(self.targets)))
        table = pd.DataFrame({"key": keys.to_numpy(zero_copy_only=False), "target": owners})
        # by key, then by frequency (a target's place in the vocabulary): each key's
        # candidates are one run, the likeliest first
        table = table.drop_duplicates().sort_values(["key", "target"], kind="stable")
        first = ~table["key"].duplicated().to_numpy()
        self._keys = pd.Index(table["key"].to_numpy()[first])
        self._starts = np.append(np.flatnonzero(first), len(table))
        self._candidates = self.targets[table["target"].to_numpy()]

    def correct(self, unknown: pa.Array, idf: np.ndarray) -> np.ndarray:
        """Vocabulary positions of each word's correction, -1 where none is one edit away
        and `MIN_RATIO` times as frequent (or the word is too short or too long, or not
        letters only).
        `idf` is each word's own idf (for a word outside the vocabulary, as if in one train
        question less than the rarest)."""
        out = np.full(len(unknown), -1, dtype=np.int64)
        length = pc.utf8_length(unknown)
        eligible = pc.and_(
            pc.and_(pc.greater_equal(length, MIN_LENGTH), pc.less_equal(length, MAX_LENGTH)),
            pc.match_substring_regex(unknown, LETTERS),
        ).to_numpy(zero_copy_only=False)
        if not eligible.any() or not len(self._keys):
            return out
        sources = np.flatnonzero(eligible)
        owners, keys = deletes(unknown.take(pa.array(sources)))
        found = self._keys.get_indexer(keys.to_numpy(zero_copy_only=False))
        owners, found = owners[found >= 0], found[found >= 0]
        runs = self._starts[found + 1] - self._starts[found]
        source = np.repeat(owners, runs)
        offsets = np.arange(runs.sum()) - np.repeat(np.cumsum(runs) - runs, runs)
        target = self._candidates[np.repeat(self._starts[found], runs) + offsets]
        if not len(target):
            return out
        pairs = pd.DataFrame({"source": source, "target": target}).drop_duplicates()
        source, target = pairs["source"].to_numpy(), pairs["target"].to_numpy()
        distance = process.cpdist(
            unknown.take(pa.array(sources[source])).to_pylist(),
            self.words.take(pa.array(target)).to_pylist(),
            scorer=OSA.distance,
        )
        frequent = idf[sources[source]] - self.idf[target] >= np.log(MIN_RATIO)
        same_start = self._first[target] == first_letters(unknown)[sources[source]]
        close = (distance <= 1) & frequent & same_start
        source, target = source[close], target[close]
        order = np.lexsort((target, source))  # per source, the most frequent target first
        source, target = source[order], target[order]
        best = np.append(True, source[1:] != source[:-1])[: len(source)]
        out[sources[source[best]]] = target[best]
        return out
