"""End to end: `dvc repro` of the whole pipeline on tiny demo params, in a temporary git repo."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REQUIRED_METRICS, ROOT

from pipeline.behaviour import CAPABILITIES

pytestmark = pytest.mark.slow
MODELS = ["logreg", "siamese", "residual", "birnn_cnn", "esim", "re2", "gbdt", "ensemble"]


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def dvc(*args, cwd, env):
    return run([sys.executable, "-m", "dvc", *args], cwd, env)


def changed_stages(repo, env) -> set[str]:
    return set(json.loads(dvc("status", "--json", cwd=repo, env=env)))


def set_param(repo, section, key, value):
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("dupq")
    for name in ("pipeline", ".dvc", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "cache", "tmp", "config.local")
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copy(source, repo / name)
    (repo / "data" / "external").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "external" / ".gitkeep", repo / "data" / "external")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["demo"]["n_pairs"] = 500
    params["vectors"].update(dim=8, epochs=2, min_count=1)
    params["features"]["max_len"] = 10
    params["train"]["patience"] = 1
    params["siamese"].update(units=8, epochs=2)
    params["residual"].update(units=8, head_units=8, epochs=2)
    params["birnn_cnn"].update(rnn_units=4, conv_filters=4, dense_units=8, head_units=8, epochs=1)
    params["esim"].update(projection_units=8, rnn_units=4, head_units=8, epochs=1)
    params["re2"].update(embedding_units=8, hidden_units=8, head_units=8, epochs=1)
    params["gbdt"].update(max_rounds=20)
    params["index"].update(tfidf_dim=32, candidates=10, ef_construction=40)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "PYTHONPATH": str(repo),
    }
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny pipeline"], repo, env)
    dvc("repro", cwd=repo, env=env)
    return repo, env


def test_repro_writes_every_models_metrics(repo):
    repo, _ = repo
    for name in MODELS:
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert set(REQUIRED_METRICS) <= set(metrics), name
        assert (repo / "models" / name / "bundle.json").exists()
        assert (repo / "reports" / "eval" / name / "plots" / "sklearn" / "roc.json").exists()
        assert (repo / "dvclive" / "train" / name / "plots" / "metrics").is_dir()
    table = (repo / "reports" / "models.md").read_text()
    assert all(f"| {name} |" in table for name in MODELS)
    assert "# Finding duplicates (stage index)" in table
    assert "# Behaviour (stage behaviour)" in table and "| order_from_to | not duplicate |" in table
    index = json.loads((repo / "metrics" / "index.json").read_text())
    assert index["queries"] > 0 and 0 <= index["reranked"]["recall@10"] <= 1
    assert 0 <= index["learned"]["recall@10"] <= 1 and index["reranker"]["train_queries"] > 0
    assert {p.name for p in (repo / "models" / "index").iterdir()} == {
        "index.faiss",
        "bank.parquet",
        "projection.npz",
        "reranker.txt",
        "reranker_chars.npz",
        "index.json",
    }
    assert json.loads((repo / "reports" / "data.json").read_text())["source"].startswith("demo")
    behaviour = json.loads((repo / "metrics" / "behaviour.json").read_text())
    assert set(behaviour) == set(MODELS)
    for name, result in behaviour.items():
        assert set(result["failure_rate"]) == set(CAPABILITIES), name
        assert all(0 <= rate <= 1 for rate in result["failure_rate"].values())


def test_nothing_changed_means_nothing_reruns(repo):
    repo, env = repo
    assert changed_stages(repo, env) == set()
    out = dvc("repro", cwd=repo, env=env)
    assert "Running stage" not in out


def test_param_changes_rerun_exactly_the_dependent_stages(repo):
    repo, env = repo
    original = (repo / "params.yaml").read_text()
    try:
        set_param(repo, "birnn_cnn", "rnn", "lstm")
        assert changed_stages(repo, env) == {"train@birnn_cnn"}  # evaluate follows its outs
        (repo / "params.yaml").write_text(original)
        set_param(repo, "vectors", "method", "word2vec")
        stale = changed_stages(repo, env)
        assert "vectors" in stale and "prepare" not in stale
        (repo / "params.yaml").write_text(original)
        set_param(repo, "split", "seed", 7)
        assert "prepare" in changed_stages(repo, env)
    finally:
        (repo / "params.yaml").write_text(original)


def test_a_changed_local_source_reruns_from_raw_without_force(repo):
    repo, env = repo
    original = (repo / "params.yaml").read_text()
    source = repo / "data" / "external" / "pairs.tsv"
    try:
        rows = [
            f"How do I cook dish {i} well?\tWhat is the best way to cook dish {i}?\t1"
            for i in range(60)
        ]
        rows += [f"How do I cook dish {i} well?\tWhere is city number {i}?\t0" for i in range(60)]
        source.write_text("question1\tquestion2\tis_duplicate\n" + "\n".join(rows) + "\n")
        set_param(repo, "data", "source", "data/external/pairs.tsv")
        dvc("repro", "prepare", cwd=repo, env=env)
        assert json.loads((repo / "reports" / "data.json").read_text())["rows_read"] == 120
        source.write_text(source.read_text() + "How do I swim fast?\tHow can I swim faster?\t1\n")
        assert "raw" in changed_stages(repo, env)  # prepare follows from what raw writes
        out = dvc("repro", "prepare", cwd=repo, env=env)
        assert "Running stage 'prepare'" in out
        assert json.loads((repo / "reports" / "data.json").read_text())["rows_read"] == 121
    finally:
        source.unlink(missing_ok=True)
        (repo / "params.yaml").write_text(original)
        dvc("repro", "prepare", cwd=repo, env=env)


def test_dvc_exp_run_and_metrics_show(repo):
    repo, env = repo
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "lock"], repo, env)
    dvc("exp", "run", "-S", "logreg.C=0.5", cwd=repo, env=env)
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo, env=env))
    experiments = [exp for entry in shown for exp in (entry.get("experiments") or [])]
    assert experiments, "dvc exp run recorded no experiment"
    values = [
        rev["data"]["params"]["params.yaml"]["data"]["logreg"]["C"]
        for exp in experiments
        for rev in exp["revs"]
    ]
    assert 0.5 in values, values
    metrics = dvc("metrics", "show", cwd=repo, env=env)
    assert all(f"metrics/{name}.json" in metrics for name in MODELS)
    assert "metrics/behaviour.json" in metrics


def test_dvc_exp_queue_runs_queued_experiments(repo):
    import time

    repo, env = repo
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "before queue", "--allow-empty"], repo, env)
    dvc("exp", "run", "--queue", "-S", "logreg.C=2.0", cwd=repo, env=env)
    dvc("queue", "start", cwd=repo, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = dvc("queue", "status", cwd=repo, env=env)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert "Success" in status and "Failed" not in status, status
