"""`re2`: a text-matching model built for speed at the full release's scale (RE2, Yang et al.
2019, "Simple and Effective Text Matching with Richer Alignment Features").

Per question (run once per distinct question when scoring):
  token ids -> [word vector, idf, optionally a vector of the word's character n-grams]
  -> trainable projection -> a row per token, ids kept.
Per pair, `blocks` times with their own weights (both questions through the same layers):
  input x_n = [x_1, exact match] for the first block, [x_1, exact match, o_{n-1} + o_{n-2}]
  after it (augmented residual connections: the embedding, plus the sum of the two previous
  blocks' outputs) -> convolutional encoder (no recurrence: fast on CPUs) -> alignment of
  [x_n, encoded] with the other question's (attention over its real tokens) -> fusion of
  the token with what it aligned to: G([G1[x, x~], G2[x, x - x~], G3[x, x * x~]]) = o_n.
Then masked max and mean pooling -> [v_a + v_b, |v_a - v_b|, v_a * v_b] -> MLP -> sigmoid:
symmetric by construction, as every layer treats a and b alike. The model takes questions of
any length and ignores padding, so training runs on batches of similar length cut to their
longest question (`pipeline.models.base.length_buckets`): half the work on the full release.
"""

from __future__ import annotations

import keras
from keras import layers

from pipeline.models.base import KerasKind
from pipeline.models.layers import (
    Alignment,
    ExactMatch,
    MaskedPooling,
    QuestionEncoding,
    SplitQuestionEncoding,
    SymmetricPair,
    TokenMask,
    ZeroPadding,
    char_ngram_vectors,
    pair_model,
    word_and_idf,
)
from pipeline.params import Bool, Fraction, Int, Number
from pipeline.text_model import FIRST_WORD_ID, PAD_ID


def encoder(text_model, params: dict) -> keras.Model:
    """Token ids -> (length, embedding_units + 1) rows: projected word vectors + ids.

    Any length is accepted (training cuts each batch to its longest question), and the
    output does not depend on how much padding follows a question's tokens."""
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = word_and_idf(ids, text_model, params["trainable_embeddings"])
    if params["char_ngram_units"]:
        spelling = char_ngram_vectors(ids, text_model, params["char_ngram_units"])
        x = layers.Concatenate(name="token_features_with_spelling")([x, spelling])
    x = layers.Dropout(params["dropout"], name="embedding_dropout")(x)
    x = layers.Dense(params["embedding_units"], activation="relu", name="projection")(x)
    x = layers.LayerNormalization(name="projection_norm")(x)
    return keras.Model(ids, QuestionEncoding(name="question_row")([x, ids]), name="encoder")


class Block:
    """One encode-align-fuse block; its layers are shared by the two questions."""

    def __init__(self, params: dict, n: int):
        units, rate = params["hidden_units"], params["dropout"]
        self.convs = [
            layers.Conv1D(
                units,
                params["kernel_size"],
                padding="same",
                activation="relu",
                name=f"block{n}_conv{i}",
            )
            for i in range(params["conv_layers"])
        ]
        self.dropout = layers.Dropout(rate, name=f"block{n}_dropout")
        self.zero = ZeroPadding(name=f"block{n}_zero_padding")
        self.join = layers.Concatenate(name=f"block{n}_features")
        self.project = layers.Dense(units, activation="relu", name=f"block{n}_align_projection")
        self.align = Alignment(name=f"block{n}_alignment")
        self.difference = layers.Subtract(name=f"block{n}_difference")
        self.product = layers.Multiply(name=f"block{n}_product")
        self.fuse = [
            layers.Dense(units, activation="relu", name=f"block{n}_fuse{i}") for i in (1, 2, 3)
        ]
        self.fused = layers.Concatenate(name=f"block{n}_fused")
        self.pairs = [layers.Concatenate(name=f"block{n}_with_{i}") for i in (1, 2, 3)]
        self.out = layers.Dense(units, activation="relu", name=f"block{n}_output")
        self.norm = layers.LayerNormalization(name=f"block{n}_norm")

    def encode(self, x, mask):
        encoded = x
        for conv in self.convs:
            encoded = self.zero([conv(self.dropout(encoded)), mask])
        return self.join([x, encoded])

    def fuse_with(self, x, aligned, mask):
        parts = [
            self.fuse[0](self.pairs[0]([x, aligned])),
            self.fuse[1](self.pairs[1]([x, self.difference([x, aligned])])),
            self.fuse[2](self.pairs[2]([x, self.product([x, aligned])])),
        ]
        return self.zero([self.norm(self.out(self.dropout(self.fused(parts)))), mask])

    def __call__(self, a, b, mask_a, mask_b):
        a, b = self.encode(a, mask_a), self.encode(b, mask_b)
        aligned_a, aligned_b = self.align([self.project(a), self.project(b), a, b, mask_a, mask_b])
        return self.fuse_with(a, aligned_a, mask_a), self.fuse_with(b, aligned_b, mask_b)


def head(row_shape: tuple, params: dict) -> keras.Model:
    """Two questions' rows -> P(duplicate)."""
    a_row = keras.Input(shape=row_shape, name="a")
    b_row = keras.Input(shape=row_shape, name="b")
    split = SplitQuestionEncoding(name="split_row")
    (a, ids_a), (b, ids_b) = split(a_row), split(b_row)
    token_mask = TokenMask(PAD_ID + 1, name="token_mask")
    mask_a, mask_b = token_mask(ids_a), token_mask(ids_b)
    exact = ExactMatch(FIRST_WORD_ID, name="exact_match")
    embedded = layers.Concatenate(name="embedded_with_match")
    zero = ZeroPadding(name="embedded_zero_padding")  # padding's rows never reach a convolution
    first_a = zero([embedded([a, exact([ids_a, ids_b])]), mask_a])
    first_b = zero([embedded([b, exact([ids_b, ids_a])]), mask_b])
    x_a, x_b = first_a, first_b
    previous: list[tuple] = []  # the blocks' outputs so far
    for n in range(1, params["blocks"] + 1):
        if previous:
            residual = (
                previous[-1]
                if len(previous) == 1
                else tuple(
                    layers.Add(name=f"block{n}_residual_{side}")([previous[-1][i], previous[-2][i]])
                    for i, side in enumerate("ab")
                )
            )
            augment = layers.Concatenate(name=f"block{n}_input")
            x_a, x_b = augment([first_a, residual[0]]), augment([first_b, residual[1]])
        previous.append(Block(params, n)(x_a, x_b, mask_a, mask_b))
    pooling = MaskedPooling(name="pooling")
    v_a, v_b = pooling([previous[-1][0], mask_a]), pooling([previous[-1][1], mask_b])
    x = SymmetricPair(name="symmetric_pair")([v_a, v_b])
    x = layers.Dropout(params["dropout"], name="head_dropout_in")(x)
    x = layers.Dense(params["head_units"], activation="relu", name="head_dense")(x)
    x = layers.Dropout(params["dropout"], name="head_dropout")(x)
    probability = layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")(x)
    return keras.Model([a_row, b_row], probability, name="head")


def build(params: dict, text_model) -> keras.Model:
    question_encoder = encoder(text_model, params)
    pair_head = head(tuple(question_encoder.output.shape[1:]), params)
    model = pair_model(question_encoder, pair_head, name="re2")
    model.compile(
        optimizer=keras.optimizers.Adam(params["learning_rate"], clipnorm=5.0),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


PARAMS = {
    "trainable_embeddings": Bool(),
    "char_ngram_units": Int(minimum=0),
    "embedding_units": Int(),
    "hidden_units": Int(),
    "blocks": Int(),
    "conv_layers": Int(),
    "kernel_size": Int(),
    "dropout": Fraction(),
    "head_units": Int(),
    "learning_rate": Number(),
    "batch_size": Int(),
    "epochs": Int(),
}
KIND = KerasKind("re2", reads="token_ids", build=build, param_fields=PARAMS)
