"""The model registry: one module per model kind in this package, each defining `KIND`.

`train`, `evaluate`, the bundle and the scorer ask `get_kind(name)` what a kind reads, how it
is fitted, saved and loaded, and how its output becomes a probability; none of them names a
model. Adding a model is a module `pipeline/models/<name>.py` with a `KIND` (see
`pipeline.models.base`), a `<name>:` section in params.yaml, an entry in `train.models`, and
its bundle in `train_ensemble`'s deps in dvc.yaml if it may be an ensemble member (a test
checks dvc.yaml against `train.models`).

This module also owns params.yaml's `train` section: the models to train and the settings
every kind's training shares.
"""

from __future__ import annotations

import importlib
import pkgutil

from pipeline.models.base import ModelKind
from pipeline.params import Bool, Choice, ClassWeight, Int, Names, Number, Section

HELPER_MODULES = {"base", "layers"}  # shared code, not model kinds


def kind_names() -> list[str]:
    """Every model kind this package holds (its modules, without importing them)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if info.name not in HELPER_MODULES and not info.name.startswith("_")
    )


def trained_kinds() -> list[str]:
    """The kinds trained on the features (all but the ensemble, which stacks them)."""
    return [name for name in kind_names() if name != "ensemble"]


def get_kind(name: str) -> ModelKind:
    """The kind called `name`; an unknown name is a ValueError listing the known ones."""
    if name not in kind_names():
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(kind_names())})")
    kind = importlib.import_module(f"{__name__}.{name}").KIND
    if kind.name != name:
        raise ValueError(f"pipeline/models/{name}.py declares kind {kind.name!r}")
    return kind


TRAIN = Section(
    "train",
    {
        "models": Names(trained_kinds),
        "seed": Int(0),
        "deterministic": Bool(),
        "class_weight": ClassWeight(),
        "patience": Int(),
        "warmup_epochs": Int(0),
        "lr_schedule": Choice("constant", "plateau", "cosine"),
        "weight_average_epochs": Number(0.0, open_low=False),
        "mixed_precision": Bool(),
        "distribute": Choice("none", "mirrored"),
        "predict_batch": Int(),
    },
)
