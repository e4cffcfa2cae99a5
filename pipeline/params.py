"""Parameter types and checks: what a params.yaml section may hold, and reading the file.

A leaf module (it imports nothing from `pipeline` but the error types), so every module can
declare the section it owns (`Section`) without import circles: `pipeline.raw_data` owns
`data`, `pipeline.text` owns `text`, each model kind its own section, and so on. Each stage
says which keys of which sections it reads (`pipeline.stages._cli`), is handed only those,
and lists exactly those in `dvc.yaml` (a test checks it).

A typo (`evaluate.threshold_metric: auc`, `features.weighting: tf-idf`, an unknown key) stops
the stage at once with one line naming the key, the value and what is allowed, not minutes
later with a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ParamsError


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


class Texts(Field):
    """A non-empty string, or a non-empty list of them."""

    def check(self, key, value):
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise ParamsError(f"{key}: {value!r} is not a non-empty string or a list of them")


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


class Section:
    """One params.yaml section's schema: its keys and their types, plus an optional rule across
    keys (`rule(values)` raises ParamsError)."""

    def __init__(self, name: str, fields: dict[str, Field], rule: Callable | None = None):
        self.name, self.fields, self.rule = name, fields, rule

    def check(self, params: dict) -> None:
        check_section(self.name, params.get(self.name), self.fields)
        if self.rule:
            self.rule(params[self.name])

    def __repr__(self) -> str:
        return f"Section({self.name!r})"


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


def read_params(path: str | Path) -> dict:
    """The whole params file as a mapping of sections (unchecked: each stage checks its own)."""
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
    return params


def project_setting(section: str, key: str, fallback: Any, path: str | Path = "params.yaml") -> Any:
    """`section.key` from the project's params.yaml when a command runs in the project (its
    default points at the pipeline's own outputs), else `fallback`: also when the value there
    is not of the fallback's type, so a bad params.yaml never breaks a command's defaults."""
    try:
        value = read_params(path)[section][key]
    except (ParamsError, KeyError, TypeError):
        return fallback
    same_type = isinstance(value, type(fallback)) and not isinstance(value, bool)
    return value if same_type else fallback
