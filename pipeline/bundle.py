"""Scoring bundles: everything needed to score raw question text with one trained model.

A bundle is a directory: bundle.json (kind, threshold, calibration, params, versions),
text_model.json + text_model.npz (text-core settings, vocabulary, idf, vectors) and the file
its model kind writes (model.keras, loaded with safe_mode=True, or logreg.npz). Nothing is
pickled, so loading a bundle cannot run code. Training, evaluation and the scorer all predict
through `Bundle`, which asks the model kind (`pipeline.models`) how to score.

Two questions that normalize to the same text are a duplicate whatever the model says: their
probability is 1.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from pipeline import __version__
from pipeline.errors import BundleError
from pipeline.io import (
    atomic_directory,
    changed_files,
    file_hashes,
    read_json,
    recover_directory,
    write_json,
)
from pipeline.models import get_kind, kind_names
from pipeline.models.base import ModelKind, ScoringParts, in_batches, to_probability
from pipeline.params import project_setting
from pipeline.tables import not_text
from pipeline.text import TextConfig, canonical, normalize, to_arrow
from pipeline.text_model import READS, TextModel

DEFAULT_TEXT = TextConfig()
FORMAT_VERSION = 3  # 2: Keras models are encoder + head parts; 3: sha256 of every file


@dataclass
class Pairs:
    """Pairs as codes into their distinct normalized questions, so each question is
    normalized and encoded once however often it repeats; `keys` tells which of them the text
    core makes the same question (they differ only in what it erases: case, spacing around
    symbols, closing marks when `text.end_marks` drops them, a missing "?" when it completes
    it)."""

    questions: pd.Series  # distinct questions, normalized
    first: np.ndarray  # per pair: index into `questions` of question 1
    second: np.ndarray
    errors: np.ndarray  # per pair: '' when it can be scored, else what is wrong
    text_config: TextConfig

    @classmethod
    def from_columns(cls, q1, q2, text_config: TextConfig = DEFAULT_TEXT) -> Pairs:
        q1, q2 = pd.Series(q1), pd.Series(q2)
        n = len(q1)
        codes, distinct = _distinct_texts(q1, q2)
        text = normalize(distinct, text_config.unicode_form)
        empty = (text.fillna("") == "").to_numpy(dtype=bool)
        problem = np.where(empty, "empty", "").astype(object)
        problem = np.append(problem, ["not text", "missing"])  # codes -2 and -1 pick these
        p1, p2 = problem[codes[:n]], problem[codes[n:]]
        errors = np.full(n, "", dtype=object)
        bad1 = p1 != ""
        bad2 = (p2 != "") & ~bad1
        errors[bad1] = "question1 is " + p1[bad1]
        errors[bad2] = "question2 is " + p2[bad2]
        # questions that differ only before normalization become one question
        renumber, questions = pd.factorize(text.fillna(""))
        codes = np.where(codes < 0, 0, codes)
        if len(renumber):
            codes = renumber[codes]
        questions = pd.Series(questions, dtype="string")
        return cls(questions, codes[:n], codes[n:], errors, text_config)

    @cached_property
    def keys(self) -> np.ndarray:
        """Per distinct question: a code of its text-core form (tokenized when first asked)."""
        return same_question_keys(self.questions, self.text_config)

    def same_question(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Per pair: whether its two questions are one question to the text core."""
        return self.keys[first] == self.keys[second]

    @property
    def valid(self) -> np.ndarray:
        return self.errors == ""


def _distinct_texts(q1: pd.Series, q2: pd.Series) -> tuple[np.ndarray, object]:
    """Codes of q1 then q2 into their distinct texts, and those texts. Code -1 marks a
    missing value, -2 a value that is not text (a number, a list from JSON lines)."""
    if isinstance(q1.dtype, pd.StringDtype) and isinstance(q2.dtype, pd.StringDtype):
        # text columns (CSV, parquet): Arrow's hash kernel, off the GIL
        encoded = pc.dictionary_encode(to_arrow(pd.concat([q1, q2], ignore_index=True)))
        return pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), encoded.dictionary
    both = pd.concat([q1.astype(object), q2.astype(object)], ignore_index=True)
    bad = not_text(both)
    codes, distinct = pd.factorize(both.where(~bad), use_na_sentinel=True)
    codes[bad] = -2
    return codes, pd.Series(distinct, dtype=object)


def same_question_keys(questions: pd.Series, text_config: TextConfig) -> np.ndarray:
    """Codes of normalized questions by their text-core form (equal code: same question)."""
    keys, _ = pd.factorize(canonical(questions, text_config).to_numpy(zero_copy_only=False))
    return keys


def same_text_is_duplicate(probability: np.ndarray, same_text: np.ndarray) -> np.ndarray:
    """Probability 1 where both questions normalize to the same text."""
    probability = np.array(probability, dtype=np.float32)
    probability[np.asarray(same_text, dtype=bool)] = 1.0
    return probability


class Bundle:
    def __init__(self, directory: Path, meta: dict, text_model: TextModel, parts: Future):
        self.directory, self.meta, self.text_model, self._parts = directory, meta, text_model, parts

    @property
    def parts(self) -> ScoringParts:
        """The loaded model's scoring parts, waiting for them if they are still loading."""
        return self._parts.result()

    @property
    def keras_model(self):
        """The whole trained Keras model (None for the other kinds)."""
        return self.parts.model

    @property
    def loaded(self) -> bool:
        """True once the model has loaded (a failed load stays False)."""
        return self._parts.done() and self._parts.exception() is None

    def wait_until_loaded(self) -> None:
        """Raise the BundleError of a model that failed to load in the background."""
        self._parts.result()

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    @property
    def encoding_floats(self) -> int | None:
        """Floats in one question's row of `encode_questions` (None: sparse or unknown)."""
        return self.meta.get("encoding_floats")

    def score(self, q1s, q2s, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(raw model output, P(duplicate)) per pair of raw questions.

        Every question must be text that is not empty after normalization.
        """
        _check_pair_lists(q1s, q2s)
        pairs = Pairs.from_columns(q1s, q2s, self.text_model.text)
        if not pairs.valid.all():
            row = int(np.flatnonzero(~pairs.valid)[0])
            raise ValueError(f"pair {row}: {pairs.errors[row]}")
        if len(pairs.first) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        encodings = self.encode_questions(self.model_inputs(pairs.questions), batch_size)
        raw = self.raw_from_encodings(encodings, pairs.first, pairs.second, batch_size)
        same = pairs.same_question(pairs.first, pairs.second)
        return raw, self.probability(raw, same)

    def predict_proba(self, q1s, q2s, batch_size: int = 8192) -> np.ndarray:
        """P(duplicate) for each pair of raw questions."""
        return self.score(q1s, q2s, batch_size)[1]

    def model_inputs(self, questions: pd.Series):
        """What the model kind reads per distinct normalized question."""
        return self.text_model.question_inputs(questions, self.meta["reads"])

    def encode_questions(self, inputs, batch_size: int = 8192):
        """The part of the model that sees one question, run once per distinct question."""
        if self.parts.per_question is None:  # the inputs are the encodings (logreg's TF-IDF)
            return inputs
        return self.parts.per_question(inputs, batch_size)

    def raw_from_encodings(
        self, encodings, first: np.ndarray, second: np.ndarray, batch_size: int = 8192
    ) -> np.ndarray:
        """Model outputs for pairs given as indices into `encode_questions`."""
        if len(first) == 0:
            return np.zeros(0, dtype=np.float32)
        # pair by pair in batches: memory follows the batch, not the number of pairs
        return in_batches(self.parts.per_pair, batch_size, first, second, gather=encodings).ravel()

    def probability(self, raw: np.ndarray, same_question: np.ndarray) -> np.ndarray:
        """P(duplicate) from the model's raw output: 1 where a pair's two questions are one
        question to the text core (`Pairs.same_question`)."""
        probability = to_probability(raw, self.meta.get("calibration"))
        return same_text_is_duplicate(probability, same_question)


def _check_pair_lists(q1s, q2s) -> None:
    """Two sequences of questions of the same length; a ValueError says what is wrong."""
    for name, questions in (("q1s", q1s), ("q2s", q2s)):
        if isinstance(questions, str | bytes) or not hasattr(questions, "__len__"):
            raise ValueError(
                f"{name} must be a sequence of questions (a list, array or Series), "
                f"got {type(questions).__name__}"
            )
    if len(q1s) != len(q2s):
        raise ValueError(
            f"q1s has {len(q1s)} questions and q2s {len(q2s)}: pair i is (q1s[i], q2s[i])"
        )


def save_bundle(
    directory: str | Path, meta: dict, text_model: TextModel, kind: ModelKind, model
) -> None:
    """Write the bundle into a temporary directory, then swap it into place."""
    with atomic_directory(directory) as staging:
        text_model.save(staging)
        facts = kind.save(model, staging, text_model)
        files = file_hashes(staging)
        import keras

        write_json(
            staging / "bundle.json",
            {
                **meta,
                **facts,
                "reads": kind.reads,
                "model_file": kind.model_file,
                "files": files,
                "format_version": FORMAT_VERSION,
                "dupq_version": __version__,
                "keras_version": keras.__version__,
            },
        )


def project_bundle(model: str | Path) -> Path:
    """A bundle directory as given, or a bare model name (`gbdt`) as the project's bundle of
    that name (`paths.models`/gbdt)."""
    given = Path(model)
    if given.exists() or len(given.parts) > 1:
        return given
    return Path(project_setting("paths", "models", "models")) / given


def load_bundle(directory: str | Path, wait: bool = True) -> Bundle:
    """Load a bundle; a missing, partial or incompatible one raises BundleError.

    A Keras model (with TensorFlow's import, seconds) loads on a background thread. With
    `wait=False` the bundle comes back as soon as its text model is ready, so the caller can
    read and featurize input meanwhile; a Keras load error is then raised by the first call
    that needs the model.
    """
    directory = Path(directory)
    meta = check_bundle(directory)
    # the kind's module (which may import TensorFlow) is imported on the loading thread
    with _bundle_errors(directory):
        text_model = TextModel.load(directory)
    loader = ThreadPoolExecutor(1, thread_name_prefix="load-model")
    parts = loader.submit(_load_parts, meta, directory)
    loader.shutdown(wait=False)  # the thread ends when the model is loaded
    bundle = Bundle(directory, meta, text_model, parts)
    if wait:
        bundle.wait_until_loaded()
    return bundle


def check_bundle(directory: str | Path) -> dict:
    """A bundle's checks without loading it (its format, its meta and every file's sha256):
    its meta, or BundleError. What a caller that only hands the bundle on (to Spark's
    executors, say) can check cheaply."""
    directory = Path(directory)
    recover_directory(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: model bundle not found (train it with `dvc repro`)")
    meta_path = directory / "bundle.json"
    if not meta_path.exists():
        raise BundleError(f"{directory}: not a model bundle (bundle.json is missing)")
    try:
        meta = read_json(meta_path)
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"{meta_path}: unreadable ({err})") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: not a JSON object (retrain the model)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{directory}: bundle format {version} made by dupq {meta.get('dupq_version', '?')}; "
            f"this dupq {__version__} reads format {FORMAT_VERSION} (retrain the model)"
        )
    problem = _meta_problem(meta)
    if problem:
        raise BundleError(f"{meta_path}: {problem} (retrain the model)")
    _check_files(directory, meta)
    return meta


def _finite(value, low: float = -np.inf, high: float = np.inf) -> bool:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    return number and bool(np.isfinite(value)) and low <= value <= high


def _meta_problem(meta: dict) -> str | None:
    """What is wrong with a bundle.json's fields, or None (its schema, checked by hand)."""
    if meta.get("kind") not in kind_names():
        return f"unknown model kind {meta.get('kind')!r}"
    if meta.get("reads") not in READS:
        return f"reads: {meta.get('reads')!r} is not one of {', '.join(READS)}"
    if not isinstance(meta.get("model_file"), str) or not isinstance(meta.get("name"), str):
        return "model_file and name must be strings"
    if not _finite(meta.get("threshold"), 0.0, 1.0):
        return f"threshold: {meta.get('threshold')!r} is not a number in [0, 1]"
    calibration = meta.get("calibration")
    if calibration is not None and not (
        isinstance(calibration, dict)
        and set(calibration) == {"coef", "intercept"}
        and all(_finite(v) for v in calibration.values())
    ):
        return f"calibration: {calibration!r} is not null or {{coef, intercept}} numbers"
    files = meta.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(digest, str) and len(digest) == 64
        for name, digest in files.items()
    ):
        return "files: not a mapping of file names to sha256 digests"
    needed = {"text_model.json", "text_model.npz", meta["model_file"]}
    if not needed <= set(files):
        return f"files: lacks {', '.join(sorted(needed - set(files)))}"
    return None


def _check_files(directory: Path, meta: dict) -> None:
    """Every file recorded at save is there, with the same sha256."""
    files = meta["files"]
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise BundleError(f"{directory}: incomplete bundle, missing {', '.join(missing)}")
    changed = changed_files(directory, files)
    if changed:
        raise BundleError(
            f"{directory}: bundle corrupted: {', '.join(changed)} (its sha256 differs from the "
            "one recorded when the bundle was saved; retrain or restore it)"
        )


def _load_parts(meta: dict, directory: Path) -> ScoringParts:
    with _bundle_errors(directory):
        kind = get_kind(meta["kind"])
        if (kind.reads, kind.model_file) != (meta.get("reads"), meta.get("model_file")):
            raise ValueError(
                f"bundle.json says kind {kind.name} reads {meta.get('reads')!r} from "
                f"{meta.get('model_file')!r}; this dupq's {kind.name} reads {kind.reads!r} "
                f"from {kind.model_file!r} (retrain the model)"
            )
        return kind.load(directory)


@contextmanager
def _bundle_errors(directory: Path):
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BundleError(
            f"{directory}: cannot load bundle ({type(err).__name__}: {err})"
        ) from None
