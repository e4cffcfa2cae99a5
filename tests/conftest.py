import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_TSV = ROOT.parent / "shared" / "data" / "quora" / "quora_pairs_subset.tsv"

# the metrics/<model>.json keys that the README, dvc metrics and the report rely on (issue #4)
REQUIRED_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "roc_auc",
    "pr_auc",
    "threshold",
)

INDEX_SETTINGS = {  # a question index small and fast enough for a unit test
    "vectors": "tfidf",
    "tfidf_dim": 64,
    "seed": 0,
    "kind": "hnsw",
    "hnsw_m": 16,
    "ef_construction": 64,
    "ef_search": 64,
    "candidates": 20,
    "lexical_share": 0.5,
    "lexical_max_df": 0.03,
    "rerank": "learned",
    "rerank_queries": 1000,
    "rerank_rounds": 30,
    "rerank_early_stopping": 10,
    "rerank_leaves": 7,
    "rerank_learning_rate": 0.1,
}

STAGE_FIXTURES = {"featurized", "bundles", "params"}  # fixtures that run stages or train


def pytest_collection_modifyitems(items):
    """Mark tests that run stages or train models, so `make test-fast` can leave them out."""
    for item in items:
        if STAGE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.trains)


needs_shared = pytest.mark.skipif(
    not SHARED_TSV.exists(),
    reason=f"real Quora subset not found at {SHARED_TSV} (read from ../shared, never committed)",
)


TF_LOG = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl)")


def our_lines(stderr: str) -> list[str]:
    """stderr without the C++ log lines TensorFlow prints when it is imported (no setting
    silences them), e.g. when a Keras model's params are checked."""
    return [line for line in stderr.strip().splitlines() if not TF_LOG.match(line)]


def run_cli(module: str, *args) -> subprocess.CompletedProcess:
    """`python -m <module> args...` from the project root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rehash(bundle: Path) -> None:
    """Record a bundle's current files in its bundle.json, as a bundle saved that way would:
    lets a test reach the checks behind the sha256 check."""
    from pipeline.io import file_hashes

    meta = json.loads((bundle / "bundle.json").read_text())
    meta["files"] = {k: v for k, v in file_hashes(bundle).items() if k != "bundle.json"}
    (bundle / "bundle.json").write_text(json.dumps(meta))


def tiny_params(tmp: Path) -> dict:
    """params.yaml with every path under `tmp` and sizes small enough for a unit test."""
    from pipeline.stages._cli import paths_under

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["demo"].update(n_pairs=600)
    params["paths"] = paths_under(tmp)
    params["vectors"].update(dim=16, epochs=3, min_count=1)
    params["features"].update(max_len=12)
    params["train"].update(patience=1)
    params["siamese"].update(units=16, epochs=2, batch_size=64)
    params["residual"].update(units=16, head_units=16, epochs=2, batch_size=64)
    params["birnn_cnn"].update(
        rnn_units=8, conv_filters=8, dense_units=16, head_units=16, epochs=1, batch_size=64
    )
    params["esim"].update(projection_units=8, rnn_units=8, head_units=8, epochs=1, batch_size=64)
    params["re2"].update(embedding_units=8, hidden_units=8, head_units=8, epochs=1, batch_size=64)
    params["gbdt"].update(max_rounds=30, early_stopping_rounds=10)
    return params


@pytest.fixture
def params(tmp_path):
    return tiny_params(tmp_path)


@pytest.fixture(scope="session")
def featurized(tmp_path_factory):
    """prepare -> vectors -> features on 600 demo pairs, shared by the model tests."""
    from pipeline.stages import features, prepare, raw, vectors

    tmp = tmp_path_factory.mktemp("featurized")
    params = tiny_params(tmp)
    raw.run(params)
    prepare.run(params)
    vectors.run(params)
    features.run(params)
    return params


@pytest.fixture(scope="session")
def bundles(featurized):
    """logreg, residual and esim bundles trained on the tiny featurized data."""
    from pipeline.stages import train

    names = ("logreg", "residual", "esim")
    for name in names:
        train.run(featurized, name)
    return {name: Path(featurized["paths"]["models"]) / name for name in names}
