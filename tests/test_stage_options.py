"""Knobs of params.yaml that change what a stage does, each checked for its effect."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FIXTURES, ROOT
from gensim.models import KeyedVectors

from pipeline.behaviour import CAPABILITIES
from pipeline.bundle import load_bundle
from pipeline.models.base import class_weights
from pipeline.stages import report, train, vectors
from pipeline.text import TextConfig
from pipeline.text_model import GENERATED_FILE, TextModel, load_split
from pipeline.word_vectors import load_vectors


def with_models_dir(params: dict, tmp_path, **train_changes) -> dict:
    """The shared featurized params, training into a directory of this test's own."""
    return {
        **params,
        "train": {**params["train"], **train_changes},
        "paths": {
            **params["paths"],
            "models": str(tmp_path / "models"),
            "live": str(tmp_path / "live"),
        },
    }


def test_class_weights_balanced_and_explicit():
    labels = np.array([0, 0, 0, 1])
    assert class_weights(labels, None) is None
    assert class_weights(labels, "balanced") == {0: 4 / 6, 1: 4 / 2}
    assert class_weights(labels, {0: 1, 1: 3}) == {0: 1.0, 1: 3.0}


def test_class_weight_shifts_predictions_towards_the_heavier_class(featurized, tmp_path):
    val = pd.read_parquet(f"{featurized['paths']['processed']}/val.parquet")
    mean_probability = {}
    for weight in (0.1, 10.0):
        params = with_models_dir(featurized, tmp_path / str(weight), class_weight={0: 1, 1: weight})
        train.run(params, "residual")
        bundle = load_bundle(f"{params['paths']['models']}/residual")
        mean_probability[weight] = bundle.predict_proba(val["question1"], val["question2"]).mean()
    assert mean_probability[10.0] > mean_probability[0.1] + 0.05, mean_probability


MIXED = """
import sys, yaml
from pipeline.stages import train
from pipeline.behaviour import CAPABILITIES
from pipeline.bundle import load_bundle
import pandas as pd
params = yaml.safe_load(open(sys.argv[1]))
train.run(params, "residual")
val = pd.read_parquet(params["paths"]["processed"] + "/val.parquet")
probs = load_bundle(params["paths"]["models"] + "/residual").predict_proba(
    val["question1"], val["question2"])
import keras
print("POLICY", keras.mixed_precision.global_policy().name, "RANGE", probs.min(), probs.max())
"""


def test_mixed_precision_trains_and_scores_on_cpu(featurized, tmp_path):
    # a subprocess: the float16 policy is global and would leak into the other tests
    params = with_models_dir(featurized, tmp_path, mixed_precision=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-c", MIXED, str(tmp_path / "params.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    words = result.stdout.split("POLICY", 1)[1].split()
    assert words[0] == "mixed_float16"
    low, high = float(words[2]), float(words[3])
    assert 0.0 <= low <= high <= 1.0 and np.isfinite([low, high]).all()


@pytest.mark.parametrize("trainable", [False, True])
def test_frozen_embeddings_stay_as_the_word_vectors(featurized, tmp_path, trainable):
    params = with_models_dir(featurized, tmp_path)
    params["birnn_cnn"] = {**featurized["birnn_cnn"], "trainable_embeddings": trainable}
    train.run(params, "birnn_cnn")
    bundle = load_bundle(f"{params['paths']['models']}/birnn_cnn")
    embedding = next(
        layer
        for layer in bundle.keras_model.get_layer("encoder").layers
        if layer.__class__.__name__ == "Embedding"
    )
    unchanged = np.allclose(embedding.get_weights()[0], bundle.text_model.embedding_matrix())
    assert unchanged != trainable


def test_features_arrays_equal_the_bundles_featurization(featurized, bundles):
    """What training read (the features stage) is what scoring computes from the same text."""
    arrays = load_split(featurized["paths"]["features"], "train")
    frame = pd.read_parquet(f"{featurized['paths']['processed']}/train.parquet")
    # the generated train pairs (augment) follow the real ones
    generated = pd.read_parquet(Path(featurized["paths"]["features"]) / GENERATED_FILE)
    questions = pd.concat([frame["question1"], generated["question1"]]).to_numpy(object)
    assert len(questions) == len(arrays["label"])
    for name, key in (("residual", "emb_q1"), ("esim", "ids_q1")):
        bundle = load_bundle(bundles[name])
        assert np.array_equal(bundle.model_inputs(questions), arrays[key]), name


def test_min_df_and_max_features_bound_the_vocabulary():
    questions = ["a b c", "a b d", "a e f", "a b g"]  # a:4, b:3, then c d e f g once each
    kv = KeyedVectors(2)
    full = TextModel.fit(questions, TextConfig(), kv, max_len=4)
    assert list(full.vocab) == ["a", "b", "c", "d", "e", "f", "g"]
    assert list(TextModel.fit(questions, TextConfig(), kv, min_df=2, max_len=4).vocab) == ["a", "b"]
    capped = TextModel.fit(questions, TextConfig(), kv, max_features=3, max_len=4)
    assert list(capped.vocab) == ["a", "b", "c"]
    assert capped.token_ids(capped.tokens(["a g"])).tolist() == [[2, 1, 0, 0]]  # g is OOV
    assert replace(capped, max_len=1).token_ids(capped.tokens(["b a"])).tolist() == [[3]]


def test_vectors_stage_with_a_pretrained_file_keeps_only_train_words(featurized, tmp_path):
    params = {
        **featurized,
        "vectors": {
            **featurized["vectors"],
            "source": "pretrained",
            "pretrained": str(FIXTURES / "glove_tiny.txt"),
            "pretrained_format": "auto",
        },
        "paths": {
            **featurized["paths"],
            "vectors": str(tmp_path / "vectors.bin"),
            "vectors_report": str(tmp_path / "vectors.json"),
        },
    }
    info = vectors.run(params)
    kv = load_vectors(tmp_path / "vectors.bin")
    assert info["format"] == "glove" and info["pretrained_vocab_size"] == 10
    assert kv.vector_size == 4 and 0 < len(kv) <= 10
    train = pd.read_parquet(f"{featurized['paths']['processed']}/train.parquet")
    train_text = " ".join(pd.concat([train["question1"], train["question2"]])).lower()
    assert all(word in train_text for word in kv.index_to_key)
    expected = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    assert "how" not in kv.key_to_index or np.allclose(kv["how"], expected)


def test_report_table_lists_models_and_the_blog_metric(tmp_path):
    import json

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    base = {"accuracy": 0.75, "f1": 0.7, "roc_auc": 0.8, "train_seconds": 12.5, "device": "CPU"}
    (metrics_dir / "logreg.json").write_text(json.dumps(base))
    (metrics_dir / "siamese.json").write_text(json.dumps({**base, "blog_precision": 0.66}))
    params = {
        "train": {"models": ["logreg", "siamese"]},
        "index": {"model": "gbdt"},
        "paths": {
            "metrics": str(metrics_dir),
            "models_report": str(tmp_path / "models.md"),
            "models_chart": str(tmp_path / "models.png"),
            "plots": str(tmp_path / "eval"),
            "live": str(tmp_path / "live"),
            "index_metrics": str(metrics_dir / "index.json"),
            "behaviour_metrics": str(metrics_dir / "behaviour.json"),
        },
    }
    (tmp_path / "eval" / "logreg").mkdir(parents=True)
    (tmp_path / "eval" / "logreg" / "evaluation.png").write_bytes(b"")
    text = report.run(params)
    assert (tmp_path / "models.md").read_text() == text
    assert (tmp_path / "models.png").read_bytes().startswith(b"\x89PNG")
    assert "![every model](models.png)" in text
    assert "| logreg | [ROC, PR, calibration](eval/logreg/evaluation.png) | - |" in text
    rows = [
        line
        for line in text.splitlines()
        if (line.startswith("| logreg") or line.startswith("| siamese")) and "CPU" in line
    ]
    assert len(rows) == 2 and "| 0.7500 |" in rows[0] and "| CPU |" in rows[0]
    assert "ensemble" not in text  # only when its metrics exist
    assert "`siamese` blog_precision" in text and "0.6600" in text
    (metrics_dir / "ensemble.json").write_text(json.dumps({**base, "accuracy": 0.8}))
    assert "| ensemble | 0.8000" in report.run(params)
    assert "Finding duplicates" not in report.run(params)  # no index metrics yet
    recall = {"recall@1": 0.4, "recall@10": 0.7}
    index_metrics = {
        "bank_questions": 1000,
        "queries": 50,
        "blend": 0.7,
        "candidates": {**recall, "mrr": 0.5},
        "exact": recall,
        "model_only": {**recall, "mrr": 0.45},
        "reranked": {"recall@1": 0.45, "recall@10": 0.7, "mrr": 0.55},
    }
    (metrics_dir / "index.json").write_text(json.dumps(index_metrics))
    text = report.run(params)
    assert "re-ranked by `gbdt`" in text and "0.30 x its probability + 0.70 x" in text
    assert "| reranked | 0.4500 | 0.7000 | 0.5500 |" in text
    assert "Behaviour" not in text  # no behaviour metrics yet
    rates = {name: 0.25 for name in CAPABILITIES}
    behaviour = {name: {"failure_rate": rates} for name in ("logreg", "siamese")}
    (metrics_dir / "behaviour.json").write_text(json.dumps(behaviour))
    text = report.run(params)
    assert "| capability | expected | logreg | siamese |" in text
    assert "| negation | not duplicate | 25% | 25% |" in text


def test_charts_are_png_images_and_the_same_bytes_on_a_rerun(tmp_path):
    from pipeline.plots import comparison_png, evaluation_png, training_png

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    probs = np.clip(labels * 0.4 + rng.random(400) * 0.6, 0, 1)
    live = tmp_path / "live"
    for split, losses in (("train", [0.6, 0.4, 0.3]), ("eval", [0.62, 0.5, 0.45])):
        (live / "plots" / "metrics" / split).mkdir(parents=True)
        table = pd.DataFrame({"step": range(3), "loss": losses})
        table.to_csv(live / "plots" / "metrics" / split / "loss.tsv", sep="\t", index=False)
    rows = {"logreg": {"accuracy": 0.8, "roc_auc": 0.88, "majority_accuracy": 0.63}}
    written = []
    for attempt in range(2):
        out = tmp_path / str(attempt)
        evaluation_png(out / "evaluation.png", "logreg", labels, probs, 0.5)
        assert training_png(out / "training.png", "logreg", live)
        comparison_png(out / "models.png", rows)
        written.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert written[0] == written[1] and len(written[0]) == 3
    assert all(image.startswith(b"\x89PNG\r\n") for image in written[0].values())
    assert not training_png(tmp_path / "none.png", "ensemble", tmp_path / "empty")
    assert not (tmp_path / "none.png").exists()
