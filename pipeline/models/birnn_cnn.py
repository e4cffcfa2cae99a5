"""`birnn_cnn`: token ids -> Embedding (from the vectors stage) -> BiGRU/BiLSTM and Conv1D
branches, each max- and mean-pooled -> shared encoding -> [a, b, |a-b|, a*b] -> sigmoid.

The recurrent layer keeps Keras' defaults (tanh, sigmoid gate, no recurrent dropout, no
unroll) so TensorFlow runs the cuDNN kernel on a GPU.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from pipeline.models.layers import pair_classifier


def encoder(embedding_matrix: np.ndarray, max_len: int, params: dict) -> keras.Model:
    tokens = keras.Input(shape=(max_len,), dtype="int32", name="token_ids")
    x = layers.Embedding(
        embedding_matrix.shape[0],
        embedding_matrix.shape[1],
        embeddings_initializer=keras.initializers.Constant(embedding_matrix),
        trainable=params["trainable_embeddings"],
        name="embedding",
    )(tokens)
    x = layers.SpatialDropout1D(params.get("embedding_dropout", 0.0), name="embedding_dropout")(x)
    rnn_class = {"gru": layers.GRU, "lstm": layers.LSTM}[params["rnn"]]
    rnn = layers.Bidirectional(
        rnn_class(params["rnn_units"], return_sequences=True), name=f"bi{params['rnn']}"
    )(x)
    conv = layers.Conv1D(
        params["conv_filters"],
        params["conv_kernel"],
        padding="same",
        activation="relu",
        name="conv1d",
    )(x)
    pooled = [
        layers.GlobalMaxPooling1D(name="rnn_max")(rnn),
        layers.GlobalAveragePooling1D(name="rnn_mean")(rnn),
        layers.GlobalMaxPooling1D(name="conv_max")(conv),
        layers.GlobalAveragePooling1D(name="conv_mean")(conv),
    ]
    x = layers.Concatenate(name="pooled")(pooled)
    x = layers.Dense(params["dense_units"], activation="relu", name="encoding")(x)
    return keras.Model(tokens, x, name="encoder")


def build_birnn_cnn(params: dict, embedding_matrix: np.ndarray, max_len: int) -> keras.Model:
    return pair_classifier(encoder(embedding_matrix, max_len, params), params, name="birnn_cnn")
