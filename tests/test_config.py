"""params.yaml is checked section by section before any stage does work."""

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, our_lines

from pipeline.config import SECTIONS, check_params, load_params
from pipeline.errors import ParamsError
from pipeline.models import kind_names


def shipped() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_shipped_params_pass_every_check():
    check_params(shipped(), (*SECTIONS, *kind_names()))


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        (
            "evaluate",
            "threshold_metric",
            "auc",
            "evaluate.threshold_metric: 'auc' is not one of accuracy, f1",
        ),
        (
            "features",
            "weighting",
            "tf-idf",
            "features.weighting: 'tf-idf' is not one of tfidf, idf, mean",
        ),
        ("birnn_cnn", "rnn", "GRU", "birnn_cnn.rnn: 'GRU' is not one of gru, lstm"),
        ("vectors", "dim", 0, "vectors.dim: 0 is not a whole number of 1 or more"),
        (
            "vectors",
            "learning_rate",
            "fast",
            r"vectors.learning_rate: 'fast' is not a number in \(0, inf\)",
        ),
        (
            "features",
            "sublinear_tf",
            "yes",
            "features.sublinear_tf: 'yes' is not one of True, False",
        ),
        ("features", "max_features", -5, "features.max_features: -5 is not a whole number"),
        ("train", "models", ["logreg", "svm"], r"train.models: \['svm'\] not among"),
        ("train", "class_weight", {0: 1, 1: -2}, "train.class_weight: .* is not null, balanced"),
        ("train", "distribute", "multi", "train.distribute: 'multi' is not one of none, mirrored"),
        ("data", "sha256", "abc", "data.sha256: 'abc' is not a sha256"),
        ("split", "train", 0.9, "split: train \\+ val \\+ test must be 1, got 1.1"),
        ("text", "unicode_form", "nfkc", "text.unicode_form: 'nfkc' is not one of NFKC"),
        ("esim", "batch_size", 12.5, "esim.batch_size: 12.5 is not a whole number"),
    ],
)
def test_a_bad_value_names_its_key_value_and_what_is_allowed(section, key, value, message):
    params = shipped()
    params[section][key] = value
    with pytest.raises(ParamsError, match=message):
        check_params(params, (section,))


def test_unknown_and_missing_keys_and_sections():
    params = shipped()
    params["features"]["weigthing"] = "tfidf"
    with pytest.raises(
        ParamsError, match=r"features: unknown key\(s\) weigthing \(known: weighting"
    ):
        check_params(params, ("features",))
    params = shipped()
    del params["train"]["seed"]
    with pytest.raises(ParamsError, match=r"train: missing key\(s\) seed"):
        check_params(params, ("train",))
    del params["evaluate"]
    with pytest.raises(ParamsError, match="evaluate: the section is missing"):
        check_params(params, ("evaluate",))


def test_params_file_problems_are_params_errors(tmp_path):
    with pytest.raises(ParamsError, match="params file .*nothing.yaml not found"):
        load_params(tmp_path / "nothing.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="bad.yaml: not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="list.yaml: not a mapping"):
        load_params(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    "stage, section, key, value",
    [
        ("features", "features", "weighting", "tf-idf"),
        ("train", "evaluate", "threshold_metric", "auc"),
        ("train", "birnn_cnn", "rnn", "GRU"),
        ("prepare", "split", "strategy", "by_question"),
    ],
)
def test_every_stage_stops_at_once_with_one_line_and_exit_2(tmp_path, stage, section, key, value):
    params = shipped()
    params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    extra = ["--model", "birnn_cnn"] if stage == "train" else []
    result = subprocess.run(
        [sys.executable, "-m", f"pipeline.stages.{stage}", "--params", tmp_path / "params.yaml"]
        + extra,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no data here: the check must come before any read
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = our_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"{stage}: error: ") and f"{section}.{key}: {value!r}" in lines[0]
