"""Benchmark: the whole pipeline on the real Quora subset, default params otherwise.

Runs every stage (as `python -m pipeline.<stage>`, exactly as dvc repro does) with
data.source = ../shared/data/quora/quora_pairs_subset.tsv and all outputs under a scratch
directory, then prints and writes reports/bench/accuracy.json: per model the test metrics
and training seconds. Not a test: training time depends on the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import ROOT, SHARED_TSV, machine

from pipeline.io import read_json, write_json
from pipeline.metrics import METRIC_KEYS

KEYS = (*METRIC_KEYS, "train_seconds", "seconds_per_epoch", "epochs_run", "device")


def scratch_params(work: Path, data: str, overrides: list[str]) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(
        source=data,
        processed_dir=str(work / "processed"),
        report=str(work / "data.json"),
        raw_path=str(work / "raw.tsv"),
    )
    params["vectors"].update(output=str(work / "vectors.bin"), report=str(work / "vectors.json"))
    params["features"].update(dir=str(work / "features"), report=str(work / "features.json"))
    params["train"].update(models_dir=str(work / "models"), live_dir=str(work / "live"))
    params["evaluate"].update(
        metrics_dir=str(work / "metrics"),
        plots_dir=str(work / "eval"),
        report=str(work / "models.md"),
    )
    for item in overrides:  # section.key=value, as with dvc exp run -S
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        params[section][key] = yaml.safe_load(value)
    return params


def stage(module: str, params_path: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", f"pipeline.{module}", "--params", str(params_path), *extra],
        check=True,
        cwd=ROOT,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_TSV))
    parser.add_argument("--work", default="reports/bench/accuracy_run")
    parser.add_argument("--output", default="reports/bench/accuracy.json")
    parser.add_argument("-S", "--set", action="append", default=[], help="section.key=value")
    args = parser.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(
            f"bench/accuracy.py: {args.data} not found (the real subset lives in ../shared)"
        )

    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    params = scratch_params(work, args.data, args.set)
    params_path = work / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    seconds = {name: stage(name, params_path) for name in ("prepare", "vectors", "features")}
    results = {}
    for model in params["train"]["models"]:
        stage("train", params_path, "--model", model)
        stage("evaluate", params_path, "--model", model)
        metrics = read_json(work / "metrics" / f"{model}.json")
        results[model] = {key: metrics.get(key) for key in KEYS}
        if "blog_precision" in metrics:
            results[model]["blog_precision"] = metrics["blog_precision"]
    data = read_json(work / "data.json")
    report = {
        "data": os.path.relpath(args.data, ROOT),
        "pairs": {s: data[s]["pairs"] for s in ("train", "val", "test")},
        "overrides": args.set,
        "stage_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "machine": machine(),
        "models": results,
    }
    write_json(ROOT / args.output, report)

    print(
        f"\n{'model':<10} {'accuracy':>8} {'f1':>6} {'roc_auc':>7} {'log_loss':>8} "
        f"{'train_s':>8}  device"
    )
    for model, m in results.items():
        print(
            f"{model:<10} {m['accuracy']:>8.4f} {m['f1']:>6.4f} {m['roc_auc']:>7.4f} "
            f"{m['log_loss']:>8.4f} {m['train_seconds']:>8.1f}  {m['device']}"
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
