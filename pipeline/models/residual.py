"""`residual`: the `siamese` tower with its options as params and the "FC last layer" head
[a, b, |a-b|, a*b, distance] -> Dense -> sigmoid, trained with binary cross-entropy.
"""

from __future__ import annotations

import keras

from pipeline.models.base import KerasKind, check_choice, check_fractions, check_positive_ints
from pipeline.models.layers import pair_classifier
from pipeline.models.siamese import check_tower_params, tower_from


def build(params: dict, text_model) -> keras.Model:
    """Outputs P(duplicate) per pair."""
    return pair_classifier(
        tower_from(params, text_model.dim), params, name="residual", distance=params["distance"]
    )


class Residual(KerasKind):
    def check_params(self, params: dict) -> None:
        check_tower_params(self.name, params)
        check_choice(self.name, params, "distance", ("euclidean", "cosine", "none"))
        check_positive_ints(self.name, params, "head_units")
        check_fractions(self.name, params, "head_dropout")


KIND = Residual("residual", reads="embeddings", build=build)
