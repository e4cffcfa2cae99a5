"""params.yaml: each section declared by the code that reads it and checked before any stage
does work; each stage handed, and listing in dvc.yaml, exactly the keys it reads."""

import ast
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, our_lines

from pipeline.errors import ParamsError
from pipeline.models import TRAIN, get_kind, kind_names
from pipeline.params import read_params
from pipeline.stages import (
    _cli,
    behaviour,
    evaluate,
    features,
    index,
    prepare,
    raw,
    report,
    train,
    vectors,
)

STAGES = {  # dvc.yaml stage -> what its code declares it reads (besides `paths`)
    "raw": raw.READS,
    "prepare": prepare.READS,
    "vectors": vectors.READS,
    "features": features.READS,
    "train": train.reads("logreg"),  # the same for every trained kind, plus its own section
    "evaluate": evaluate.READS,
    "train_ensemble": train.reads("ensemble"),
    "evaluate_ensemble": evaluate.READS,
    "index": index.READS,
    "behaviour": behaviour.READS,
    "report": report.READS,
}
SECTIONS = {
    section.name: section
    for section in (_cli.PATHS, *(s for reads in STAGES.values() for s in reads))
} | {name: get_kind(name).section for name in kind_names()}


def shipped() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def check(params: dict, name: str) -> None:
    if name in kind_names():
        get_kind(name).check(params)
    else:
        SECTIONS[name].check(params)


def test_the_shipped_params_pass_every_check_and_every_section_has_an_owner():
    params = shipped()
    for name in SECTIONS:
        check(params, name)
    assert set(params) == set(SECTIONS), set(params) ^ set(SECTIONS)


def _dvc_params(entries: list, model: str | None = None) -> set[str]:
    """A stage's `params:` as section.key names, a whole section spelled out key by key."""
    names = set()
    for entry in entries:
        entry = entry.replace("${item}", model) if model else entry
        section, _, key = entry.partition(".")
        fields = SECTIONS[section].fields
        names |= {f"{section}.{key}"} if key else {f"{section}.{k}" for k in fields}
    return names


def _declared(reads: dict, model: str | None = None) -> set[str]:
    names = {f"{s}.{k}" for s, keys in _cli.declared_keys(reads).items() for k in keys}
    return names | (_dvc_params([model]) if model else set())


def test_every_stage_lists_exactly_the_params_its_code_reads():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for name, reads in STAGES.items():
        body = stages[name].get("do", stages[name])
        models = shipped()["train"]["models"] if "foreach" in stages[name] else [None]
        for model in models:
            listed = _dvc_params(body["params"], model)
            if name == "train":
                declared = _declared(train.reads(model), model)
            elif name == "train_ensemble":
                declared = _declared(reads, "ensemble")
            else:
                declared = _declared(reads)
            assert listed == declared, (name, model, listed ^ declared)


def test_the_ensemble_depends_on_every_trained_model():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    bundles = {d for d in stages["train_ensemble"]["deps"] if d.startswith("${paths.models}/")}
    trained = shipped()["train"]["models"]
    assert bundles == {f"${{paths.models}}/{name}" for name in trained}
    assert set(shipped()["ensemble"]["members"]) <= set(trained)


def test_a_stage_is_handed_only_the_keys_it_declares():
    view = _cli.checked_params(shipped(), prepare.READS)
    assert set(view) == {"paths", "data", "split", "text"}
    assert set(view["data"]) == set(prepare.READS[raw.DATA])
    with pytest.raises(KeyError):
        view["data"]["source"]  # the raw stage's, not prepare's
    model_view = _cli.checked_params(shipped(), train.reads("esim"))
    assert model_view["esim"] == shipped()["esim"] and "siamese" not in model_view
    assert set(evaluate.READS) == {TRAIN}  # evaluate reads the bundle, not the model's params


def _import_graph() -> tuple[dict, dict]:
    """Each pipeline module's file, and the pipeline modules it imports at module level (a
    function-level import runs after every module is loaded)."""
    files = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (ROOT / "pipeline").rglob("*.py")
    }
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        top = ast.Module(body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)])
        graph[name] = {m for node in ast.walk(top) for m in _imports_of(node) if m in files}
    return files, graph


def test_no_import_circles_and_params_is_a_leaf():
    _, graph = _import_graph()
    assert graph["pipeline.params"] <= {"pipeline.errors"}, graph["pipeline.params"]
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        assert module not in visiting, " -> ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_every_stage_depends_on_the_code_it_imports():
    """A stage's module and every pipeline module it imports, directly or not, is a dep (or
    lies in a folder that is): a change to any of them reruns the stage."""
    files, graph = _import_graph()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split("python -m ")[1].split()[0]
        needed, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current not in needed:
                needed.add(current)
                todo.extend(graph[current])
        paths = {files[m].relative_to(ROOT).as_posix() for m in needed}
        deps = [d for d in body["deps"] if d.startswith("pipeline/")]
        missing = {
            path
            for path in paths
            if path not in deps
            and not path.endswith("__init__.py")
            and not any(path.startswith(d.rstrip("/") + "/") for d in deps)
        }
        assert not missing, (name, sorted(missing))


def _imports_of(node) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module:
        # `from pipeline.models import base` imports the module pipeline.models.base
        return {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return set()


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
            "pretrained",
            ["en_core_web_md", ""],
            "vectors.pretrained: .* is not a non-empty string or a list of them",
        ),
        ("vectors", "pretrained", [], "vectors.pretrained: .* is not a non-empty string"),
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
        check(params, section)


def test_unknown_and_missing_keys_and_sections():
    params = shipped()
    params["features"]["weigthing"] = "tfidf"
    with pytest.raises(
        ParamsError, match=r"features: unknown key\(s\) weigthing \(known: weighting"
    ):
        check(params, "features")
    params = shipped()
    del params["train"]["seed"]
    with pytest.raises(ParamsError, match=r"train: missing key\(s\) seed"):
        check(params, "train")
    del params["evaluate"]
    with pytest.raises(ParamsError, match="evaluate: the section is missing"):
        check(params, "evaluate")


def test_params_file_problems_are_params_errors(tmp_path):
    with pytest.raises(ParamsError, match="params file .*nothing.yaml not found"):
        read_params(tmp_path / "nothing.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="bad.yaml: not valid YAML"):
        read_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="list.yaml: not a mapping"):
        read_params(tmp_path / "list.yaml")


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


def test_project_settings_fall_back_when_params_yaml_is_absent_or_wrong(tmp_path):
    from pipeline.params import project_setting

    path = tmp_path / "params.yaml"
    assert project_setting("paths", "index", "models/index", path) == "models/index"  # absent
    path.write_text("paths: {index: elsewhere/index}\nindex: {top_k: 3}\n")
    assert project_setting("paths", "index", "models/index", path) == "elsewhere/index"
    assert project_setting("index", "top_k", 10, path) == 3
    path.write_text("paths: {index: [not, a, path]}\nindex: {top_k: true}\n")
    assert project_setting("paths", "index", "models/index", path) == "models/index"
    assert project_setting("index", "top_k", 10, path) == 10
    path.write_text("paths: [unclosed\n")
    assert project_setting("paths", "index", "models/index", path) == "models/index"
