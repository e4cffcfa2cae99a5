"""params.yaml, the one place where every pipeline knob lives: read it, check each section a
stage uses against its declared types before any work, and run stage CLIs.

A typo (`evaluate.threshold_metric: auc`, `features.weighting: tf-idf`, an unknown key) stops
the stage at once with one line naming the key, the value and what is allowed, not minutes
later with a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ParamsError, UserError

DEFAULT_PARAMS = Path("params.yaml")


# -- field types: each takes (key, value) and raises ParamsError naming both -----------------
class Field:
    def check(self, key: str, value: Any) -> None:
        raise NotImplementedError


class Int(Field):
    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def check(self, key, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise ParamsError(f"{key}: {value!r} is not a whole number of {self.minimum} or more")


class Number(Field):
    """A finite number in [low, high) (`low` excluded too when `open_low`)."""

    def __init__(self, low: float = 0.0, high: float = math.inf, open_low: bool = True):
        self.low, self.high, self.open_low = low, high, open_low

    def check(self, key, value):
        number = not isinstance(value, bool) and isinstance(value, int | float)
        ok = number and math.isfinite(value) and value < self.high
        ok = ok and (value > self.low if self.open_low else value >= self.low)
        if not ok:
            bracket = "(" if self.open_low else "["
            high = "inf" if self.high == math.inf else f"{self.high:g}"
            raise ParamsError(f"{key}: {value!r} is not a number in {bracket}{self.low:g}, {high})")


class Fraction(Number):
    """A share in [0, 1)."""

    def __init__(self):
        super().__init__(0.0, 1.0, open_low=False)


class Choice(Field):
    def __init__(self, *choices):
        self.choices = choices

    def check(self, key, value):
        same_type = [c for c in self.choices if type(c) is type(value)]
        if value not in same_type:
            allowed = ", ".join(map(str, self.choices))
            raise ParamsError(f"{key}: {value!r} is not one of {allowed}")


class Bool(Choice):
    def __init__(self):
        super().__init__(True, False)


class Text(Field):
    def check(self, key, value):
        if not isinstance(value, str) or not value.strip():
            raise ParamsError(f"{key}: {value!r} is not a non-empty string")


class Optional(Field):
    """null or the inner field."""

    def __init__(self, inner: Field):
        self.inner = inner

    def check(self, key, value):
        if value is not None:
            self.inner.check(key, value)


class Sha256(Field):
    def check(self, key, value):
        if not (isinstance(value, str) and len(value) == 64):
            raise ParamsError(f"{key}: {value!r} is not a sha256 (64 hex digits) or null")
        try:
            int(value, 16)
        except ValueError:
            raise ParamsError(f"{key}: {value!r} is not a sha256 (64 hex digits) or null") from None


class Names(Field):
    """A list of distinct names, each one of `choices` (a callable, so it can be the registry)."""

    def __init__(self, choices: Callable[[], list[str]], minimum: int = 1):
        self.choices, self.minimum = choices, minimum

    def check(self, key, value):
        allowed = self.choices()
        if (
            not isinstance(value, list)
            or len(value) < self.minimum
            or len(set(map(str, value))) != len(value)
        ):
            raise ParamsError(
                f"{key}: {value!r} is not a list of {self.minimum} or more distinct names "
                f"from {', '.join(allowed)}"
            )
        unknown = [name for name in value if name not in allowed]
        if unknown:
            raise ParamsError(f"{key}: {unknown} not among {', '.join(allowed)}")


class OneOf(Field):
    """One name from `choices` (a callable, so it can be the model registry)."""

    def __init__(self, choices: Callable[[], list[str]]):
        self.choices = choices

    def check(self, key, value):
        allowed = self.choices()
        if value not in allowed:
            raise ParamsError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


class SplitValues(Field):
    """A mapping of a split column's values to train/val/test, each of the three reached."""

    def check(self, key, value):
        targets = ("train", "val", "test")
        ok = isinstance(value, dict) and value and all(isinstance(k, str) for k in value)
        if not ok or set(value.values()) != set(targets):
            raise ParamsError(
                f"{key}: {value!r} is not a mapping of the column's values to "
                "train, val and test (each used)"
            )


class ClassWeight(Field):
    def check(self, key, value):
        if value is None or value == "balanced":
            return
        ok = isinstance(value, dict) and set(value) == {0, 1}
        ok = ok and all(
            not isinstance(w, bool) and isinstance(w, int | float) and w > 0 for w in value.values()
        )
        if not ok:
            raise ParamsError(
                f"{key}: {value!r} is not null, balanced, or {{0: w0, 1: w1}} (w > 0)"
            )


def _all_kinds() -> list[str]:
    from pipeline.models import kind_names

    return kind_names()


def _trained_kinds() -> list[str]:
    from pipeline.models import kind_names

    return [name for name in kind_names() if name != "ensemble"]


# -- the sections of params.yaml -------------------------------------------------------------
SECTIONS: dict[str, dict[str, Field]] = {
    "data": {
        "source": Text(),
        "url": Text(),
        "sha256": Optional(Sha256()),
        "expected_rows": Optional(Int()),
        "raw_dir": Text(),
        "processed_dir": Text(),
        "report": Text(),
        "min_chars": Int(0),
        "invalid_labels": Choice("error", "drop"),
        "encoding_errors": Choice("strict", "replace"),
        "drop_duplicate_pairs": Bool(),
    },
    "demo": {
        "n_pairs": Int(),
        "positive_rate": Number(0.0, 1.0),
        "seed": Int(0),
        "label_noise": Number(0.0, 0.5, open_low=False),
    },
    "split": {
        "strategy": Choice("random", "question_disjoint", "column"),
        "column": Text(),
        "column_values": SplitValues(),
        "seed": Int(0),
        "train": Number(0.0, 1.0),
        "val": Number(0.0, 1.0),
        "test": Number(0.0, 1.0),
    },
    "text": {
        "lowercase": Bool(),
        "unicode_form": Choice("NFKC", "NFC", "NFKD", "NFD"),
    },
    "vectors": {
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
        "output": Text(),
        "report": Text(),
    },
    "features": {
        "weighting": Choice("tfidf", "idf", "mean"),
        "sublinear_tf": Bool(),
        "min_df": Int(),
        "max_features": Optional(Int()),
        "max_len": Int(),
        "dir": Text(),
        "report": Text(),
    },
    "train": {
        "models": Names(_trained_kinds),
        "seed": Int(0),
        "deterministic": Bool(),
        "class_weight": ClassWeight(),
        "patience": Int(),
        "mixed_precision": Bool(),
        "distribute": Choice("none", "mirrored"),
        "predict_batch": Int(),
        "models_dir": Text(),
        "live_dir": Text(),
    },
    "index": {
        "questions": Optional(Text()),
        "question_col": Text(),
        "id_col": Optional(Text()),
        "model": OneOf(_all_kinds),
        "vectors": Choice("tfidf", "embedding"),
        "tfidf_dim": Int(),
        "seed": Int(0),
        "kind": Choice("hnsw", "flat"),
        "hnsw_m": Int(2),
        "ef_construction": Int(),
        "ef_search": Int(),
        "candidates": Int(),
        "top_k": Int(),
        "dir": Text(),
        "metrics": Text(),
    },
    "evaluate": {
        "threshold_metric": Choice("accuracy", "f1"),
        "metrics_dir": Text(),
        "plots_dir": Text(),
        "report": Text(),
    },
}


def check_section(name: str, values: Any, fields: dict[str, Field]) -> None:
    """Every declared key present and of its type, and no key that nothing reads."""
    if not isinstance(values, dict):
        raise ParamsError(f"{name}: the section is missing or not a mapping")
    missing = [key for key in fields if key not in values]
    if missing:
        raise ParamsError(f"{name}: missing key(s) {', '.join(missing)}")
    unknown = [str(key) for key in values if key not in fields]
    if unknown:
        raise ParamsError(
            f"{name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(fields)})"
        )
    for key, field in fields.items():
        field.check(f"{name}.{key}", values[key])


def check_params(params: dict, sections: tuple[str, ...]) -> None:
    """Check the named sections; a model kind's section is checked against its kind."""
    for name in sections:
        if name in SECTIONS:
            check_section(name, params.get(name), SECTIONS[name])
        else:
            from pipeline.models import get_kind

            kind = get_kind(name)
            check_section(name, params.get(name), kind.param_fields)
            kind.check_params(params[name], params)
    if "split" in sections:
        split = params["split"]
        total = split["train"] + split["val"] + split["test"]
        if not math.isclose(total, 1.0):
            raise ParamsError(f"split: train + val + test must be 1, got {total:g}")


def load_params(path: str | Path = DEFAULT_PARAMS, sections: tuple[str, ...] = ()) -> dict:
    """The whole params file, with `sections` checked (a ParamsError names the first problem)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} not found (run from the project root)")
    try:
        with path.open(encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: not a mapping of sections")
    try:
        check_params(params, sections)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return params


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in (
        "gensim",
        "smart_open",
        "absl",
        "faiss",
    ):  # per-line chatter drowns the stage logs
        logging.getLogger(noisy).setLevel(logging.ERROR)


def run_stage(
    stage: str,
    description: str,
    run: Callable,
    sections: tuple[str, ...],
    argv: list[str] | None = None,
    per_model: bool = False,
) -> None:
    """The CLI every stage shares: `[--params FILE]` (and `--model NAME` for per-model stages).

    Params are checked before any work; a UserError (bad file, param or bundle) is one line
    on stderr and exit status 2, with no traceback.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m pipeline.stages.{stage}", description=description
    )
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="params file (params.yaml)")
    if per_model:
        from pipeline.models import kind_names

        parser.add_argument("--model", required=True, choices=kind_names(), help="which model")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        if per_model:
            run(load_params(args.params, (*sections, args.model)), args.model)
        else:
            run(load_params(args.params, sections))
    except UserError as err:
        print(f"{stage}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
