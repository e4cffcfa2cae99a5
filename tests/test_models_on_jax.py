"""The Keras models on another Keras backend: JAX (on CPU here; the same code runs on a GPU).

Keras fixes its backend when it is imported, so each JAX run is a subprocess with
KERAS_BACKEND=jax.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from pipeline.bundle import BundleError, load_bundle
from pipeline.models import get_kind, kind_names
from pipeline.models.base import KerasKind
from pipeline.stages import train

KERAS_KINDS = [name for name in kind_names() if isinstance(get_kind(name), KerasKind)]
SYMMETRIC = {"siamese", "esim", "re2"}  # a distance, or cross-attention read both ways

SCORE = """
import json, sys
sys.modules["tensorflow"] = None  # scoring under JAX needs no TensorFlow: importing it fails
import keras, pandas as pd
from pipeline.bundle import load_bundle
test = pd.read_parquet(sys.argv[1])
scores = {
    name: load_bundle(path).predict_proba(test["question1"], test["question2"]).tolist()
    for name, path in json.loads(sys.argv[2]).items()
}
print(json.dumps({"backend": keras.backend.backend(), "scores": scores}))
"""

TRAIN = """
import json, sys
sys.modules["tensorflow"] = None  # training under JAX needs no TensorFlow: importing it fails
import keras, numpy as np, pandas as pd, yaml
from pipeline.bundle import load_bundle
from pipeline.stages import train
params = yaml.safe_load(open(sys.argv[1]))
test = pd.read_parquet(params["paths"]["processed"] + "/test.parquet")
q1, q2 = test["question1"], test["question2"]
result = {"backend": keras.backend.backend()}
for name in sys.argv[2:]:
    meta = train.run(params, name)
    bundle = load_bundle(params["paths"]["models"] + "/" + name)
    forward, backward = bundle.predict_proba(q1, q2), bundle.predict_proba(q2, q1)
    result[name] = {
        "device": meta["device"],
        "in_range": bool(np.all((forward >= 0) & (forward <= 1))),
        "asymmetry": float(np.abs(forward - backward).max()),
        "itself": float(bundle.predict_proba(q1, q1).min()),
    }
print(json.dumps(result))
"""


def on_jax(script: str, *args, **env) -> dict:
    """Run `script` under Keras' JAX backend; its last line of output, as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "jax", **env},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_keras_kind_trains_under_jax(featurized, tmp_path):
    params = {
        **featurized,
        "re2": {**featurized["re2"], "char_ngram_units": 4},  # its spelling vectors too
        "paths": {**featurized["paths"], "models": str(tmp_path)},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = on_jax(TRAIN, tmp_path / "params.yaml", *KERAS_KINDS)
    assert result.pop("backend") == "jax"
    assert set(result) == set(KERAS_KINDS)
    for name, facts in result.items():
        assert facts["device"] == "CPU, Keras on jax" and facts["in_range"], (name, facts)
        assert facts["itself"] == 1.0, name  # a question paired with itself is a duplicate
        if name in SYMMETRIC:
            assert facts["asymmetry"] <= 1e-6, (name, facts)
        bundle = json.loads((tmp_path / name / "bundle.json").read_text())
        assert bundle["keras_backend"] == "jax"


def test_mirrored_under_jax_is_data_parallel_over_every_device(featurized, tmp_path):
    params = {
        **featurized,
        "train": {**featurized["train"], "distribute": "mirrored"},
        "paths": {**featurized["paths"], "models": str(tmp_path)},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = on_jax(TRAIN, tmp_path / "params.yaml", "residual", **two_devices)
    assert result["residual"]["device"] == "CPU, Keras on jax, mirrored over 2 replicas"
    assert result["residual"]["in_range"] and result["residual"]["itself"] == 1.0


def test_bundles_trained_under_tensorflow_score_the_same_under_jax(featurized):
    models = Path(featurized["paths"]["models"])
    for name in KERAS_KINDS:  # the bundles an earlier test trained, else trained here
        if not (models / name / "bundle.json").exists():
            train.run(featurized, name)
        assert json.loads((models / name / "bundle.json").read_text())["keras_backend"] == (
            "tensorflow"
        )
    test_path = Path(featurized["paths"]["processed"]) / "test.parquet"
    paths = {name: str(models / name) for name in KERAS_KINDS}
    result = on_jax(SCORE, test_path, json.dumps(paths))
    assert result["backend"] == "jax"
    test = pd.read_parquet(test_path)
    for name, path in paths.items():
        here = load_bundle(path).predict_proba(test["question1"], test["question2"])
        np.testing.assert_allclose(result["scores"][name], here, rtol=0, atol=1e-5, err_msg=name)


def test_a_bundle_that_cannot_move_names_its_backend(bundles, tmp_path, monkeypatch):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(bundles["esim"], moved)
    meta = json.loads((moved / "bundle.json").read_text())
    (moved / "bundle.json").write_text(json.dumps({**meta, "keras_backend": "torch"}))

    def fails(self, directory):
        raise NotImplementedError("layer 'alignment' has no torch kernel")

    monkeypatch.setattr(KerasKind, "_load", fails)
    message = (
        r"model.keras was trained under Keras on torch and does not run under tensorflow "
        r"\(NotImplementedError: layer 'alignment' has no torch kernel\)"
    )
    with pytest.raises(BundleError, match=message):
        load_bundle(moved)
