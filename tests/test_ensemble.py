"""The stacked ensemble: honest stacking, scoring through its members, member checks."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import rehash

from pipeline.bundle import BundleError, load_bundle
from pipeline.errors import ParamsError
from pipeline.models.ensemble import out_of_fold_probabilities
from pipeline.stages import evaluate, train

MEMBERS = ["logreg", "gbdt"]


@pytest.fixture(scope="module")
def ensemble(featurized):
    params = {**featurized, "ensemble": {**featurized["ensemble"], "members": MEMBERS}}
    for name in MEMBERS:
        train.run(params, name)
    meta = train.run(params, "ensemble")
    return params, meta


def test_out_of_fold_predictions_never_see_their_own_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    labels = (x[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    oof = out_of_fold_probabilities(x, labels, folds=5, c=1.0, seed=7)
    from sklearn.model_selection import KFold

    for _, held_out in KFold(5, shuffle=True, random_state=7).split(x):
        changed = labels.copy()
        changed[held_out] = 1 - changed[held_out]  # the held-out fold's labels, flipped
        again = out_of_fold_probabilities(x, changed, folds=5, c=1.0, seed=7)
        assert np.allclose(again[held_out], oof[held_out])


def test_ensemble_scores_through_its_members_like_any_model(ensemble, tmp_path):
    params, meta = ensemble
    assert set(meta["stacker_weights"]) == set(MEMBERS)
    metrics = evaluate.run(params, "ensemble")
    test = pd.read_parquet(f"{params['paths']['processed']}/test.parquet")
    bundle = load_bundle(f"{params['paths']['models']}/ensemble")
    api = bundle.predict_proba(test["question1"], test["question2"])
    predicted = (api >= metrics["threshold"]).astype(int)
    assert metrics["accuracy"] == pytest.approx((predicted == test["is_duplicate"]).mean())
    from pipeline.score import score_file

    source = tmp_path / "pairs.csv"
    test[["question1", "question2"]].to_csv(source, index=False)
    score_file(bundle.directory, source, tmp_path / "out.csv", quiet=True, chunk_rows=7)
    scored = pd.read_csv(tmp_path / "out.csv")
    assert np.allclose(scored["probability"], api, atol=1e-6)
    assert np.all(bundle.predict_proba(test["question1"], test["question1"]) == 1.0)


def test_missing_or_changed_member_is_a_clear_error(ensemble, tmp_path):
    import shutil

    params, _ = ensemble
    models = tmp_path / "models"
    shutil.copytree(params["paths"]["models"], models)
    assert load_bundle(models / "ensemble").threshold >= 0
    meta = json.loads((models / "gbdt" / "bundle.json").read_text())
    meta["threshold"] = 0.123
    (models / "gbdt" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="member bundle ../gbdt changed since"):
        load_bundle(models / "ensemble")
    shutil.rmtree(models / "gbdt")
    with pytest.raises(BundleError, match="member bundle ../gbdt is missing"):
        load_bundle(models / "ensemble")


def test_ensemble_params_are_checked_before_fitting(featurized):
    bad = {**featurized, "ensemble": {**featurized["ensemble"], "members": ["logreg"]}}
    with pytest.raises(ParamsError, match="ensemble.members: .* not a list of 2 or more"):
        train.run(bad, "ensemble")
    outside = {
        **featurized,
        "ensemble": {**featurized["ensemble"], "members": ["logreg", "gbdt"]},
        "train": {**featurized["train"], "models": ["logreg"]},
    }
    with pytest.raises(ParamsError, match=r"\['gbdt'\] not in train.models"):
        train.run(outside, "ensemble")


def test_damaged_gbdt_or_ensemble_file_is_a_clear_error(ensemble, tmp_path):
    import shutil

    params, _ = ensemble
    models = tmp_path / "models"
    shutil.copytree(params["paths"]["models"], models)
    (models / "gbdt" / "gbdt.txt").write_text("tree\nnot a model\n")
    with pytest.raises(BundleError, match="bundle corrupted: gbdt.txt"):
        load_bundle(models / "gbdt")
    rehash(models / "gbdt")
    with pytest.raises(BundleError, match="gbdt.txt: not a LightGBM model"):
        load_bundle(models / "gbdt")
    (models / "ensemble" / "ensemble.json").write_text("[1, 2]")
    rehash(models / "ensemble")
    with pytest.raises(BundleError, match="cannot load bundle"):
        load_bundle(models / "ensemble")
