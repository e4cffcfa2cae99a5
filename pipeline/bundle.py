"""Scoring bundles: everything needed to score raw question text with one trained model.

A bundle is a directory: bundle.json (kind, threshold, calibration, params, versions),
text_model.json + text_model.npz (text-core settings, vocabulary, idf, vectors) and either
model.keras (loaded with safe_mode=True) or logreg.npz. Nothing is pickled, so loading a
bundle cannot run code. Training, evaluation and the scorer all predict through `Bundle`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from pipeline import __version__
from pipeline.featurize import TextModel
from pipeline.io import load_npz, read_json, save_npz, write_json
from pipeline.text import normalize, to_arrow

FORMAT_VERSION = 2  # 2: Keras models are encoder + head parts
KERAS_KINDS = ("siamese", "residual", "birnn_cnn")
KINDS = (*KERAS_KINDS, "logreg")


class BundleError(Exception):
    """A bundle that cannot be loaded: the message says what is missing or incompatible."""


@dataclass
class Pairs:
    """Pairs as codes into their distinct questions, so each question is normalized and
    encoded once however often it repeats."""

    questions: pd.Series  # distinct questions, normalized
    first: np.ndarray  # per pair: index into `questions` of question 1
    second: np.ndarray
    errors: np.ndarray  # per pair: '' when it can be scored, else what is wrong

    @classmethod
    def from_columns(cls, q1, q2, unicode_form: str = "NFKC") -> Pairs:
        q1, q2 = pd.Series(q1), pd.Series(q2)
        n = len(q1)
        codes, distinct = _distinct_texts(q1, q2)
        text = normalize(distinct, unicode_form)
        empty = (text.fillna("") == "").to_numpy(dtype=bool)
        problem = np.where(empty, "empty", "").astype(object)
        problem = np.append(problem, ["not text", "missing"])  # codes -2 and -1 pick these
        p1, p2 = problem[codes[:n]], problem[codes[n:]]
        errors = np.full(n, "", dtype=object)
        bad1 = p1 != ""
        bad2 = (p2 != "") & ~bad1
        errors[bad1] = "question1 is " + p1[bad1]
        errors[bad2] = "question2 is " + p2[bad2]
        codes = np.where(codes < 0, 0, codes)
        return cls(text.fillna(""), codes[:n], codes[n:], errors)

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
    not_text = np.zeros(len(both), dtype=bool)
    if pd.api.types.infer_dtype(both, skipna=True) not in ("string", "empty"):
        # mixed values: only these need a look at each value (some cannot even be hashed)
        is_text = both.map(lambda value: isinstance(value, str))
        not_text = ~(is_text | both.isna()).to_numpy(dtype=bool)
        both = both.where(~not_text)
    codes, distinct = pd.factorize(both, use_na_sentinel=True)
    codes[not_text] = -2
    return codes, pd.Series(distinct, dtype=object)


class Bundle:
    def __init__(
        self,
        directory: Path,
        meta: dict,
        text_model: TextModel,
        keras_parts: Future | None = None,
        logreg: dict | None = None,
    ):
        self.directory, self.meta, self.text_model = directory, meta, text_model
        self._keras_parts, self.logreg = keras_parts, logreg

    @property
    def keras_model(self):
        """The trained Keras model (None for logreg), waiting for it if it is still loading."""
        return None if self._keras_parts is None else self._keras_parts.result()[0]

    def wait_until_loaded(self) -> None:
        """Raise the BundleError of a Keras model that failed to load in the background."""
        if self._keras_parts is not None:
            self._keras_parts.result()

    @property
    def _scoring_parts(self):
        return self._keras_parts.result()[1:]

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    def predict_raw(self, q1s, q2s, batch_size: int = 8192) -> np.ndarray:
        """The model's own output per pair (a distance for siamese, else a probability).

        Every question must be text that is not empty after normalization.
        """
        pairs = Pairs.from_columns(q1s, q2s, self.text_model.text.unicode_form)
        if not pairs.valid.all():
            row = int(np.flatnonzero(~pairs.valid)[0])
            raise ValueError(f"pair {row}: {pairs.errors[row]}")
        return self.raw_for_pairs(pairs.questions, pairs.first, pairs.second, batch_size)

    def raw_for_pairs(
        self, questions: pd.Series, first: np.ndarray, second: np.ndarray, batch_size: int = 8192
    ) -> np.ndarray:
        """Model outputs for pairs given as indices into normalized distinct `questions`."""
        if len(first) == 0:
            return np.zeros(0, dtype=np.float32)
        rows = self.question_rows(self.model_inputs(questions), batch_size)
        return self.raw_from_rows(rows, first, second, batch_size)

    def model_inputs(self, questions: pd.Series):
        """What the model reads per distinct normalized question: TF-IDF rows (`logreg`),
        token ids (`birnn_cnn`) or TF-IDF-weighted embeddings."""
        tokens = self.text_model.tokens(questions)
        kind = self.meta["kind"]
        if kind == "logreg":
            return self.text_model.tfidf(tokens)
        if kind == "birnn_cnn":
            return self.text_model.token_ids(tokens)
        return self.text_model.embed(tokens)[0]

    def question_rows(self, inputs, batch_size: int = 8192):
        """The part of the model that sees one question, run once per distinct question:
        for Keras models the encoding and the head's per-question projections
        (`scoring_parts`); logreg's TF-IDF rows are used as they are."""
        if self.logreg is not None:
            return inputs
        per_question, _ = self._scoring_parts
        return _in_batches(per_question.predict_on_batch, batch_size, inputs)

    def raw_from_rows(
        self, rows, first: np.ndarray, second: np.ndarray, batch_size: int = 8192
    ) -> np.ndarray:
        """Model outputs for pairs given as indices into `question_rows`."""
        if len(first) == 0:
            return np.zeros(0, dtype=np.float32)
        if self.logreg is not None:
            from pipeline.models.logreg import pair_features, predict_proba

            coef, intercept = self.logreg["coef"], float(self.logreg["intercept"])

            def predict(a, b):
                return predict_proba(pair_features(a, b), coef, intercept)
        else:
            _, per_pair = self._scoring_parts

            def predict(a, b):
                return per_pair.predict_on_batch({"a": a, "b": b})

        # pair by pair in batches: memory follows the batch, not the number of pairs
        return _in_batches(predict, batch_size, first, second, gather=rows).ravel()

    def probability_from_raw(self, raw: np.ndarray) -> np.ndarray:
        calibration = self.meta.get("calibration")
        if calibration is None:
            return raw.astype(np.float32)
        logits = calibration["coef"] * raw + calibration["intercept"]
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def predict_proba(self, q1s, q2s, batch_size: int = 8192) -> np.ndarray:
        """P(duplicate) for each pair of raw questions."""
        return self.probability_from_raw(self.predict_raw(q1s, q2s, batch_size))


def _in_batches(predict, batch_size: int, *arrays, gather: np.ndarray | None = None):
    """`predict` over row batches of `arrays` (or of `gather` rows they index), written into
    one output array as they come (no list of parts to concatenate: half the peak memory)."""
    out = None
    for start in range(0, len(arrays[0]), batch_size):
        batch = [a[start : start + batch_size] for a in arrays]
        if gather is not None:
            batch = [gather[rows] for rows in batch]
        result = np.asarray(predict(*batch))
        if out is None:
            out = np.empty((len(arrays[0]), *result.shape[1:]), dtype=np.float32)
        out[start : start + len(result)] = result
    return out


def save_bundle(
    directory: str | Path,
    meta: dict,
    text_model: TextModel,
    keras_model=None,
    logreg: dict | None = None,
) -> None:
    """Write the bundle into a temporary directory, then swap it into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        text_model.save(staging)
        if keras_model is not None:
            keras_model.save(staging / "model.keras")
        if logreg is not None:
            save_npz(staging / "logreg.npz", **logreg)
        import keras

        write_json(
            staging / "bundle.json",
            {
                **meta,
                "format_version": FORMAT_VERSION,
                "dupq_version": __version__,
                "keras_version": keras.__version__,
            },
        )
        os.chmod(staging, 0o755)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def load_bundle(directory: str | Path, wait: bool = True) -> Bundle:
    """Load a bundle; a missing, partial or incompatible one raises BundleError.

    The Keras model (with TensorFlow's import, seconds) loads on a background thread. With
    `wait=False` the bundle comes back as soon as its text model is ready, so the caller can
    read and featurize input meanwhile; a Keras load error is then raised by the first call
    that needs the model.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: model bundle not found (train it with `dvc repro`)")
    meta_path = directory / "bundle.json"
    if not meta_path.exists():
        raise BundleError(f"{directory}: not a model bundle (bundle.json is missing)")
    try:
        meta = read_json(meta_path)
    except ValueError as err:
        raise BundleError(f"{meta_path}: unreadable ({err})") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{directory}: bundle format {version} made by dupq {meta.get('dupq_version', '?')}; "
            f"this dupq {__version__} reads format {FORMAT_VERSION} (retrain the model)"
        )
    kind = meta.get("kind")
    if kind not in KINDS:
        raise BundleError(f"{directory}: unknown model kind {kind!r}")
    needed = [
        "text_model.json",
        "text_model.npz",
        "logreg.npz" if kind == "logreg" else "model.keras",
    ]
    missing = [name for name in needed if not (directory / name).exists()]
    if missing:
        raise BundleError(f"{directory}: incomplete bundle, missing {', '.join(missing)}")
    with _bundle_errors(directory):
        text_model = TextModel.load(directory)
        if kind == "logreg":
            return Bundle(directory, meta, text_model, logreg=load_npz(directory / "logreg.npz"))
    loader = ThreadPoolExecutor(1, thread_name_prefix="load-model")
    keras_parts = loader.submit(_load_keras_parts, directory)
    loader.shutdown(wait=False)  # the thread ends when the model is loaded
    bundle = Bundle(directory, meta, text_model, keras_parts=keras_parts)
    if wait:
        keras_parts.result()
    return bundle


def _load_keras_parts(directory: Path) -> tuple:
    """(model, per_question, per_pair), the scoring parts traced for any batch size."""
    with _bundle_errors(directory):
        import keras

        from pipeline.models.layers import scoring_parts

        model = keras.models.load_model(directory / "model.keras", safe_mode=True, compile=False)
    if not {"encoder", "head"} <= {layer.name for layer in model.layers}:
        raise BundleError(f"{directory}: model.keras has no encoder and head parts (retrain it)")
    per_question, per_pair = scoring_parts(model)
    # the first two batch shapes each trace a graph; after that one graph fits every size
    for rows in (1, 2):
        shape, dtype = per_question.input.shape[1:], per_question.input.dtype
        encoded = per_question.predict_on_batch(np.zeros((rows, *shape), dtype=dtype))
        per_pair.predict_on_batch({"a": encoded, "b": encoded})
    return model, per_question, per_pair


@contextmanager
def _bundle_errors(directory: Path):
    try:
        yield
    except (OSError, ValueError, KeyError) as err:
        raise BundleError(
            f"{directory}: cannot load bundle ({type(err).__name__}: {err})"
        ) from None
