import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REQUIRED_METRICS, ROOT, our_lines, rehash

from pipeline.bundle import FORMAT_VERSION, BundleError, Pairs, load_bundle
from pipeline.errors import ParamsError
from pipeline.metrics import (
    METRIC_KEYS,
    blog_precision,
    choose_threshold,
    classification_metrics,
)
from pipeline.stages import evaluate, train

MODELS = ["logreg", "siamese", "residual", "birnn_cnn", "esim", "re2", "gbdt"]


def test_contrastive_loss_on_hand_computed_examples():
    from pipeline.models.layers import contrastive_loss

    y = np.array([[1.0], [0.0], [0.0]], dtype=np.float32)
    d = np.array([[0.5], [0.2], [1.5]], dtype=np.float32)
    # duplicate: 0.5^2 = 0.25; close non-duplicate: (1 - 0.2)^2 = 0.64; far one: 0
    loss = np.asarray(contrastive_loss(y, d, margin=1.0))
    assert np.allclose(loss, [0.25, 0.64, 0.0], atol=1e-6)


def test_threshold_maximizes_accuracy_or_f1():
    labels = np.array([0, 0, 1, 0, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    t = choose_threshold(labels, probs, "accuracy")
    assert 0.4 < t < 0.8  # cut above 0.4: 5 of 6 right
    assert classification_metrics(labels, probs, t)["accuracy"] == pytest.approx(5 / 6)
    t_f1 = choose_threshold(labels, probs, "f1")
    assert 0.2 < t_f1 < 0.3  # all three positives, one false positive: F1 0.857
    with pytest.raises(ValueError, match="threshold_metric"):
        choose_threshold(labels, probs, "auc")


def test_metrics_keys_and_blog_precision():
    labels = np.array([1, 0, 1, 0])
    metrics = classification_metrics(labels, np.array([0.9, 0.6, 0.4, 0.1]), 0.5)
    assert set(REQUIRED_METRICS) <= set(metrics) and set(METRIC_KEYS) <= set(metrics)
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    # the 2017 post's "accuracy": share of duplicates among pairs with distance < 0.5
    assert blog_precision(labels, np.array([0.1, 0.2, 0.9, 0.3])) == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_saves_reloads_and_predicts_the_same(featurized, name):
    meta = train.run(featurized, name)
    assert meta["epochs_run"] >= 1 and meta["device"]
    directory = f"{featurized['paths']['models']}/{name}"
    test = pd.read_parquet(f"{featurized['paths']['processed']}/test.parquet")
    first = load_bundle(directory).predict_proba(test["question1"], test["question2"])
    again = load_bundle(directory).predict_proba(test["question1"], test["question2"])
    assert first.shape == (len(test),) and np.all((first >= 0) & (first <= 1))
    assert np.array_equal(first, again)
    # a question paired with itself (or with a copy that normalizes the same) is a duplicate
    copies = test["question1"].str.replace(" ", "  ", n=1) + " "
    assert np.all(load_bundle(directory).predict_proba(test["question1"], copies) == 1.0)
    # and so is one that differs only in what the text core erases (case, symbol spacing)
    variants = test["question1"].str.upper().str.replace("?", " ?", regex=False)
    assert np.all(load_bundle(directory).predict_proba(test["question1"], variants) == 1.0)
    bundle = load_bundle(directory)
    if bundle.keras_model is not None:  # encoder once per distinct question == whole model
        pairs = Pairs.from_columns(test["question1"], test["question2"])
        model_in = bundle.model_inputs(pairs.questions)
        rows = bundle.encode_questions(model_in, batch_size=7)
        parts = bundle.raw_from_encodings(rows, pairs.first, pairs.second, batch_size=7)
        whole = bundle.keras_model.predict(
            {"q1": model_in[pairs.first], "q2": model_in[pairs.second]}, verbose=0
        )
        assert np.allclose(parts, np.ravel(whole), atol=1e-5)

    metrics = evaluate.run(featurized, name)
    saved = json.loads(open(f"{featurized['paths']['metrics']}/{name}.json").read())
    assert saved["accuracy"] == metrics["accuracy"]
    predicted = (first >= metrics["threshold"]).astype(int)
    assert metrics["accuracy"] == pytest.approx((predicted == test["is_duplicate"]).mean())
    if name == "siamese":
        assert "blog_precision" in saved


def test_bundle_has_no_pickle_and_loads_in_safe_mode(bundles, tmp_path):
    import shutil
    import zipfile

    import keras

    directory = bundles["residual"]
    files = {p.name for p in directory.iterdir()}
    assert files == {"bundle.json", "model.keras", "text_model.json", "text_model.npz"}
    with zipfile.ZipFile(directory / "model.keras") as archive:
        assert not [n for n in archive.namelist() if n.endswith((".pkl", ".pickle"))]
    keras.models.load_model(directory / "model.keras", safe_mode=True, compile=False)
    # a model that runs arbitrary Python when loaded (a Lambda layer) is refused
    unsafe = tmp_path / "unsafe"
    shutil.copytree(directory, unsafe)
    x = keras.Input((3,), name="q1")
    keras.Model(x, keras.layers.Lambda(lambda t: t * 2)(x)).save(unsafe / "model.keras")
    with pytest.raises(BundleError, match="bundle corrupted: model.keras"):
        load_bundle(unsafe)
    rehash(unsafe)
    with pytest.raises(BundleError, match="safe_mode"):
        load_bundle(unsafe)


def test_broken_bundles_are_clear_errors(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "b").mkdir()
    with pytest.raises(BundleError, match="bundle.json is missing"):
        load_bundle(tmp_path / "b")
    (tmp_path / "b" / "bundle.json").write_text(
        json.dumps({"format_version": 99, "dupq_version": "9.0"})
    )
    with pytest.raises(BundleError, match="format 99 made by dupq 9.0"):
        load_bundle(tmp_path / "b")
    meta = {"format_version": FORMAT_VERSION, "kind": "siamese"}
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="reads: None is not one of"):
        load_bundle(tmp_path / "b")
    files = {name: "0" * 64 for name in ("text_model.json", "text_model.npz", "model.keras")}
    meta.update(reads="embeddings", model_file="model.keras", name="s", threshold=0.5, files=files)
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="missing text_model.json, text_model.npz, model.keras"):
        load_bundle(tmp_path / "b")


def test_bundle_without_encoder_and_head_parts_is_a_clear_error(bundles, tmp_path):
    import shutil

    import keras

    broken = tmp_path / "flat"
    shutil.copytree(bundles["residual"], broken)
    q1, q2 = keras.Input((3,), name="q1"), keras.Input((3,), name="q2")
    joined = keras.layers.Concatenate()([q1, q2])
    keras.Model([q1, q2], keras.layers.Dense(1)(joined)).save(broken / "model.keras")
    rehash(broken)
    with pytest.raises(BundleError, match="no encoder and head parts"):
        load_bundle(broken)


MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import yaml
from pipeline.stages import train
params = yaml.safe_load(open(sys.argv[1]))
meta = train.run(params, "residual")
print("DEVICE", meta["device"])
"""


def test_mirrored_strategy_on_two_logical_cpus(featurized, tmp_path):
    import yaml

    params = {
        **featurized,
        "train": {**featurized["train"], "distribute": "mirrored"},
        "paths": {**featurized["paths"], "models": str(tmp_path / "models")},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path / "params.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mirrored over 2 replicas" in result.stdout


@pytest.mark.parametrize("name", ["re2", "residual"])
def test_seeds_average_networks_each_trained_as_its_own_seed_would_be(featurized, tmp_path, name):
    def trained(seed: int, seeds: int):
        params = {
            **featurized,
            "train": {**featurized["train"], "seed": seed},
            name: {**featurized[name], "seeds": seeds},
            "paths": {
                **featurized["paths"],
                "models": str(tmp_path / f"models_{seed}_{seeds}"),
                "live": str(tmp_path / f"live_{seed}_{seeds}"),
            },
        }
        meta = train.run(params, name)
        return meta, load_bundle(tmp_path / f"models_{seed}_{seeds}" / name)

    test = pd.read_parquet(f"{featurized['paths']['processed']}/test.parquet")
    q1, q2 = test["question1"], test["question2"]
    meta, both = trained(42, 2)
    _, first = trained(42, 1)
    _, second = trained(43, 1)
    assert meta["networks"] == 2 and meta["params"]["seeds"] == 2
    assert (tmp_path / "live_42_2" / name / "seed_43" / "metrics.json").is_file()
    raw = [encoded_raw(bundle, q1, q2) for bundle in (first, second)]
    assert not np.allclose(raw[0], raw[1])  # two different networks
    assert np.allclose(encoded_raw(both, q1, q2), np.mean(raw, axis=0), atol=1e-5)
    # scoring per question then per pair is the whole averaged model
    pairs = Pairs.from_columns(q1, q2)
    model_in = both.model_inputs(pairs.questions)
    whole = both.keras_model.predict(
        {"q1": model_in[pairs.first], "q2": model_in[pairs.second]}, verbose=0
    )
    assert np.allclose(encoded_raw(both, q1, q2), np.ravel(whole), atol=1e-5)
    # bench/join_networks.py makes the same bundle from the one-network bundles, untrained
    networks = [tmp_path / f"models_{seed}_1" / name for seed in (42, 43)]
    result = join_networks(featurized, tmp_path, name, networks, seeds=2)
    assert result.returncode == 0, result.stderr[-2000:]
    joined = load_bundle(tmp_path / "joined" / name)
    assert joined.meta["val_metrics"] == meta["val_metrics"]
    took = first.meta["train_seconds"] + second.meta["train_seconds"]
    assert joined.meta["train_seconds"] == pytest.approx(took, abs=0.02)
    assert np.allclose(encoded_raw(joined, q1, q2), encoded_raw(both, q1, q2), atol=1e-5)
    # and refuses networks trained with other settings
    refused = join_networks(featurized, tmp_path, name, networks, seeds=2, learning_rate=0.5)
    assert refused.returncode != 0 and "other settings" in refused.stderr


def join_networks(featurized, tmp_path, name, networks, **settings):
    """bench/join_networks.py into tmp_path/joined, with these settings of the kind."""
    import yaml

    params = {
        **featurized,
        name: {**featurized[name], **settings},
        "paths": {**featurized["paths"], "models": str(tmp_path / "joined")},
    }
    (tmp_path / "joined.yaml").write_text(yaml.safe_dump(params))
    command = ["bench/join_networks.py", "--params", str(tmp_path / "joined.yaml")]
    return subprocess.run(
        [sys.executable, *command, "--model", name, "--networks", *map(str, networks)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def encoded_raw(bundle, q1, q2) -> np.ndarray:
    """Raw outputs scored as `dupq-score` does: each question once, then each pair."""
    pairs = Pairs.from_columns(q1, q2)
    rows = bundle.encode_questions(bundle.model_inputs(pairs.questions), batch_size=64)
    return bundle.raw_from_encodings(rows, pairs.first, pairs.second, batch_size=64)


def test_registry_lists_every_kind_and_rejects_unknown_names():
    from pipeline.models import get_kind, kind_names

    assert set(MODELS) <= set(kind_names())
    assert all(get_kind(name).name == name for name in kind_names())
    with pytest.raises(ValueError, match="unknown model 'nope'.*esim"):
        get_kind("nope")


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("esim", {"rnn": "transformer"}, "esim.rnn: 'transformer' is not one of gru, lstm"),
        ("esim", {"rnn_units": -4}, "esim.rnn_units: -4 is not a whole number of 1 or more"),
        ("esim", {"compare": "cnn"}, "esim.compare: 'cnn' is not one of rnn, dense"),
        ("esim", {"dropout": 1.5}, r"esim.dropout: 1.5 is not a number in \[0, 1\)"),
        ("esim", {"rnn_unit": 8}, "esim: unknown key.s. rnn_unit"),
        ("birnn_cnn", {"rnn": "GRU"}, "birnn_cnn.rnn: 'GRU' is not one of gru, lstm"),
        ("residual", {"bn_position": "nowhere"}, "residual.bn_position: 'nowhere' is not one of"),
        ("logreg", {"C": -1}, r"logreg.C: -1 is not a number in \(0, inf\)"),
        ("gbdt", {"num_leaves": 0}, "gbdt.num_leaves: 0 is not a whole number of 2 or more"),
        ("ensemble", {"members": ["logreg", "nope"]}, r"ensemble.members: \['nope'\] not among"),
    ],
)
def test_bad_model_params_stop_before_training(featurized, tmp_path, name, change, message):
    import yaml

    params = {**featurized, name: {**featurized[name], **change}}
    with pytest.raises(ParamsError, match=message):
        train.run(params, name)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.train", "--params", str(tmp_path / "params.yaml")]
        + ["--model", name],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(our_lines(result.stderr)) == 1, result.stderr
    assert re.search(f"train: error: .*params.yaml: {message}", result.stderr), result.stderr


@pytest.mark.parametrize("name, row_width", [("esim", 2 * 8 + 1), ("re2", 8 + 1)])
def test_cross_attention_models_are_symmetric(featurized, name, row_width):
    train.run(featurized, name)
    bundle = load_bundle(f"{featurized['paths']['models']}/{name}")
    test = pd.read_parquet(f"{featurized['paths']['processed']}/test.parquet")
    forward = bundle.predict_proba(test["question1"], test["question2"])
    backward = bundle.predict_proba(test["question2"], test["question1"])
    assert np.allclose(forward, backward, rtol=0, atol=1e-6)
    assert bundle.encoding_floats == featurized["features"]["max_len"] * row_width


@pytest.mark.parametrize("name", ["esim", "re2"])
def test_cross_attention_scores_do_not_depend_on_padding(featurized, name):
    """esim and re2 train on batches cut to their longest question, so a question's score
    must not depend on how much padding follows it."""
    import keras

    train.run(featurized, name)
    model = keras.models.load_model(
        f"{featurized['paths']['models']}/{name}/model.keras", safe_mode=True, compile=False
    )
    val = np.load(f"{featurized['paths']['features']}/val.npz")
    q1, q2 = val["ids_q1"], val["ids_q2"]
    short = model.predict({"q1": q1, "q2": q2}, verbose=0)
    more = ((0, 0), (0, 9))  # nine more padding positions
    padded = model.predict({"q1": np.pad(q1, more), "q2": np.pad(q2, more)}, verbose=0)
    assert np.allclose(padded, short, rtol=0, atol=1e-5)


def test_length_buckets_hold_every_pair_once_per_epoch_cut_to_its_batch():
    from pipeline.models.base import length_buckets

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 21, size=(1000, 2))
    ids = [np.where(np.arange(24) < n[:, None], 5, 0).astype(np.int32) for n in lengths.T]
    for q in ids:  # each pair's first token is its row number + 1
        q[:, 0] = np.arange(1, 1001)
    labels = (rng.random(1000) < 0.3).astype(np.int64)
    pairs = {"q1": ids[0], "q2": ids[1], "label": labels}
    dataset = length_buckets(pairs, batch_size=64, weights={0: 0.5, 1: 2.0}, seed=7, window=4)
    assert dataset.cardinality() == 16
    epochs = []
    for _ in range(2):
        seen = []
        for features, y, weight in dataset.as_numpy_iterator():
            rows = features["q1"][:, 0] - 1
            longest = lengths[rows].max()
            assert features["q1"].shape[1] % 8 == 0 and longest <= features["q1"].shape[1]
            assert features["q1"].shape[1] < longest + 8
            assert np.array_equal(y, labels[rows])
            assert np.array_equal(weight, np.where(labels[rows] == 1, 2.0, 0.5))
            assert np.array_equal(features["q2"], ids[1][rows, : features["q2"].shape[1]])
            seen.append(rows)
        epochs.append(np.concatenate(seen))
        assert np.array_equal(np.sort(epochs[-1]), np.arange(1000))
    assert not np.array_equal(epochs[0], epochs[1])  # each epoch shuffles anew
    again = length_buckets(pairs, batch_size=64, weights=None, seed=7, window=4)
    first = np.concatenate([f["q1"][:, 0] - 1 for f, _ in again.as_numpy_iterator()])
    assert np.array_equal(first, epochs[0])  # the same seed, the same order


def test_pairs_padded_for_devices_divide_evenly_and_the_copies_weigh_nothing():
    from pipeline.models.base import LengthBuckets, padded_for_devices

    labels = np.array([1, 0, 0, 1, 0])
    pairs = {"q1": np.arange(10).reshape(5, 2), "q2": np.arange(10, 20).reshape(5, 2)}
    pairs["label"] = labels
    grown, weights = padded_for_devices(pairs, 4, {0: 0.5, 1: 2.0})
    assert len(grown["label"]) == len(grown["q1"]) == 8
    assert np.array_equal(grown["q2"][:5], pairs["q2"]) and (grown["q1"][5:] == [0, 1]).all()
    assert np.array_equal(weights, [2.0, 0.5, 0.5, 2.0, 0.5, 0, 0, 0])
    same, ones = padded_for_devices(pairs, 5, None)
    assert same is pairs and np.array_equal(ones, np.ones(5))
    buckets = LengthBuckets(grown, batch_size=4, weights=weights, seed=0)
    batches = [buckets.batch(rows) for rows in buckets.epoch_rows()]
    assert [len(batch[1]) for batch in batches] == [4, 4]
    assert sum(batch[2].sum() for batch in batches) == weights.sum()


class WeightsStub:
    """What EarlyStopping touches on a model: its weights (here, the epoch that set them)."""

    metrics: list = []
    stop_training = False
    epoch = -1

    def get_weights(self):
        return [self.epoch]

    def set_weights(self, weights):
        self.epoch = weights[0]


@pytest.mark.parametrize(
    "warmup, stops_at, kept",
    [
        (10, None, 1),  # a run no longer than its warm-up still keeps its best epoch
        (2, 2, 1),  # after the warm-up: no better loss for `patience` epochs stops it
        (0, 2, 1),
    ],
)
def test_early_stopping_keeps_the_best_epoch_and_waits_out_the_warm_up(warmup, stops_at, kept):
    from pipeline.models.base import early_stopping

    callback, model = early_stopping(patience=1, warmup_epochs=warmup), WeightsStub()
    callback.set_model(model)
    callback.on_train_begin()
    stopped = None
    for epoch, loss in enumerate([0.5, 0.3, 0.4, 0.45, 0.5]):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end()
    assert (stopped, model.epoch) == (stops_at, kept)


@pytest.mark.parametrize("schedule", ["constant", "plateau", "cosine"])
def test_learning_rate_schedules(schedule):
    import keras

    from pipeline.models.base import learning_rate_schedule

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    inputs = np.zeros((8, 1), dtype=np.float32)
    targets = np.ones((8, 1), dtype=np.float32)  # a loss that does not fall on validation
    rates = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: rates.append(float(model.optimizer.learning_rate))
    )
    callbacks = [*learning_rate_schedule(schedule, 0.01, epochs=4), record]
    model.fit(
        inputs,
        targets,
        validation_data=(inputs, targets * 5),
        epochs=4,
        verbose=0,
        callbacks=callbacks,
    )
    expected = {
        "constant": [0.01] * 4,
        "plateau": None,  # halved after an epoch without progress on validation loss
        "cosine": [
            0.01,
            0.01 * (1 + np.cos(np.pi / 4)) / 2,
            0.005,
            0.01 * (1 + np.cos(3 * np.pi / 4)) / 2,
        ],
    }[schedule]
    if expected is None:
        assert rates[0] == pytest.approx(0.01) and rates[-1] < 0.01
        assert list(np.diff(rates) <= 0) == [True] * 3
    else:
        np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_masked_pooling_and_alignment_ignore_padding():
    from pipeline.models.layers import Alignment, MaskedPooling, SoftAlignment, ZeroPadding

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=bool)
    noisy = np.where(mask[..., None], x, 100.0).astype(np.float32)  # padding holds junk
    pooled = np.asarray(MaskedPooling()([noisy, mask]))
    assert np.allclose(pooled[0, :4], x[0, :3].max(axis=0), atol=1e-6)
    assert np.allclose(pooled[0, 4:], x[0, :3].mean(axis=0), atol=1e-6)
    b = rng.normal(size=(2, 6, 4)).astype(np.float32)
    b_noisy = np.where(mask[..., None], b, 50.0).astype(np.float32)
    aligned, _ = SoftAlignment()([x, b, mask, mask])
    aligned_noisy, _ = SoftAlignment()([x, b_noisy, mask, mask])
    assert np.allclose(np.asarray(aligned), np.asarray(aligned_noisy), atol=1e-5)
    # RE2's alignment: scores from keys, values aligned; padding of either never counts
    aligned, _ = Alignment()([x, b, x, b, mask, mask])
    aligned_noisy, _ = Alignment()([x, b_noisy, x, b_noisy, mask, mask])
    assert np.allclose(np.asarray(aligned), np.asarray(aligned_noisy), atol=1e-5)
    # with keys a * sqrt(width) (undoing the scaling), it aligns as ESIM's does
    keys = x * np.sqrt(x.shape[-1])
    aligned, _ = Alignment()([keys, b, x, b, mask, mask])
    assert np.allclose(np.asarray(aligned), np.asarray(SoftAlignment()([x, b, mask, mask])[0]))
    zeroed = np.asarray(ZeroPadding()([noisy, mask]))
    assert np.all(zeroed[~mask] == 0) and np.array_equal(zeroed[mask], x[mask])


def test_exact_match_counts_known_words_of_the_other_question_only():
    from pipeline.models.layers import ExactMatch

    ids_a = np.array([[5, 1, 7, 0]], dtype=np.int32)  # 1: unknown word, 0: padding
    ids_b = np.array([[7, 1, 0, 0]], dtype=np.int32)
    match = np.asarray(ExactMatch(2)([ids_a, ids_b]))[0, :, 0]
    assert match.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_bundle_whose_kind_reads_other_inputs_is_a_clear_error(bundles, tmp_path):
    import shutil

    changed = tmp_path / "logreg"
    shutil.copytree(bundles["logreg"], changed)
    meta = json.loads((changed / "bundle.json").read_text())
    meta["reads"] = "token_ids"
    (changed / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="reads 'token_ids'.*reads 'tfidf'.*retrain"):
        load_bundle(changed)


WEIGHT_AVERAGE = """
import json
import keras, numpy as np
from pipeline.models.base import early_stopping, weight_average

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 3)).astype(np.float32)
y = (x @ np.array([[1.0], [-2.0], [0.5]]) + rng.normal(size=(64, 1))).astype(np.float32)
validation = (x[:16], y[:16])

def weights():
    return [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]

seen = {"begin": [], "batch": [], "epoch_end": [], "epoch_begin": []}
record = keras.callbacks.LambdaCallback(
    on_train_begin=lambda logs: seen["begin"].append(weights()),
    on_train_batch_end=lambda batch, logs: seen["batch"].append(weights()),
    on_epoch_end=lambda epoch, logs: seen["epoch_end"].append(weights()),
    on_epoch_begin=lambda epoch, logs: seen["epoch_begin"].append(weights()),
)
averaging = weight_average({"weight_average_epochs": 0.5, "predict_batch": 16}, validation)
stopping = early_stopping(patience=10, warmup_epochs=0, monitor="val_averaged_loss")
history = model.fit(
    x, y, batch_size=8, epochs=5, shuffle=False, validation_data=validation, verbose=0,
    callbacks=[averaging, stopping, record],
).history
# the moving average recomputed from the raw weights after every batch (8 a epoch)
momentum, running, expected = 1 - 1 / (0.5 * 8), seen["begin"][0], []
for step, now in enumerate(seen["batch"], start=1):
    m = min(momentum, (1 + step) / (10 + step))
    running = [m * a + (1 - m) * w for a, w in zip(running, now)]
    if step % 8 == 0:
        expected.append(running)
gap = lambda a, b: max(float(np.abs(p - q).max()) for p, q in zip(a, b))
best = int(np.argmin(history["val_averaged_loss"]))
print(json.dumps({
    "backend": keras.backend.backend(),
    "averages": max(gap(a, b) for a, b in zip(seen["epoch_end"], expected)),
    # each epoch goes on from the raw weights of the last batch before it
    "resumed": max(gap(seen["epoch_begin"][e], seen["batch"][8 * e - 1]) for e in range(1, 5)),
    "raw_differs": gap(seen["epoch_end"][-1], seen["batch"][-1]),
    "kept": gap(weights(), expected[best]),
    "logged": sorted(k for k in history if k.startswith("val_averaged")),
    "loss_of_kept": abs(model.evaluate(*validation, verbose=0) - min(history["val_averaged_loss"])),
}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_weight_average_is_the_moving_average_and_keeps_its_best_epoch(backend):
    import os

    result = subprocess.run(
        [sys.executable, "-c", WEIGHT_AVERAGE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checks = json.loads(result.stdout.strip().splitlines()[-1])
    assert checks["backend"] == backend
    assert checks["averages"] < 1e-5 and checks["resumed"] == 0.0
    assert checks["raw_differs"] > 1e-3  # the average is not the raw weights
    assert checks["kept"] < 1e-6 and checks["loss_of_kept"] < 1e-5
    assert checks["logged"] == ["val_averaged_loss"]


def test_char_ngram_table_keeps_shared_ngrams_shortest_first():
    from pipeline.models.layers import char_ngram_table

    table, ngrams = char_ngram_table(["cat", "cats", "dog", "catalogue"], per_word=2)
    # "<ca", "cat" and "<cat" are in three words; "dog"'s n-grams in no other word
    assert ngrams == 4
    assert table.tolist() == [[1, 2], [1, 2], [0, 0], [1, 2]]
    full, _ = char_ngram_table(["cat", "cats", "dog", "catalogue"])
    assert full[0].tolist()[:4] == [1, 2, 3, 0]  # "<ca", "cat", then the 4-gram "<cat"
    assert char_ngram_table([])[0].shape == (0, 24)


def test_re2_with_character_ngrams_is_symmetric_and_reloads(featurized, tmp_path):
    """A word's spelling vector is part of the model: saved, reloaded and read both ways."""
    import copy

    from pipeline.stages._cli import paths_under

    params = copy.deepcopy(featurized)
    params["paths"]["models"] = paths_under(tmp_path)["models"]
    params["paths"]["live"] = paths_under(tmp_path)["live"]
    params["re2"]["char_ngram_units"] = 4
    train.run(params, "re2")
    bundle = load_bundle(f"{params['paths']['models']}/re2")
    layer = bundle.keras_model.get_layer("encoder").get_layer("char_ngrams")
    assert layer.units == 4 and int(np.asarray(layer.table).max()) == layer.ngrams - 1
    test = pd.read_parquet(f"{featurized['paths']['processed']}/test.parquet")
    forward = bundle.predict_proba(test["question1"], test["question2"])
    backward = bundle.predict_proba(test["question2"], test["question1"])
    assert np.allclose(forward, backward, rtol=0, atol=1e-6)
    again = load_bundle(f"{params['paths']['models']}/re2")
    assert np.array_equal(again.predict_proba(test["question1"], test["question2"]), forward)
    assert np.all(again.predict_proba(test["question1"], test["question1"]) == 1.0)
