"""Find the known questions that a new question asks again: nearest neighbours of its
question vector in a FAISS index over a bank of known questions, re-ranked by a pair model.

A question's vector comes from the re-ranking bundle's text model: by default its TF-IDF row
(vocabulary words, idf weights) randomly projected to a few hundred dimensions, which keeps
TF-IDF cosines within a few hundredths (Johnson-Lindenstrauss) at a size HNSW can search; or
the TF-IDF-weighted mean of its word vectors. Vectors are L2-normalized, so the index searches
by cosine. On real Quora questions the TF-IDF vectors find a known duplicate among the 50
nearest far more often than the word-vector means do (docs/benchmarks.md). The re-ranking runs
through the bundle's own scoring code (per-question parts once per distinct question, the
per-pair part per candidate), exactly as `dupq-score` does.

    dupq-find --index models/index --query "How do I learn Python?"
    dupq-find --index models/index --input questions.csv --output matches.csv
    dupq-find --index models/index --add more_questions.csv
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.bundle import Bundle, Pairs, load_bundle, project_bundle, same_question_keys
from pipeline.errors import InputError, run_cli
from pipeline.io import (
    atomic_directory,
    atomic_path,
    check_writable,
    exclusive_lock,
    file_hashes,
    load_npz,
    read_json,
    recover_directory,
    save_npz,
    table_format,
    write_json,
)
from pipeline.models import kind_names
from pipeline.params import Choice, Int, OneOf, Optional, Section, Text, project_setting
from pipeline.tables import ChunkWriter, concat_rows, not_text, open_table
from pipeline.text import normalize

log = logging.getLogger("find")
FORMAT_VERSION = 2  # 2: the model's path is relative to the index directory
INDEX_FILE, BANK_FILE, META_FILE = "index.faiss", "bank.parquet", "index.json"
LOCK_TIMEOUT = 600.0  # seconds an --add waits for another writer of the same index
PROJECTION_FILE = "projection.npz"
QUERIES_PER_BATCH = 1024  # queries re-ranked together: 51k pairs with 50 candidates each
OUTPUT_COLUMNS = (
    "query_row",
    "query",
    "rank",
    "bank_row",
    "bank_id",
    "bank_question",
    "candidate_score",
    "probability",
    "score",
    "duplicate",
    "error",
)


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

    @classmethod
    def build(
        cls, questions, ids, bundle: Bundle, settings: dict, blend: float = 0.0
    ) -> QuestionIndex:
        """Index `questions` (with their `ids`, or row numbers when None) for `bundle`;
        `blend` is the weight of the index's score when re-ranking (`ranking_score`)."""
        meta = {
            "blend": blend,
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
        built = cls(new_faiss_index(encoder.dim, settings), empty, meta, encoder)
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
        self.bank = concat_rows([self.bank, added])
        self.meta["questions"] = len(self.bank)
        return counts

    def column(self, name: str) -> np.ndarray:
        """A bank column as an object array, converted once per bank size (not per query)."""
        cache = self.__dict__.setdefault("_columns", {})
        if name not in cache or len(cache[name]) != len(self.bank):
            cache[name] = self.bank[name].to_numpy(object)
        return cache[name]

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, bank rows) of the k nearest questions; row -1 where fewer exist."""
        k = max(1, min(k, len(self.bank)))
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def save(self, directory: str | Path) -> None:
        """Write into a temporary directory beside `directory`, then swap it into place."""
        import faiss

        with atomic_directory(directory) as staging:
            faiss.write_index(self.index, str(staging / INDEX_FILE))
            if self.encoder.projection is not None:
                save_npz(staging / PROJECTION_FILE, projection=self.encoder.projection)
            self.bank.to_parquet(staging / BANK_FILE, index=False)
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
        needed = {INDEX_FILE, BANK_FILE} | ({PROJECTION_FILE} if projected else set())
        for name in sorted(needed):
            if not (directory / name).is_file():
                raise InputError(f"{directory}: incomplete index, missing {name}")
        actual = file_hashes(directory)
        changed = [name for name, digest in expected.items() if actual.get(name) != digest]
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
        return cls(index, bank, meta, QuestionEncoder(bundle.text_model, projection))


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
        "top_k": Int(),
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
)


META_FIELDS = {  # index.json's fields and their JSON types
    "blend": (int, float),
    "model": str,
    "text_model_files": dict,
    "settings": dict,
    "files": dict,
}


def _meta_problem(meta: dict) -> str | None:
    """What is missing or wrong in an index.json that parsed, field by field."""
    for name, types in META_FIELDS.items():
        if not isinstance(meta.get(name), types):
            return f"field {name!r} missing or not a {getattr(types, '__name__', 'number')}"
    missing = [key for key in SETTINGS if key not in meta["settings"]]
    if missing:
        return f"field 'settings' lacks {', '.join(missing)}"
    return None


def _text_model_files(bundle: Bundle) -> dict:
    files = bundle.meta["files"]
    return {name: files[name] for name in ("text_model.json", "text_model.npz")}


class Finder:
    """Questions in, their likely duplicates among the bank's questions out."""

    def __init__(self, index: QuestionIndex, bundle: Bundle, candidates: int, blend: float = 0.0):
        self.index, self.bundle, self.candidates, self.blend = index, bundle, candidates, blend
        self.batch = 8192  # pairs per call of the model's per-pair part

    def find(self, queries, top_k: int, threshold: float | None = None) -> pd.DataFrame:
        """One row per (query, match) for the top_k matches by `ranking_score`; `duplicate`
        is the pair model's probability at the bundle's threshold. A query that is missing,
        not text or empty keeps one row with its error."""
        if queries is None or isinstance(queries, str | bytes):
            raise ValueError(
                f"queries must be a sequence of questions, got {type(queries).__name__}"
            )
        queries = pd.Series(queries).reset_index(drop=True)
        threshold = self.bundle.threshold if threshold is None else threshold
        checked = Pairs.from_columns(queries, queries, self.bundle.text_model.text)
        errors = pd.Series(checked.errors).str.replace("question1 is", "query is", regex=False)
        valid = np.flatnonzero(checked.valid)
        matches = [self._errors(queries, errors)]
        for start in range(0, len(valid), QUERIES_PER_BATCH):
            rows = valid[start : start + QUERIES_PER_BATCH]
            normalized = checked.questions.iloc[checked.first[rows]].reset_index(drop=True)
            scores, bank_rows = self.candidates_of(normalized)
            probability = self.rerank(normalized, bank_rows)
            matches.append(self._top(queries, rows, scores, bank_rows, probability, top_k))
        out = concat_rows(matches)
        out["duplicate"] = (out["probability"] >= threshold).astype("boolean")
        out.loc[out["error"] != "", "duplicate"] = pd.NA
        return out.sort_values(["query_row", "rank"], kind="stable", ignore_index=True)[
            list(OUTPUT_COLUMNS)
        ]

    def candidates_of(self, normalized: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(cosine, bank row) of each query's nearest bank questions."""
        return self.index.search(self.index.encoder.vectors(normalized), self.candidates)

    def rerank(self, normalized: pd.Series, bank_rows: np.ndarray) -> np.ndarray:
        """The pair model's P(duplicate) for each (query, candidate); NaN where no candidate."""
        n, k = bank_rows.shape
        present = bank_rows >= 0
        candidates = self.index.column("normalized")[bank_rows[present]]
        codes, texts = pd.factorize(np.concatenate([normalized.to_numpy(object), candidates]))
        first = np.repeat(codes[:n], k).reshape(n, k)[present]
        second = codes[n:]
        questions = pd.Series(texts, dtype="string")
        encodings = self.bundle.encode_questions(self.bundle.model_inputs(questions), self.batch)
        raw = self.bundle.raw_from_encodings(encodings, first, second, self.batch)
        probability = np.full((n, k), np.nan, dtype=np.float32)
        keys = same_question_keys(questions, self.bundle.text_model.text)
        probability[present] = self.bundle.probability(raw, keys[first] == keys[second])
        return probability

    def _top(self, queries, rows, scores, bank_rows, probability, top_k) -> pd.DataFrame:
        ranking = ranking_score(probability, scores, self.blend)
        order = np.argsort(-ranking, axis=1, kind="stable")[:, :top_k]
        picked = np.take_along_axis(bank_rows, order, axis=1)
        present = picked >= 0
        query_of = np.repeat(rows, order.shape[1]).reshape(order.shape)[present]
        return pd.DataFrame(
            {
                "query_row": query_of,
                "query": queries.iloc[query_of].to_numpy(object),
                "rank": np.tile(np.arange(1, order.shape[1] + 1), (len(rows), 1))[present],
                "bank_row": picked[present],
                "bank_id": self.index.column("bank_id")[picked[present]],
                "bank_question": self.index.column("question")[picked[present]],
                "candidate_score": np.take_along_axis(scores, order, axis=1)[present],
                "probability": np.take_along_axis(probability, order, axis=1)[present],
                "score": np.take_along_axis(ranking, order, axis=1)[present],
                "error": "",
            }
        )

    @staticmethod
    def _errors(queries: pd.Series, errors: pd.Series) -> pd.DataFrame:
        bad = np.flatnonzero(errors.to_numpy(object) != "")
        return pd.DataFrame(
            {
                "query_row": bad,
                "query": queries.iloc[bad].astype(object).to_numpy(object),
                "rank": pd.array([pd.NA] * len(bad), dtype="Int64"),
                "bank_row": pd.array([pd.NA] * len(bad), dtype="Int64"),
                "bank_id": pd.array([pd.NA] * len(bad), dtype="string"),
                "bank_question": pd.array([pd.NA] * len(bad), dtype="string"),
                "candidate_score": np.full(len(bad), np.nan, np.float32),
                "probability": np.full(len(bad), np.nan, np.float32),
                "score": np.full(len(bad), np.nan, np.float32),
                "error": errors.iloc[bad].to_numpy(object),
            }
        )


def _recall_at(rows: np.ndarray, targets: np.ndarray, ks) -> dict:
    hit = rows == targets[:, None]
    return {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks}


BLENDS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # weights of the candidate score tried


def ranking_score(probability: np.ndarray, cosine: np.ndarray, blend: float) -> np.ndarray:
    """What matches are ranked by: (1 - blend) * P(duplicate) + blend * cosine; -inf where
    there is no candidate. blend 0 ranks by the pair model alone, 1 by the index alone."""
    score = (1.0 - blend) * probability + blend * cosine
    return np.where(np.isnan(probability), -np.inf, score)


def evaluate_retrieval(
    bundle: Bundle, settings: dict, splits: dict[str, pd.DataFrame], blend: float | None = None
) -> dict:
    """How often the known duplicate of a test question is found, with every question of
    every split in the bank: recall@k of the nearest neighbours (approximate, and exact with
    the same vectors), and after re-ranking them, with the re-ranked MRR. The re-ranking's
    blend of model and index scores is `blend`, or else the one of BLENDS with the best MRR
    on the validation split's duplicates."""
    form = bundle.text_model.text.unicode_form
    every = pd.concat([f[c] for f in splits.values() for c in ("question1", "question2")])
    bank_texts = pd.Series(pd.unique(normalize(every, form).dropna()), dtype="string")
    encoder = QuestionEncoder.for_settings(bundle.text_model, settings)
    vectors = encoder.vectors(bank_texts)
    approximate = new_faiss_index(vectors.shape[1], settings)
    exact = new_faiss_index(vectors.shape[1], {"kind": "flat"})
    approximate.add(vectors)
    exact.add(vectors)
    bank = pd.DataFrame({"bank_id": bank_texts.index.astype(str), "question": bank_texts})
    bank["normalized"] = bank_texts
    finder = Finder(QuestionIndex(approximate, bank, {}, encoder), bundle, settings["candidates"])
    k = settings["candidates"]
    ks = sorted({n for n in (1, 5, 10, 50) if n <= k} | {k})
    position = pd.Index(bank_texts)

    def known_duplicates(split: pd.DataFrame):
        duplicates = split[split["is_duplicate"] == 1]
        queries = normalize(duplicates["question1"], form).reset_index(drop=True)
        targets = normalize(duplicates["question2"], form).reset_index(drop=True)
        asked = (queries != targets).to_numpy()  # a pair of one text twice has nothing to find
        queries = queries[asked].reset_index(drop=True)
        return queries, position.get_indexer(queries), position.get_indexer(targets[asked])

    def nearest(index, query_rows):
        cosine, rows = index.search(vectors[query_rows], k + 1)
        others = rows != query_rows[:, None]  # the bank holds the query itself: skip it
        order = np.argsort(~others, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(cosine, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def reranked(queries, cosine, rows, weight):
        probability = finder.rerank(queries, rows)
        order = np.argsort(-ranking_score(probability, cosine, weight), axis=1, kind="stable")
        return np.take_along_axis(rows, order, axis=1), probability

    def mrr(rows, target_rows):
        found = rows == target_rows[:, None]
        rank = np.where(found.any(axis=1), found.argmax(axis=1) + 1, np.inf)
        return float(np.mean(1 / rank))

    if blend is None:
        queries, query_rows, target_rows = known_duplicates(splits["val"])
        cosine, rows = nearest(approximate, query_rows)
        probability = finder.rerank(queries, rows)
        scores = {
            weight: mrr(
                np.take_along_axis(
                    rows, np.argsort(-ranking_score(probability, cosine, weight), axis=1), axis=1
                ),
                target_rows,
            )
            for weight in BLENDS
        }
        blend = float(max(scores, key=scores.get))
    queries, query_rows, target_rows = known_duplicates(splits["test"])
    cosine, candidates = nearest(approximate, query_rows)
    by_model, _ = reranked(queries, cosine, candidates, 0.0)
    final, _ = reranked(queries, cosine, candidates, blend)
    result = {
        "bank_questions": len(bank_texts),
        "queries": len(queries),
        "blend": blend,
        "candidates": {
            **_recall_at(candidates, target_rows, ks),
            "mrr": mrr(candidates, target_rows),
        },
        "exact": _recall_at(nearest(exact, query_rows)[1], target_rows, ks),
        "model_only": {**_recall_at(by_model, target_rows, ks), "mrr": mrr(by_model, target_rows)},
        "reranked": {**_recall_at(final, target_rows, ks), "mrr": mrr(final, target_rows)},
    }
    exact_at_10 = result["exact"].get("recall@10")
    if exact_at_10:
        result["reranked_recall@10_over_exact"] = result["reranked"]["recall@10"] / exact_at_10
    return result


def open_finder(index_dir, model_dir=None, candidates: int | None = None) -> Finder:
    """The index and its re-ranking bundle (the one it was built with, unless another is
    given), checked to belong together."""
    bundle = load_bundle(model_dir or QuestionIndex.read_meta(index_dir)["model"])
    index = QuestionIndex.load(index_dir, bundle)
    settings = index.meta["settings"]
    return Finder(index, bundle, candidates or settings["candidates"], index.meta["blend"])


def read_questions(path, column: str, id_column: str | None = None):
    """(questions, ids or None) of a file, read by the scorer's rules."""
    required = (column,) if id_column is None else (column, id_column)
    frame = open_table(path, required=required).read()
    return frame[column], (None if id_column is None else frame[id_column])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dupq-find", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--index",
        default=project_setting("paths", "index", "models/index"),
        help="question index directory (default: the project's paths.index, %(default)s)",
    )
    parser.add_argument(
        "--model", help="re-ranking bundle (default: the one the index was built with)"
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="one question")
    what.add_argument("--input", help="questions to look up: .csv .tsv .parquet .jsonl")
    what.add_argument("--add", help="questions to add to the index: .csv .tsv .parquet .jsonl")
    parser.add_argument("--output", help="where --input's matches go (default: stdout for --query)")
    parser.add_argument("--question-col", default="question")
    parser.add_argument("--id-col", default=None, help="--add: a column of bank ids")
    parser.add_argument(
        "--top-k",
        type=int,
        default=project_setting("index", "top_k", 10),
        help="matches per question (default: the project's index.top_k, %(default)s)",
    )
    parser.add_argument("--candidates", type=int, default=None, help="neighbours re-ranked")
    args = parser.parse_args(argv)
    if args.input and not args.output:
        parser.error("--input needs --output")
    if args.top_k < 1 or (args.candidates is not None and args.candidates < 1):
        parser.error("--top-k and --candidates must be 1 or more")
    return run_cli("dupq-find", lambda: _run(args), "nothing written")


def _run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    if args.add:
        questions, ids = read_questions(args.add, args.question_col, args.id_col)
        with exclusive_lock(args.index, LOCK_TIMEOUT):  # read, add, write: one at a time
            model = project_bundle(args.model) if args.model else None
            bundle = load_bundle(model or QuestionIndex.read_meta(args.index)["model"])
            index = QuestionIndex.load(args.index, bundle)
            counts = index.add(questions, ids, bundle)
            index.save(args.index)
        skipped = ", ".join(f"{n} {why}" for why, n in counts.items() if why != "added" and n)
        print(
            f"dupq-find: added {counts['added']} of {len(questions)} questions; "
            f"{len(index.bank)} in {args.index}" + (f" (skipped: {skipped})" if skipped else ""),
            file=sys.stderr,
        )
        return 0
    if args.query is not None:
        queries = pd.Series([args.query])
    else:  # the input and the output are checked before the index and the model load
        queries = read_questions(args.input, args.question_col)[0]
    output_fmt = table_format(args.output) if args.output else None
    if args.output:
        check_writable(Path(args.output))
    model = project_bundle(args.model) if args.model else None
    finder = open_finder(args.index, model, args.candidates)
    matches = finder.find(queries, args.top_k)
    if not args.output:
        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            print(matches.drop(columns=["query_row", "query"]).to_string(index=False))
        return 0
    with atomic_path(args.output) as tmp:
        writer = ChunkWriter(tmp, output_fmt)
        try:
            writer.write(matches)
        finally:
            writer.close()
    print(
        f"dupq-find: {len(queries)} queries -> {args.output}: {len(matches)} rows", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
