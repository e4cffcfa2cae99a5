"""`residual`: the `siamese` tower with its options as params and the "FC last layer" head
[a, b, |a-b|, a*b, distance] -> Dense -> sigmoid, trained with binary cross-entropy.
"""

from __future__ import annotations

import keras

from pipeline.models.base import KerasKind
from pipeline.models.layers import pair_classifier
from pipeline.models.siamese import TOWER_PARAMS, tower_from
from pipeline.params import Choice, Fraction, Int


def build(params: dict, text_model) -> keras.Model:
    """Outputs P(duplicate) per pair."""
    return pair_classifier(
        tower_from(params, text_model.dim), params, name="residual", distance=params["distance"]
    )


PARAMS = {
    **TOWER_PARAMS,
    "distance": Choice("euclidean", "cosine", "none"),
    "head_units": Int(),
    "head_dropout": Fraction(),
}
KIND = KerasKind("residual", reads="embeddings", build=build, param_fields=PARAMS)
