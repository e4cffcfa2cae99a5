"""Find the known questions that a new question asks again: nearest neighbours of its
question vector in a FAISS index over a bank of known questions, re-ranked by a pair model.

The question vector is the TF-IDF-weighted mean of word vectors from the re-ranking
bundle's text model, L2-normalized, so the index searches by cosine. The re-ranking runs
through the bundle's own scoring code (per-question parts once per distinct question, the
per-pair part per candidate), exactly as `dupq-score` does.

    dupq-find --index models/index --query "How do I learn Python?"
    dupq-find --index models/index --input questions.csv --output matches.csv
    dupq-find --index models/index --add more_questions.csv
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.bundle import Bundle, Pairs, load_bundle
from pipeline.errors import InputError, Terminated, UserError, exit_on_sigterm
from pipeline.io import atomic_path, file_hashes, read_json, table_format, write_json
from pipeline.tables import ChunkWriter, open_table
from pipeline.text import normalize

log = logging.getLogger("find")
FORMAT_VERSION = 1
INDEX_FILE, BANK_FILE, META_FILE = "index.faiss", "bank.parquet", "index.json"
KINDS = ("hnsw", "flat")
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
    "duplicate",
    "error",
)


def question_vectors(text_model, normalized: pd.Series) -> np.ndarray:
    """(n, dim) float32 unit vectors (zero for a question with no known word)."""
    vectors, _ = text_model.embed(text_model.tokens(normalized))
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

    @classmethod
    def build(cls, questions, ids, bundle: Bundle, settings: dict) -> QuestionIndex:
        """Index `questions` (with their `ids`, or row numbers when None) for `bundle`."""
        meta = {
            "format_version": FORMAT_VERSION,
            "dupq_version": __version__,
            "text_model_files": _text_model_files(bundle),
            "model": str(bundle.directory),
            "settings": {key: settings[key] for key in SETTINGS},
        }
        empty = pd.DataFrame(
            {
                "bank_id": pd.Series(dtype="string"),
                "question": pd.Series(dtype="string"),
                "normalized": pd.Series(dtype="string"),
            }
        )
        built = cls(new_faiss_index(bundle.text_model.dim, settings), empty, meta)
        built.add(questions, ids, bundle)
        return built

    def add(self, questions, ids, bundle: Bundle) -> int:
        """Add questions to the index; rows whose question is missing or empty after
        normalization are skipped and counted. Returns how many were added."""
        questions = pd.Series(questions, dtype="string").reset_index(drop=True)
        ids = (
            pd.Series(np.arange(len(self.bank), len(self.bank) + len(questions)), dtype="string")
            if ids is None
            else pd.Series(ids).astype("string").reset_index(drop=True)
        )
        normalized = normalize(questions, bundle.text_model.text.unicode_form)
        keep = (normalized.fillna("") != "").to_numpy()
        if not keep.all():
            log.warning("skipped %d empty or missing questions", int((~keep).sum()))
        added = pd.DataFrame(
            {"bank_id": ids[keep], "question": questions[keep], "normalized": normalized[keep]}
        ).reset_index(drop=True)
        if len(added):
            self.index.add(question_vectors(bundle.text_model, added["normalized"]))
        self.bank = pd.concat([self.bank, added], ignore_index=True)
        self.meta["questions"] = len(self.bank)
        return len(added)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, bank rows) of the k nearest questions; row -1 where fewer exist."""
        k = max(1, min(k, len(self.bank)))
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def save(self, directory: str | Path) -> None:
        """Write into a temporary directory beside `directory`, then swap it into place."""
        import faiss

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            faiss.write_index(self.index, str(staging / INDEX_FILE))
            self.bank.to_parquet(staging / BANK_FILE, index=False)
            write_json(staging / META_FILE, {**self.meta, "files": file_hashes(staging)})
            os.chmod(staging, 0o755)
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(staging, directory)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    @classmethod
    def load(cls, directory: str | Path) -> QuestionIndex:
        """Load an index; a missing, damaged or incompatible one is an InputError."""
        import faiss

        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise InputError(f"{directory}: not a question index ({META_FILE} is missing)")
        try:
            meta = read_json(meta_path)
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"{meta_path}: unreadable ({err})") from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{directory}: not an index this dupq reads (rebuild it)")
        expected = meta.get("files") or {}
        for name in (INDEX_FILE, BANK_FILE):
            if not (directory / name).is_file():
                raise InputError(f"{directory}: incomplete index, missing {name}")
        actual = file_hashes(directory)
        changed = [name for name, digest in expected.items() if actual.get(name) != digest]
        if changed or set(expected) != {INDEX_FILE, BANK_FILE}:
            raise InputError(f"{directory}: index corrupted: {', '.join(changed) or META_FILE}")
        index = faiss.read_index(str(directory / INDEX_FILE))
        bank = pd.read_parquet(directory / BANK_FILE)
        if index.ntotal != len(bank):
            raise InputError(f"{directory}: index holds {index.ntotal} vectors, bank {len(bank)}")
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = meta["settings"]["ef_search"]
        return cls(index, bank, meta)

    def check_matches(self, bundle: Bundle, directory) -> None:
        """The index's vectors must come from the bundle's text model."""
        if self.meta["text_model_files"] != _text_model_files(bundle):
            raise InputError(
                f"{directory}: built with another text model than the bundle "
                f"{bundle.directory}; rebuild the index (dvc repro index) or use "
                f"the bundle it was built with ({self.meta['model']})"
            )


SETTINGS = ("kind", "hnsw_m", "ef_construction", "ef_search", "candidates")


def _text_model_files(bundle: Bundle) -> dict:
    files = bundle.meta["files"]
    return {name: files[name] for name in ("text_model.json", "text_model.npz")}


class Finder:
    """Questions in, their likely duplicates among the bank's questions out."""

    def __init__(self, index: QuestionIndex, bundle: Bundle, candidates: int, batch: int = 8192):
        self.index, self.bundle, self.candidates, self.batch = index, bundle, candidates, batch

    def find(self, queries, top_k: int, threshold: float | None = None) -> pd.DataFrame:
        """One row per (query, match) for the top_k matches by the pair model's probability;
        a query that is missing, not text or empty keeps one row with its error."""
        queries = pd.Series(queries).reset_index(drop=True)
        threshold = self.bundle.threshold if threshold is None else threshold
        checked = Pairs.from_columns(queries, queries, self.bundle.text_model.text.unicode_form)
        errors = pd.Series(checked.errors).str.replace("question1 is", "query is", regex=False)
        valid = np.flatnonzero(checked.valid)
        matches = [self._errors(queries, errors)]
        for start in range(0, len(valid), QUERIES_PER_BATCH):
            rows = valid[start : start + QUERIES_PER_BATCH]
            normalized = checked.questions.iloc[checked.first[rows]].reset_index(drop=True)
            scores, bank_rows = self.candidates_of(normalized)
            probability = self.rerank(normalized, bank_rows)
            matches.append(self._top(queries, rows, scores, bank_rows, probability, top_k))
        out = pd.concat(matches, ignore_index=True)
        out["duplicate"] = (out["probability"] >= threshold).astype("boolean")
        out.loc[out["error"] != "", "duplicate"] = pd.NA
        return out.sort_values(["query_row", "rank"], kind="stable", ignore_index=True)[
            list(OUTPUT_COLUMNS)
        ]

    def candidates_of(self, normalized: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(cosine, bank row) of each query's nearest bank questions."""
        vectors = question_vectors(self.bundle.text_model, normalized)
        return self.index.search(vectors, self.candidates)

    def rerank(self, normalized: pd.Series, bank_rows: np.ndarray) -> np.ndarray:
        """The pair model's P(duplicate) for each (query, candidate); NaN where no candidate."""
        n, k = bank_rows.shape
        present = bank_rows >= 0
        candidates = self.index.bank["normalized"].to_numpy(object)[bank_rows[present]]
        codes, texts = pd.factorize(np.concatenate([normalized.to_numpy(object), candidates]))
        first = np.repeat(codes[:n], k).reshape(n, k)[present]
        second = codes[n:]
        questions = pd.Series(texts, dtype="string")
        encodings = self.bundle.encode_questions(self.bundle.model_inputs(questions), self.batch)
        raw = self.bundle.raw_from_encodings(encodings, first, second, self.batch)
        probability = np.full((n, k), np.nan, dtype=np.float32)
        probability[present] = self.bundle.probability(raw, first, second)
        return probability

    def _top(self, queries, rows, scores, bank_rows, probability, top_k) -> pd.DataFrame:
        order = np.argsort(-np.nan_to_num(probability, nan=-1.0), axis=1, kind="stable")[:, :top_k]
        picked = np.take_along_axis(bank_rows, order, axis=1)
        present = picked >= 0
        query_of = np.repeat(rows, order.shape[1]).reshape(order.shape)[present]
        bank = self.index.bank.iloc[picked[present]]
        return pd.DataFrame(
            {
                "query_row": query_of,
                "query": queries.iloc[query_of].to_numpy(object),
                "rank": np.tile(np.arange(1, order.shape[1] + 1), (len(rows), 1))[present],
                "bank_row": picked[present],
                "bank_id": bank["bank_id"].to_numpy(object),
                "bank_question": bank["question"].to_numpy(object),
                "candidate_score": np.take_along_axis(scores, order, axis=1)[present],
                "probability": np.take_along_axis(probability, order, axis=1)[present],
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
                "error": errors.iloc[bad].to_numpy(object),
            }
        )


def _recall_at(rows: np.ndarray, targets: np.ndarray, ks) -> dict:
    hit = rows == targets[:, None]
    return {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks}


def evaluate_retrieval(bundle: Bundle, settings: dict, splits: dict[str, pd.DataFrame]) -> dict:
    """How often the known duplicate of a test question is found, with every question of
    every split in the bank: recall@k of the nearest neighbours (approximate, and exact with
    the same vectors) and after re-ranking them with the pair model, and the re-ranked MRR."""
    form = bundle.text_model.text.unicode_form
    every = pd.concat([f[c] for f in splits.values() for c in ("question1", "question2")])
    bank_texts = pd.Series(pd.unique(normalize(every, form).dropna()), dtype="string")
    vectors = question_vectors(bundle.text_model, bank_texts)
    approximate = new_faiss_index(vectors.shape[1], settings)
    exact = new_faiss_index(vectors.shape[1], {"kind": "flat"})
    approximate.add(vectors)
    exact.add(vectors)
    bank = pd.DataFrame({"bank_id": bank_texts.index.astype(str), "question": bank_texts})
    bank["normalized"] = bank_texts

    test = splits["test"]
    duplicates = test[test["is_duplicate"] == 1]
    queries = normalize(duplicates["question1"], form).reset_index(drop=True)
    targets = normalize(duplicates["question2"], form).reset_index(drop=True)
    asked = (queries != targets).to_numpy()  # a pair of one text twice has nothing to find
    queries, targets = queries[asked].reset_index(drop=True), targets[asked].reset_index(drop=True)
    position = pd.Index(bank_texts)
    query_rows, target_rows = position.get_indexer(queries), position.get_indexer(targets)
    k = settings["candidates"]
    ks = sorted({n for n in (1, 5, 10, 50) if n <= k} | {k})

    def without_query(index) -> np.ndarray:
        _, rows = index.search(vectors[query_rows], k + 1)
        others = rows != query_rows[:, None]  # the bank holds the query itself: skip it
        order = np.argsort(~others, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(rows, order, axis=1)

    candidates = without_query(approximate)
    probability = Finder(QuestionIndex(approximate, bank, {}), bundle, k).rerank(
        queries, candidates
    )
    order = np.argsort(-np.nan_to_num(probability, nan=-1.0), axis=1, kind="stable")
    reranked = np.take_along_axis(candidates, order, axis=1)
    found = reranked == target_rows[:, None]
    rank = np.where(found.any(axis=1), found.argmax(axis=1) + 1, np.inf)
    result = {
        "bank_questions": len(bank_texts),
        "queries": len(queries),
        "candidates": _recall_at(candidates, target_rows, ks),
        "exact": _recall_at(without_query(exact), target_rows, ks),
        "reranked": {**_recall_at(reranked, target_rows, ks), "mrr": float(np.mean(1 / rank))},
    }
    exact_at_10 = result["exact"].get("recall@10")
    if exact_at_10:
        result["reranked_recall@10_over_exact"] = result["reranked"]["recall@10"] / exact_at_10
    return result


def open_finder(index_dir, model_dir=None, candidates: int | None = None) -> Finder:
    """The index and its re-ranking bundle (the one it was built with, unless another is
    given), checked to belong together."""
    index = QuestionIndex.load(index_dir)
    bundle = load_bundle(model_dir or index.meta["model"])
    index.check_matches(bundle, index_dir)
    return Finder(index, bundle, candidates or index.meta["settings"].get("candidates", 50))


def read_questions(path, column: str, id_column: str | None = None):
    """(questions, ids or None) of a file, read by the scorer's rules."""
    required = (column,) if id_column is None else (column, id_column)
    frame = open_table(path, required=required).read()
    return frame[column], (None if id_column is None else frame[id_column])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dupq-find", description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="question index directory (models/index)")
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
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=None, help="neighbours re-ranked")
    args = parser.parse_args(argv)
    if args.input and not args.output:
        parser.error("--input needs --output")
    if args.top_k < 1 or (args.candidates is not None and args.candidates < 1):
        parser.error("--top-k and --candidates must be 1 or more")
    exit_on_sigterm()
    try:
        return _run(args)
    except UserError as err:
        print(f"dupq-find: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"dupq-find: error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dupq-find: interrupted; nothing written", file=sys.stderr)
        return 130
    except Terminated:
        print("dupq-find: terminated; nothing written", file=sys.stderr)
        return 143
    finally:
        gc.freeze()  # keep TensorFlow's objects out of the exit-time collections


def _run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    if args.add:
        questions, ids = read_questions(args.add, args.question_col, args.id_col)
        index = QuestionIndex.load(args.index)
        bundle = load_bundle(args.model or index.meta["model"])
        index.check_matches(bundle, args.index)
        added = index.add(questions, ids, bundle)
        index.save(args.index)
        print(
            f"dupq-find: added {added} of {len(questions)} questions; "
            f"{len(index.bank)} in {args.index}",
            file=sys.stderr,
        )
        return 0
    output_fmt = table_format(args.output) if args.output else None
    finder = open_finder(args.index, args.model, args.candidates)
    queries = (
        pd.Series([args.query])
        if args.query is not None
        else read_questions(args.input, args.question_col)[0]
    )
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
