"""The documents' figures come from the benchmark files, and the README's commands exist."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

IMPORTS_A_STAGE = re.compile(  # any stage module but the stages' shared CLI, `_cli`
    r"^\s*(from pipeline\.stages(?!\._cli )|from pipeline import stages|import pipeline\.stages)",
    re.M,
)


def test_benchmark_tables_are_current():
    result = subprocess.run(
        [sys.executable, "bench/tables.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_make_targets_named_in_the_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.M))
    named = set(re.findall(r"`?make ([a-z-]+)", (ROOT / "README.md").read_text()))
    assert named and named <= targets, named - targets


def test_stage_modules_named_in_dvc_yaml_exist_and_import_no_other_stage():
    stages = sorted((ROOT / "pipeline" / "stages").glob("[a-z]*.py"))
    dvc_yaml = (ROOT / "dvc.yaml").read_text()
    for path in stages:
        assert f"python -m pipeline.stages.{path.stem}" in dvc_yaml, path.stem
        assert not IMPORTS_A_STAGE.search(path.read_text()), f"{path.stem} imports a stage"
    library = [p for p in (ROOT / "pipeline").rglob("*.py") if "stages" not in p.parts]
    imports_stages = re.compile(r"^\s*(from|import) pipeline(\.stages| import stages)", re.M)
    assert not [p.name for p in library if imports_stages.search(p.read_text())]


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {m for m in modules if m.startswith("pipeline")}


def _code_of(module: str) -> set[str]:
    """The pipeline files a module runs, by static imports (function-level ones included;
    the model registry imports every kind)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / name.replace(".", "/") / "__init__.py"
        if not path.exists() or path in seen:
            continue
        seen.add(path)
        found = _imports(path)
        if path == ROOT / "pipeline" / "models" / "__init__.py":  # the registry imports by name
            found |= {f"pipeline.models.{p.stem}" for p in path.parent.glob("[a-z]*.py")}
        todo += sorted(found)
    files = {p.relative_to(ROOT).as_posix() for p in seen}
    code = {f for f in files if not f.startswith("pipeline/models/") and "__init__" not in f}
    return code | (
        {"pipeline/models"} if any(f.startswith("pipeline/models/") for f in files) else set()
    )


def test_every_stage_lists_exactly_the_code_it_runs_as_deps():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split()[2]
        declared = {d for d in body["deps"] if d.startswith("pipeline")}
        assert declared == _code_of(module), (name, declared ^ _code_of(module))


def test_the_committed_demo_results_are_this_codes_and_every_model_beats_the_majority():
    """metrics/ holds `make demo`'s results (12,000 demo pairs, the shipped params). dvc.lock
    must record this very code, command and params (else run `make demo` and commit), and on
    that run every model beats the majority class by 0.05 of test accuracy."""
    import json

    import yaml

    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    stale = {}
    for stage, changes in json.loads(result.stdout or "{}").items():
        for change in changes:
            if isinstance(change, str):  # "changed command"
                stale[stage] = change
                continue
            code = [p for p in change.get("changed deps", {}) if p.startswith("pipeline")]
            if code or change.get("changed params"):
                stale[stage] = code or change["changed params"]
    assert not stale, f"dvc.lock is not this code's: run `make demo` and commit ({sorted(stale)})"
    models = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["models"]
    for name in [*models, "ensemble"]:
        metrics = json.loads((ROOT / "metrics" / f"{name}.json").read_text())
        assert metrics["accuracy"] >= metrics["majority_accuracy"] + 0.05, name
