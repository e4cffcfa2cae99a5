"""The question index: each known question's vector (from the re-ranking bundle's text model)
in a FAISS index, the bank of questions beside it, built, grown, saved and loaded atomically."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.bundle import Bundle
from pipeline.errors import InputError
from pipeline.find.candidates import LexicalIndex, candidates
from pipeline.io import (
    atomic_directory,
    changed_files,
    file_hashes,
    load_npz,
    read_json,
    recover_directory,
    save_npz,
    write_json,
)
from pipeline.models import kind_names
from pipeline.params import Choice, Fraction, Int, Number, OneOf, Optional, Section, Text
from pipeline.tables import concat_rows, not_text, open_table
from pipeline.text import normalize

log = logging.getLogger("find")
FORMAT_VERSION = 4  # 2: the model's path relative to the index; 3: a learned re-ranker; 4: lexical
INDEX_FILE, BANK_FILE, META_FILE = "index.faiss", "bank.parquet", "index.json"
PROJECTION_FILE = "projection.npz"


@dataclass
class QuestionEncoder:
    """Questions -> unit vectors: projected TF-IDF rows (`projection` given) or the
    TF-IDF-weighted mean of word vectors (`projection` None)."""

    text_model: object  # TextModel
    projection: np.ndarray | None  # (vocabulary, dim) float32

    @classmethod
    def for_settings(cls, text_model, settings: dict) -> QuestionEncoder:
        if settings["vectors"] == "embedding":
            return cls(text_model, None)
        rng = np.random.default_rng(settings["seed"])
        shape = (len(text_model.vocab), settings["tfidf_dim"])
        projection = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
        return cls(text_model, projection)

    @property
    def dim(self) -> int:
        return self.text_model.dim if self.projection is None else self.projection.shape[1]

    def vectors(self, normalized: pd.Series) -> np.ndarray:
        """(n, dim) float32 unit vectors (zero for a question with no known word)."""
        tokens = self.text_model.tokens(normalized)
        if self.projection is None:
            vectors, _ = self.text_model.embed(tokens)
        else:
            vectors = np.asarray(self.text_model.tfidf(tokens) @ self.projection, np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def new_faiss_index(dim: int, settings: dict):
    """An empty inner-product index: HNSW (approximate, fast) or flat (exact)."""
    import faiss

    if settings["kind"] == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, settings["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = settings["ef_construction"]
    index.hnsw.efSearch = settings["ef_search"]
    return index


@dataclass
class QuestionIndex:
    """A FAISS index over a bank of questions; row i of the index is row i of the bank."""

    index: object  # faiss.Index
    bank: pd.DataFrame  # bank_id, question (as given), normalized
    meta: dict
    encoder: QuestionEncoder
    reranker: object = None  # a find.rerank.Reranker, or None: matches ranked by the blend
    lexical: LexicalIndex | None = None  # the second candidate source, None when it is off

    def __post_init__(self):
        settings = self.meta.get("settings", {})
        if self.lexical is None and settings.get("lexical_share", 0) > 0:
            self.lexical = LexicalIndex(self.encoder.text_model, settings["lexical_max_df"])
            self.lexical.add(self.bank["normalized"])

    @classmethod
    def build(
        cls, questions, ids, bundle: Bundle, settings: dict, blend: float = 0.0, reranker=None
    ) -> QuestionIndex:
        """Index `questions` (with their `ids`, or row numbers when None) for `bundle`;
        `blend` is the weight of the index's score when re-ranking by the pair model
        (`ranking_score`), used when there is no learned `reranker`."""
        meta = {
            "blend": blend,
            "reranker": None,
            "format_version": FORMAT_VERSION,
            "dupq_version": __version__,
            "text_model_files": _text_model_files(bundle),
            "model": str(Path(bundle.directory).resolve()),
            "settings": {key: settings[key] for key in SETTINGS},
        }
        empty = pd.DataFrame(
            {
                "bank_id": pd.Series(dtype="string"),
                "question": pd.Series(dtype="string"),
                "normalized": pd.Series(dtype="string"),
            }
        )
        encoder = QuestionEncoder.for_settings(bundle.text_model, settings)
        built = cls(new_faiss_index(encoder.dim, settings), empty, meta, encoder, reranker)
        built.add(questions, ids, bundle)
        return built

    def add(self, questions, ids, bundle: Bundle) -> dict[str, int]:
        """Add questions to the index; rows whose question is not text, or is missing or
        empty after normalization, are skipped. Returns how many were added and skipped."""
        questions = pd.Series(questions).reset_index(drop=True)
        bad = not_text(questions)
        questions = questions.where(~bad).astype("string")
        ids = (
            pd.Series(np.arange(len(self.bank), len(self.bank) + len(questions)), dtype="string")
            if ids is None
            else pd.Series(ids).astype("string").reset_index(drop=True)
        )
        normalized = normalize(questions, bundle.text_model.text.unicode_form)
        keep = (normalized.fillna("") != "").to_numpy() & ~bad
        counts = {
            "added": int(keep.sum()),
            "not text": int(bad.sum()),
            "empty or missing": int((~keep & ~bad).sum()),
        }
        if not keep.all():
            log.warning("skipped %d not text, %d empty or missing", *list(counts.values())[1:])
        added = pd.DataFrame(
            {"bank_id": ids[keep], "question": questions[keep], "normalized": normalized[keep]}
        ).reset_index(drop=True)
        if len(added):
            self.index.add(self.encoder.vectors(added["normalized"]))
            if self.lexical is not None:
                self.lexical.add(added["normalized"])
        self.bank = concat_rows([self.bank, added])
        self.meta["questions"] = len(self.bank)
        return counts

    def column(self, name: str) -> np.ndarray:
        """A bank column as an object array, converted once per bank size (not per query)."""
        cache = self.__dict__.setdefault("_columns", {})
        if name not in cache or len(cache[name]) != len(self.bank):
            cache[name] = self.bank[name].to_numpy(object)
        return cache[name]

    def candidates(self, normalized: pd.Series, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(index cosine, bank rows) of the questions' k candidates; row -1 where fewer exist."""
        vectors = self.encoder.vectors(normalized)
        unit_rows = None if self.lexical is None else self.lexical.unit_rows(normalized)
        share = 0.0 if self.lexical is None else self.meta["settings"]["lexical_share"]
        return candidates(self.index, self.lexical, vectors, unit_rows, k, share)

    def save(self, directory: str | Path) -> None:
        """Write into a temporary directory beside `directory`, then swap it into place."""
        import faiss

        with atomic_directory(directory) as staging:
            faiss.write_index(self.index, str(staging / INDEX_FILE))
            if self.encoder.projection is not None:
                save_npz(staging / PROJECTION_FILE, projection=self.encoder.projection)
            self.bank.to_parquet(staging / BANK_FILE, index=False)
            if self.reranker is not None:
                self.meta["reranker"] = self.reranker.save(staging)
            model = os.path.relpath(self.meta["model"], Path(directory).resolve())
            write_json(
                staging / META_FILE, {**self.meta, "model": model, "files": file_hashes(staging)}
            )

    @staticmethod
    def read_meta(directory: str | Path) -> dict:
        """index.json, checked to be an index this dupq reads."""
        directory = Path(directory)
        recover_directory(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise InputError(f"{directory}: not a question index ({META_FILE} is missing)")
        try:
            meta = read_json(meta_path)
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"{meta_path}: unreadable ({err})") from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{directory}: not an index this dupq reads (rebuild it)")
        problem = _meta_problem(meta)
        if problem:
            raise InputError(f"{meta_path}: {problem} (rebuild the index: dvc repro index)")
        # the model's path is kept relative to the index, so it resolves from anywhere
        meta["model"] = str((directory / meta["model"]).resolve())
        return meta

    @classmethod
    def load(cls, directory: str | Path, bundle: Bundle) -> QuestionIndex:
        """Load an index for `bundle`; a missing, damaged or incompatible one, or one built
        with another text model than the bundle's, is an InputError."""
        import faiss

        directory = Path(directory)
        meta = cls.read_meta(directory)
        expected = meta.get("files") or {}
        projected = meta["settings"]["vectors"] == "tfidf"
        from pipeline.find import rerank

        learned = meta["reranker"] is not None
        needed = {INDEX_FILE, BANK_FILE} | ({PROJECTION_FILE} if projected else set())
        needed |= {rerank.MODEL_FILE, rerank.CHARS_FILE} if learned else set()
        for name in sorted(needed):
            if not (directory / name).is_file():
                raise InputError(f"{directory}: incomplete index, missing {name}")
        changed = changed_files(directory, expected)
        if changed or set(expected) != needed:
            raise InputError(f"{directory}: index corrupted: {', '.join(changed) or META_FILE}")
        if meta["text_model_files"] != _text_model_files(bundle):
            raise InputError(
                f"{directory}: built with another text model than the bundle "
                f"{bundle.directory}; rebuild the index (dvc repro index) or use "
                f"the bundle it was built with ({meta['model']})"
            )
        index = faiss.read_index(str(directory / INDEX_FILE))
        bank = pd.read_parquet(directory / BANK_FILE)
        if index.ntotal != len(bank):
            raise InputError(f"{directory}: index holds {index.ntotal} vectors, bank {len(bank)}")
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = meta["settings"]["ef_search"]
        projection = load_npz(directory / PROJECTION_FILE)["projection"] if projected else None
        reranker = None
        if learned:
            try:
                reranker = rerank.Reranker.load(directory, meta["reranker"], bundle.text_model)
            except (ValueError, KeyError) as err:
                raise InputError(f"{directory}: {err}") from None
        return cls(index, bank, meta, QuestionEncoder(bundle.text_model, projection), reranker)


INDEX = Section(
    "index",
    {
        "questions": Optional(Text()),
        "question_col": Text(),
        "id_col": Optional(Text()),
        "model": OneOf(kind_names),
        "vectors": Choice("tfidf", "embedding"),
        "tfidf_dim": Int(),
        "seed": Int(0),
        "kind": Choice("hnsw", "flat"),
        "hnsw_m": Int(2),
        "ef_construction": Int(),
        "ef_search": Int(),
        "candidates": Int(),
        "lexical_share": Fraction(),
        "lexical_max_df": Number(0, 1),
        "top_k": Int(),
        "rerank": Choice("learned", "blend"),
        "rerank_queries": Int(),
        "rerank_rounds": Int(),
        "rerank_early_stopping": Int(),
        "rerank_leaves": Int(2),
        "rerank_learning_rate": Number(),
    },
)
SETTINGS = (
    "vectors",
    "tfidf_dim",
    "seed",
    "kind",
    "hnsw_m",
    "ef_construction",
    "ef_search",
    "candidates",
    "lexical_share",
    "lexical_max_df",
)


META_FIELDS = {  # index.json's fields: their JSON types, and those types in words
    "blend": ((int, float), "number"),
    "reranker": ((dict, type(None)), "dict or null"),
    "model": (str, "string"),
    "text_model_files": (dict, "dict"),
    "settings": (dict, "dict"),
    "files": (dict, "dict"),
}


def _meta_problem(meta: dict) -> str | None:
    """What is missing or wrong in an index.json that parsed, field by field."""
    for name, (types, words) in META_FIELDS.items():
        if name not in meta or not isinstance(meta[name], types):
            return f"field {name!r} missing or not a {words}"
    missing = [key for key in SETTINGS if key not in meta["settings"]]
    if missing:
        return f"field 'settings' lacks {', '.join(missing)}"
    return None


def _text_model_files(bundle: Bundle) -> dict:
    files = bundle.meta["files"]
    return {name: files[name] for name in ("text_model.json", "text_model.npz")}


def read_questions(path, column: str, id_column: str | None = None):
    """(questions, ids or None) of a file, read by the scorer's rules."""
    required = (column,) if id_column is None else (column, id_column)
    frame = open_table(path, required=required).read()
    return frame[column], (None if id_column is None else frame[id_column])
