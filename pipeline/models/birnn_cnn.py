"""`birnn_cnn`: token ids -> Embedding (from the vectors stage) -> BiGRU/BiLSTM and Conv1D
branches, each max- and mean-pooled over the real tokens -> shared encoding ->
[a, b, |a-b|, a*b] -> sigmoid.

The recurrent layer keeps Keras' defaults (tanh, sigmoid gate, no recurrent dropout, no
unroll) so TensorFlow runs the cuDNN kernel on a GPU; ids are post-padded, as cuDNN's masks
require.
"""

from __future__ import annotations

import keras
from keras import layers

from pipeline.models.base import (
    KerasKind,
)
from pipeline.models.layers import MaskedPooling, TokenMask, pair_classifier
from pipeline.params import Bool, Choice, Fraction, Int, Number
from pipeline.text_model import PAD_ID

RNNS = {"gru": layers.GRU, "lstm": layers.LSTM}


def encoder(embedding_matrix, max_len: int, params: dict) -> keras.Model:
    tokens = keras.Input(shape=(max_len,), dtype="int32", name="token_ids")
    mask = TokenMask(PAD_ID + 1, name="token_mask")(tokens)
    x = layers.Embedding(
        embedding_matrix.shape[0],
        embedding_matrix.shape[1],
        embeddings_initializer=keras.initializers.Constant(embedding_matrix),
        trainable=params["trainable_embeddings"],
        name="embedding",
    )(tokens)
    x = layers.SpatialDropout1D(params["embedding_dropout"], name="embedding_dropout")(x)
    rnn = layers.Bidirectional(
        RNNS[params["rnn"]](params["rnn_units"], return_sequences=True), name=f"bi{params['rnn']}"
    )(x, mask=mask)
    conv = layers.Conv1D(
        params["conv_filters"],
        params["conv_kernel"],
        padding="same",
        activation="relu",
        name="conv1d",
    )(x)
    pooled = [
        MaskedPooling(name="rnn_pooling")([rnn, mask]),
        MaskedPooling(name="conv_pooling")([conv, mask]),
    ]
    x = layers.Concatenate(name="pooled")(pooled)
    x = layers.Dense(params["dense_units"], activation="relu", name="encoding")(x)
    return keras.Model(tokens, x, name="encoder")


def build(params: dict, text_model) -> keras.Model:
    model_encoder = encoder(text_model.embedding_matrix(), text_model.max_len, params)
    return pair_classifier(model_encoder, params, name="birnn_cnn")


PARAMS = {
    "rnn": Choice(*RNNS),
    "rnn_units": Int(),
    "conv_filters": Int(),
    "conv_kernel": Int(),
    "dense_units": Int(),
    "trainable_embeddings": Bool(),
    "embedding_dropout": Fraction(),
    "head_units": Int(),
    "head_dropout": Fraction(),
    "learning_rate": Number(),
    "batch_size": Int(),
    "epochs": Int(),
}
KIND = KerasKind("birnn_cnn", reads="token_ids", build=build, param_fields=PARAMS)
