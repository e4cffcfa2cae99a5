"""The documents' figures come from the benchmark files, and the README's commands exist."""

import re
import subprocess
import sys

from conftest import ROOT

IMPORTS_A_STAGE = re.compile(
    r"^\s*(from pipeline\.stages|from pipeline import stages|import pipeline\.stages)", re.M
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
    assert not [p.name for p in library if IMPORTS_A_STAGE.search(p.read_text())]
