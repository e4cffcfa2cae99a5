"""GloVe (Pennington et al. 2014) in TensorFlow: the same code trains on a GPU when present.

Objective: sum over co-occurring pairs (i, j) of f(X_ij) (w_i . c_j + b_i + b~_j - log X_ij)^2,
with f(x) = min(1, (x / x_max)^alpha), optimized with AdaGrad; the word vectors returned are
w + c, as in the paper.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from tqdm import tqdm

log = logging.getLogger(__name__)


def cooccurrence(
    ids: np.ndarray, lengths: np.ndarray, vocab_size: int, window: int
) -> sp.csr_matrix:
    """Symmetric co-occurrence counts weighted by 1/distance, within each document.

    `ids` holds every document's token ids back to back (-1 for words outside the
    vocabulary, which still count for distance); one vectorized pass per window offset.
    """
    doc = np.repeat(np.arange(len(lengths)), lengths)
    total = sp.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    for distance in range(1, window + 1):
        left, right = ids[:-distance], ids[distance:]
        valid = (doc[:-distance] == doc[distance:]) & (left >= 0) & (right >= 0)
        rows, cols = left[valid], right[valid]
        weights = np.full(len(rows), 1.0 / distance)
        total = total + sp.csr_matrix((weights, (rows, cols)), shape=(vocab_size, vocab_size))
    return (total + total.T).tocsr().astype(np.float32)


def train_glove(
    cooc: sp.spmatrix,
    dim: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    x_max: float = 100.0,
    alpha: float = 0.75,
    seed: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """Fit GloVe on a co-occurrence matrix; return (vocab, dim) vectors and loss per epoch."""
    coo = sp.coo_matrix(cooc)
    rows = coo.row.astype(np.int32)
    cols = coo.col.astype(np.int32)
    counts = coo.data.astype(np.float32)
    vocab_size = cooc.shape[0]
    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    # multi-threaded float reductions otherwise differ in the last bits from run to run
    tf.config.experimental.enable_op_determinism()

    def init(shape):
        return tf.Variable(((rng.random(shape) - 0.5) / dim).astype(np.float32))

    word, context = init((vocab_size, dim)), init((vocab_size, dim))
    bias, context_bias = init((vocab_size,)), init((vocab_size,))
    params = [word, context, bias, context_bias]
    # AdaGrad accumulators start at 1, as in the reference implementation
    squares = [tf.Variable(tf.ones_like(p)) for p in params]

    @tf.function(reduce_retracing=True)
    def step(i, j, x):
        w_i, c_j = tf.gather(word, i), tf.gather(context, j)
        diff = tf.reduce_sum(w_i * c_j, axis=1) + tf.gather(bias, i) + tf.gather(context_bias, j)
        diff -= tf.math.log(x)
        weight = tf.minimum(1.0, tf.pow(x / x_max, alpha))
        scaled = weight * diff  # d loss / d prediction for loss = 0.5 * f * diff^2
        grads = [scaled[:, None] * c_j, scaled[:, None] * w_i, scaled, scaled]
        for param, square, index, grad in zip(params, squares, [i, j, i, j], grads, strict=True):
            square.scatter_add(tf.IndexedSlices(grad * grad, index))
            step_size = learning_rate * grad / tf.sqrt(tf.gather(square, index))
            param.scatter_sub(tf.IndexedSlices(step_size, index))
        return 0.5 * tf.reduce_sum(weight * diff * diff)

    losses = []
    n = len(counts)
    for epoch in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for start in tqdm(
            range(0, n, batch_size),
            desc=f"glove epoch {epoch + 1}/{epochs}",
            leave=False,
            mininterval=2,
        ):
            batch = order[start : start + batch_size]
            total += float(step(rows[batch], cols[batch], counts[batch]))
        losses.append(total / max(n, 1))
        log.info("glove epoch %d/%d: loss %.4f", epoch + 1, epochs, losses[-1])
    return (word.numpy() + context.numpy()), losses
