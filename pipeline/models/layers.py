"""Layers, losses and metrics shared by the Keras models, registered so that bundles load
with `safe_mode=True` (no Lambda layers, no pickled code)."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from keras import ops

from pipeline.text_model import FIRST_WORD_ID

PACKAGE = "dupq"


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairDistance(keras.layers.Layer):
    """Distance between two encodings: `euclidean` or `cosine` (1 - cosine similarity)."""

    def __init__(self, kind: str = "euclidean", **kwargs):
        super().__init__(**kwargs)
        if kind not in ("euclidean", "cosine"):
            raise ValueError(f"distance must be euclidean or cosine, got {kind!r}")
        self.kind = kind

    def call(self, inputs):
        a, b = inputs
        if self.kind == "euclidean":
            squared = ops.sum(ops.square(a - b), axis=-1, keepdims=True)
            return ops.sqrt(ops.maximum(squared, keras.config.epsilon()))
        a = a / ops.maximum(ops.norm(a, axis=-1, keepdims=True), keras.config.epsilon())
        b = b / ops.maximum(ops.norm(b, axis=-1, keepdims=True), keras.config.epsilon())
        return 1.0 - ops.sum(a * b, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairInteractions(keras.layers.Layer):
    """[|a - b|, a * b]: the per-pair part of the "FC last layer" input [a, b, |a-b|, a*b]."""

    def call(self, inputs):
        a, b = inputs
        return ops.concatenate([ops.abs(a - b), a * b], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenMask(keras.layers.Layer):
    """Token ids -> bool mask of the real tokens (ids >= `first_id`; 0 is padding)."""

    def __init__(self, first_id: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.first_id = first_id

    def call(self, ids):
        return ops.greater_equal(ids, self.first_id)

    def get_config(self):
        return {**super().get_config(), "first_id": self.first_id}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedPooling(keras.layers.Layer):
    """[sequence, mask] -> [max, mean] over the real tokens only (padding never counts)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # takes its mask as an input; passes none on

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs):
        x, mask = inputs
        keep = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        count = ops.maximum(ops.sum(keep, axis=1), 1.0)
        mean = ops.sum(x * keep, axis=1) / count
        lowest = ops.cast(-1e4, x.dtype)  # below any activation, and finite in float16
        maximum = ops.max(ops.where(keep > 0, x, lowest), axis=1)
        maximum = ops.where(ops.sum(keep, axis=1) > 0, maximum, ops.zeros_like(maximum))
        return ops.concatenate([maximum, mean], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftAlignment(keras.layers.Layer):
    """ESIM's soft alignment: [a, b, mask_a, mask_b] -> [a~, b~].

    e = a b^T; a~_i is b's tokens weighted by softmax_j(e_ij) over b's real tokens, and b~_j
    is a's tokens weighted by softmax_i(e_ij) over a's real tokens: padding gets no weight.
    """

    def call(self, inputs):
        a, b, mask_a, mask_b = inputs
        scores = ops.matmul(a, ops.transpose(b, (0, 2, 1)))  # (batch, len_a, len_b)
        a_weights = _masked_softmax(scores, ops.expand_dims(mask_b, 1), axis=2)
        b_weights = _masked_softmax(scores, ops.expand_dims(mask_a, 2), axis=1)
        aligned_a = ops.matmul(a_weights, b)
        aligned_b = ops.matmul(ops.transpose(b_weights, (0, 2, 1)), a)
        return [aligned_a, aligned_b]


@keras.saving.register_keras_serializable(package=PACKAGE)
class Alignment(keras.layers.Layer):
    """RE2's alignment: [key_a, key_b, a, b, mask_a, mask_b] -> [a~, b~].

    Like SoftAlignment, but the attention scores come from projected keys (e = k_a k_b^T /
    sqrt(width), which keeps the softmax from saturating) while what is aligned are the
    tokens' full features; padding gets no weight.
    """

    def call(self, inputs):
        key_a, key_b, a, b, mask_a, mask_b = inputs
        scale = ops.sqrt(ops.cast(ops.shape(key_a)[-1], key_a.dtype))  # as in scaled attention
        scores = ops.matmul(key_a, ops.transpose(key_b, (0, 2, 1))) / scale
        a_weights = _masked_softmax(scores, ops.expand_dims(mask_b, 1), axis=2)
        b_weights = _masked_softmax(scores, ops.expand_dims(mask_a, 2), axis=1)
        return [ops.matmul(a_weights, b), ops.matmul(ops.transpose(b_weights, (0, 2, 1)), a)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroPadding(keras.layers.Layer):
    """[sequence, mask] -> the sequence with padding positions set to 0, so that a
    convolution or a later block never reads what padding was turned into."""

    def call(self, inputs):
        x, mask = inputs
        return x * ops.expand_dims(ops.cast(mask, x.dtype), -1)


def _masked_softmax(scores, mask, axis: int):
    """Softmax over the unmasked entries; masked ones get exactly 0 (all masked: all 0)."""
    scores = ops.where(mask, scores, ops.full_like(scores, float("-inf")))
    top = ops.max(scores, axis=axis, keepdims=True)
    top = ops.where(ops.isfinite(top), top, ops.zeros_like(top))
    weights = ops.exp(scores - top)
    return weights / ops.maximum(ops.sum(weights, axis=axis, keepdims=True), 1e-6)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ExactMatch(keras.layers.Layer):
    """[ids_a, ids_b] -> (batch, len_a, 1): 1 where a's token is a known word that also
    occurs in b. Unknown words (OOV_ID) and padding never match."""

    def __init__(self, first_word_id: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.first_word_id = first_word_id

    def call(self, inputs):
        ids_a, ids_b = inputs
        same = ops.equal(ops.expand_dims(ids_a, 2), ops.expand_dims(ids_b, 1))
        same = ops.logical_and(same, ops.expand_dims(ids_b >= self.first_word_id, 1))
        return ops.expand_dims(ops.cast(ops.any(same, axis=2), "float32"), -1)

    def get_config(self):
        return {**super().get_config(), "first_word_id": self.first_word_id}


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuestionEncoding(keras.layers.Layer):
    """[encoded tokens (batch, len, width), ids (batch, len)] -> (batch, len, width + 1), the
    ids in the last channel, so a pair's part can mask and match tokens from the rows alone.
    Always float32: ids are exact in float32 up to 2^24."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.supports_masking = True  # the ids carry the mask on; Keras' one stops here

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs):
        encoded, ids = inputs
        ids = ops.expand_dims(ops.cast(ids, "float32"), -1)
        return ops.concatenate([ops.cast(encoded, "float32"), ids], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SplitQuestionEncoding(keras.layers.Layer):
    """QuestionEncoding's inverse: row -> [encoded tokens, int32 ids]."""

    def call(self, row):
        return [row[..., :-1], ops.cast(ops.round(row[..., -1]), "int32")]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SymmetricPair(keras.layers.Layer):
    """[u, v] -> [u + v, |u - v|, u * v]: the same for (u, v) and (v, u)."""

    def call(self, inputs):
        u, v = inputs
        return ops.concatenate([u + v, ops.abs(u - v), u * v], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
def contrastive_loss(y_true, distance, margin: float = 1.0):
    """Contrastive loss (Hadsell, Chopra & LeCun 2006).

    Label convention: duplicate = 1 = small distance. Duplicates pay distance^2; non-duplicates
    pay max(margin - distance, 0)^2, so they are pushed at least `margin` apart.
    """
    y_true = ops.cast(ops.reshape(y_true, ops.shape(distance)), distance.dtype)
    similar = y_true * ops.square(distance)
    dissimilar = (1.0 - y_true) * ops.square(ops.maximum(margin - distance, 0.0))
    return ops.mean(similar + dissimilar, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ContrastiveLoss(keras.losses.Loss):
    def __init__(self, margin: float = 1.0, name: str = "contrastive", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        return contrastive_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DistanceAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy of "duplicate when distance < threshold" (the original work used 0.5)."""

    def __init__(self, threshold: float = 0.5, name: str = "accuracy", **kwargs):
        super().__init__(fn=_distance_accuracy, name=name, threshold=threshold, **kwargs)
        self.threshold = threshold

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


def _distance_accuracy(y_true, distance, threshold=0.5):
    y_true = ops.cast(ops.reshape(y_true, ops.shape(distance)), "float32")
    predicted = ops.cast(distance < threshold, "float32")
    return ops.mean(ops.cast(ops.equal(predicted, y_true), "float32"), axis=-1)


def word_and_idf(ids, text_model, trainable: bool):
    """Per token: [its word vector (from the vectors stage), its train-split idf], the input
    of the cross-attention models; the idf is never trained, the vectors when asked."""
    matrix = text_model.embedding_matrix()
    vectors = keras.layers.Embedding(
        *matrix.shape,
        embeddings_initializer=keras.initializers.Constant(matrix),
        trainable=trainable,
        name="embedding",
    )(ids)
    idf = text_model.idf_by_id()
    token_idf = keras.layers.Embedding(
        len(idf),
        1,
        embeddings_initializer=keras.initializers.Constant(idf.reshape(-1, 1)),
        trainable=False,
        name="idf",
    )(ids)
    return keras.layers.Concatenate(name="token_features")([vectors, token_idf])


def char_ngram_table(
    words, sizes: tuple[int, ...] = (3, 4, 5), per_word: int = 24, min_words: int = 2
) -> tuple[np.ndarray, int]:
    """Each word's character n-grams (of "<word>", fastText's boundary marks) as ids:
    ((len(words), per_word) int32, 0 where a word has fewer; the number of ids + 1).

    Only n-grams that occur in at least `min_words` words get an id, so an n-gram vector is
    shared knowledge, never one word's own; a word keeps its first `per_word` n-grams, the
    shortest first (every n-gram of words up to 8 characters fits in 24)."""
    marked = pc.binary_join_element_wise("<", pa.array(words, pa.string()), ">", "")
    lengths = pc.utf8_length(marked).to_numpy(zero_copy_only=False)
    rows, grams = [], []
    for n in sizes:
        for start in range(int(lengths.max(initial=0)) - n + 1):
            holding = np.flatnonzero(lengths >= start + n)
            piece = pc.utf8_slice_codeunits(marked.take(holding), start, start + n)
            rows.append(holding)
            grams.append(piece.to_numpy(zero_copy_only=False))
    table = np.zeros((len(words), per_word), np.int32)
    if not rows:
        return table, 1
    rows, grams = np.concatenate(rows), np.concatenate(grams)
    codes, _ = pd.factorize(grams)
    pairs = np.unique(codes.astype(np.int64) * len(words) + rows)  # distinct (n-gram, word)
    words_holding = np.bincount(pairs // len(words))
    shared = words_holding[codes] >= min_words
    ids = np.cumsum(words_holding >= min_words)[codes[shared]]  # 1, 2, ... in first-seen order
    rows = rows[shared]
    order = np.argsort(rows, kind="stable")  # per word, the order the n-grams were made in
    rows, ids = rows[order], ids[order]
    slot = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = slot < per_word
    table[rows[keep], slot[keep]] = ids[keep]
    return table, int(ids.max(initial=0)) + 1


@keras.saving.register_keras_serializable(package=PACKAGE)
class CharNgramVectors(keras.layers.Layer):
    """Token ids -> the mean of trainable vectors of the word's character n-grams (zero for
    padding and unknown words): words that share no word vector, or have none, still share
    their spelling. The id table is a non-trainable weight, saved with the model."""

    def __init__(self, words: int, per_word: int, ngrams: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.words, self.per_word, self.ngrams, self.units = words, per_word, ngrams, units

    def build(self, ids_shape):
        self.table = self.add_weight(
            shape=(self.words, self.per_word),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            name="ngram_ids",
        )
        self.vectors = self.add_weight(
            shape=(self.ngrams, self.units),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05),
            name="ngram_vectors",
        )

    def call(self, ids):
        grams = ops.take(self.table, ids, axis=0)  # (batch, len, per_word)
        present = ops.expand_dims(ops.cast(grams > 0, self.compute_dtype), -1)
        summed = ops.sum(ops.take(self.vectors, grams, axis=0) * present, axis=-2)
        return summed / ops.maximum(ops.sum(present, axis=-2), 1.0)

    def get_config(self):
        return {
            **super().get_config(),
            "words": self.words,
            "per_word": self.per_word,
            "ngrams": self.ngrams,
            "units": self.units,
        }


def char_ngram_vectors(ids, text_model, units: int):
    """Per token: the `units`-wide vector of its spelling (`CharNgramVectors`) for the
    vocabulary of `text_model`; ids below FIRST_WORD_ID get none."""
    table, ngrams = char_ngram_table(text_model.vocab)
    table = np.vstack([np.zeros((FIRST_WORD_ID, table.shape[1]), np.int32), table])
    layer = CharNgramVectors(*table.shape, ngrams, units, name="char_ngrams")
    vectors = layer(ids)
    layer.table.assign(table)
    return vectors


def pair_model(encoder: keras.Model, head: keras.Model, name: str) -> keras.Model:
    """q1, q2 -> head([encoder(q1), encoder(q2)]), with the shared parts named `encoder` and
    `head` so that scoring can run the encoder once per distinct question and the head once
    per pair (see `pipeline.bundle`)."""
    shape, dtype = tuple(encoder.input.shape[1:]), encoder.input.dtype
    q1 = keras.Input(shape=shape, dtype=dtype, name="q1")
    q2 = keras.Input(shape=shape, dtype=dtype, name="q2")
    return keras.Model([q1, q2], head([encoder(q1), encoder(q2)]), name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LastAxisSlice(keras.layers.Layer):
    """row -> row[..., start:stop]: one network's part of an averaged model's encoding."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, row):
        return row[..., self.start : self.stop]

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def averaged(models: list[keras.Model], name: str) -> keras.Model:
    """One pair model whose output is the mean of `models`' outputs (networks of one kind
    trained with different seeds). Its encoder joins theirs along the last axis and its head
    cuts each network's part back out, so it keeps the `encoder` / `head` split that scoring
    runs per question and per pair. The networks' own encoders and heads are renamed in place
    (`encoder_1`, `head_1`, ...): one model cannot hold two layers of one name."""
    encoders = [model.get_layer("encoder") for model in models]
    heads = [model.get_layer("head") for model in models]
    for number, (encoder, head) in enumerate(zip(encoders, heads, strict=True), start=1):
        encoder.name, head.name = f"encoder_{number}", f"head_{number}"
    shape, dtype = tuple(encoders[0].input.shape[1:]), encoders[0].input.dtype
    question = keras.Input(shape=shape, dtype=dtype, name="question")
    joined = keras.layers.Concatenate(axis=-1, name="encodings")(
        [encoder(question) for encoder in encoders]
    )
    encoder = keras.Model(question, joined, name="encoder")
    a = keras.Input(shape=tuple(joined.shape[1:]), name="a")
    b = keras.Input(shape=tuple(joined.shape[1:]), name="b")
    outputs, start = [], 0
    for number, (network_encoder, head) in enumerate(zip(encoders, heads, strict=True), start=1):
        stop = start + int(network_encoder.output.shape[-1])
        part = LastAxisSlice(start, stop, name=f"part_{number}")
        outputs.append(head([part(a), part(b)]))
        start = stop
    head = keras.Model([a, b], keras.layers.Average(name="mean")(outputs), name="head")
    return pair_model(encoder, head, name)


def _encoding_inputs(width: int) -> tuple:
    return keras.Input(shape=(width,), name="a"), keras.Input(shape=(width,), name="b")


def distance_head(width: int, kind: str = "euclidean") -> keras.Model:
    """(a, b) -> their distance: the Siamese head."""
    a, b = _encoding_inputs(width)
    distance = PairDistance(kind, name="distance", dtype="float32")([a, b])
    return keras.Model([a, b], distance, name="head")


def classifier_head(width: int, params: dict, distance: str = "none") -> keras.Model:
    """The "FC last layer" head shared by `residual` and `birnn_cnn`: Dense over
    [a, b, |a-b|, a*b] (plus a distance if asked) -> Dropout -> sigmoid.

    The Dense is written as the sum of its parts, Dense_a(a) + Dense_b(b) + Dense_pair(
    [|a-b|, a*b, distance]): the same function, but the parts that see one question can run
    once per distinct question when scoring (`scoring_parts`).
    """
    a, b = _encoding_inputs(width)
    units = params["head_units"]
    layers = {
        "head_a": keras.layers.Dense(units, use_bias=False, name="head_a"),
        "head_b": keras.layers.Dense(units, use_bias=False, name="head_b"),
        "pair_interactions": PairInteractions(name="pair_interactions"),
        "head_pair": keras.layers.Dense(units, name="head_pair"),
        "head_sum": keras.layers.Add(name="head_sum"),
        "head_relu": keras.layers.ReLU(name="head_relu"),
        "head_dropout": keras.layers.Dropout(params["head_dropout"], name="head_dropout"),
        "probability": keras.layers.Dense(
            1, activation="sigmoid", name="probability", dtype="float32"
        ),
    }
    if distance != "none":
        layers["distance"] = PairDistance(distance, name="distance")
        layers["pair_input"] = keras.layers.Concatenate(name="pair_input")
    output = _classifier_output(layers, a, b, layers["head_a"](a), layers["head_b"](b))
    return keras.Model([a, b], output, name="head")


def _classifier_output(layers: dict, a, b, a_part, b_part):
    """The classifier head's wiring after its per-question parts, shared by training and
    scoring so that the two cannot differ."""
    x = layers["pair_interactions"]([a, b])
    if "distance" in layers:
        x = layers["pair_input"]([x, layers["distance"]([a, b])])
    x = layers["head_sum"]([layers["head_pair"](x), a_part, b_part])
    x = layers["head_dropout"](layers["head_relu"](x))
    return layers["probability"](x)


def scoring_parts(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(per_question, per_pair) built from a trained pair model's own layers.

    `per_question` maps a question's input to one row; `per_pair` maps the rows of a pair's
    two questions, {"a": rows[first], "b": rows[second]}, to the model's output. For the
    classifier head, a question's row is [encoding, Dense_a(encoding), Dense_b(encoding)], so
    only the per-pair terms run per pair.
    """
    encoder, head = model.get_layer("encoder"), model.get_layer("head")
    layers = {
        layer.name: layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)
    }
    if "head_a" not in layers:  # the Siamese distance: nothing to split off
        return encoder, head
    shape, dtype = tuple(encoder.input.shape[1:]), encoder.input.dtype
    question = keras.Input(shape=shape, dtype=dtype, name="question")
    encoding = encoder(question)
    row = keras.layers.Concatenate(name="question_row")(
        [encoding, layers["head_a"](encoding), layers["head_b"](encoding)]
    )
    per_question = keras.Model(question, row, name="per_question")

    width, units = int(encoding.shape[-1]), int(layers["head_a"].units)
    a_row, b_row = _encoding_inputs(width + 2 * units)
    a, b = a_row[:, :width], b_row[:, :width]
    a_part, b_part = a_row[:, width : width + units], b_row[:, width + units :]
    per_pair = keras.Model(
        [a_row, b_row], _classifier_output(layers, a, b, a_part, b_part), name="per_pair"
    )
    return per_question, per_pair


def pair_classifier(encoder: keras.Model, params: dict, name: str, distance: str = "none"):
    """`encoder` + `classifier_head`, compiled with binary cross-entropy."""
    head = classifier_head(int(encoder.output.shape[-1]), params, distance)
    model = pair_model(encoder, head, name)
    model.compile(
        optimizer=keras.optimizers.Adam(params["learning_rate"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
