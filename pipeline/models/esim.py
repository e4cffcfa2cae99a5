"""`esim`: a cross-attention model that aligns the words of one question with the other's
(ESIM, Chen et al. 2017; its feed-forward compare is decomposable attention's, Parikh et al.
2016).

Per question (the encoder, run once per distinct question when scoring):
  token ids -> [frozen word vector, idf] -> trainable projection -> BiRNN -> a row per token,
  the token id kept in the row's last channel.
Per pair (the head):
  soft alignment a~ = attention of each token of a over the tokens of b (padding masked out)
  -> enhancement [a, a~, a - a~, a * a~, exact match] -> projection -> compose (a second BiRNN,
  or a feed-forward layer) -> masked max and mean pooling = v_a; the same for b with shared
  layers -> [v_a + v_b, |v_a - v_b|, v_a * v_b] -> MLP -> sigmoid.
Swapping the two questions swaps v_a and v_b, which the last step does not see: the model is
symmetric by construction.
"""

from __future__ import annotations

import keras
from keras import layers

from pipeline.models.base import (
    KerasKind,
)
from pipeline.models.birnn_cnn import RNNS
from pipeline.models.layers import (
    ExactMatch,
    MaskedPooling,
    QuestionEncoding,
    SoftAlignment,
    SplitQuestionEncoding,
    SymmetricPair,
    TokenMask,
    pair_model,
    word_and_idf,
)
from pipeline.params import Bool, Choice, Fraction, Int, Number
from pipeline.text_model import FIRST_WORD_ID, PAD_ID

COMPARES = ("rnn", "dense")


def birnn(params: dict, name: str) -> layers.Bidirectional:
    return layers.Bidirectional(
        RNNS[params["rnn"]](params["rnn_units"], return_sequences=True), name=name
    )


def encoder(text_model, params: dict) -> keras.Model:
    """Token ids -> (length, 2 * rnn_units + 1) rows: contextual token encodings + ids.

    Any length is accepted (training cuts each batch to its longest question): the BiRNN
    skips the masked padding, so the output does not depend on how much of it follows."""
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    mask = TokenMask(PAD_ID + 1, name="token_mask")(ids)
    x = word_and_idf(ids, text_model, params["trainable_embeddings"])
    x = layers.Dropout(params["dropout"], name="embedding_dropout")(x)
    x = layers.Dense(params["projection_units"], activation="relu", name="projection")(x)
    x = birnn(params, f"encode_bi{params['rnn']}")(x, mask=mask)
    return keras.Model(ids, QuestionEncoding(name="question_row")([x, ids]), name="encoder")


def head(row_shape: tuple, params: dict) -> keras.Model:
    """Two questions' rows -> P(duplicate)."""
    a_row = keras.Input(shape=row_shape, name="a")
    b_row = keras.Input(shape=row_shape, name="b")
    split = SplitQuestionEncoding(name="split_row")
    (a, ids_a), (b, ids_b) = split(a_row), split(b_row)
    token_mask = TokenMask(PAD_ID + 1, name="token_mask")
    mask_a, mask_b = token_mask(ids_a), token_mask(ids_b)
    aligned_a, aligned_b = SoftAlignment(name="soft_alignment")([a, b, mask_a, mask_b])
    exact = ExactMatch(FIRST_WORD_ID, name="exact_match")

    difference, product = layers.Subtract(name="difference"), layers.Multiply(name="product")
    enhance = layers.Concatenate(name="enhance")
    project = layers.Dense(params["projection_units"], activation="relu", name="compare_projection")
    dropout = layers.Dropout(params["dropout"], name="compare_dropout")
    if params["compare"] == "rnn":
        compose = birnn(params, f"compose_bi{params['rnn']}")
    else:
        compose = layers.Dense(2 * params["rnn_units"], activation="relu", name="compose_dense")
    pooling = MaskedPooling(name="pooling")

    def compare(x, aligned, ids_x, ids_other, mask):
        match = exact([ids_x, ids_other])
        m = enhance([x, aligned, difference([x, aligned]), product([x, aligned]), match])
        m = dropout(project(m))
        m = compose(m, mask=mask) if params["compare"] == "rnn" else compose(m)
        return pooling([m, mask])

    v_a = compare(a, aligned_a, ids_a, ids_b, mask_a)
    v_b = compare(b, aligned_b, ids_b, ids_a, mask_b)
    x = SymmetricPair(name="symmetric_pair")([v_a, v_b])
    x = layers.Dense(params["head_units"], activation="relu", name="head_dense")(x)
    x = layers.Dropout(params["head_dropout"], name="head_dropout")(x)
    probability = layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")(x)
    return keras.Model([a_row, b_row], probability, name="head")


def build(params: dict, text_model) -> keras.Model:
    question_encoder = encoder(text_model, params)
    pair_head = head(tuple(question_encoder.output.shape[1:]), params)
    model = pair_model(question_encoder, pair_head, name="esim")
    model.compile(
        optimizer=keras.optimizers.Adam(params["learning_rate"], clipnorm=params["clipnorm"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


PARAMS = {
    "rnn": Choice(*RNNS),
    "trainable_embeddings": Bool(),
    "projection_units": Int(),
    "rnn_units": Int(),
    "compare": Choice(*COMPARES),
    "dropout": Fraction(),
    "head_units": Int(),
    "head_dropout": Fraction(),
    "learning_rate": Number(),
    "clipnorm": Number(),
    "batch_size": Int(),
    "epochs": Int(),
}
KIND = KerasKind("esim", reads="token_ids", build=build, param_fields=PARAMS)
