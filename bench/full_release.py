"""Benchmark: the pipeline on the full Quora release, with the standard (Wang et al.) split.

Runs every stage as `dvc repro` runs it (`python -m pipeline.stages.<stage>`), with all outputs
under a scratch directory, on `../shared/data/quora/quora_pairs_full.parquet` with
`split.strategy: column` (train / dev / test of the published results; thresholds and early
stopping on dev, figures on test). Records each stage's wall time and peak RSS (the stage's
own process, from wait4) and each model's test metrics, and writes
reports/bench/full_release.json after every stage, so a partial run keeps what it measured.

Stages whose outputs already exist in the scratch directory are not run again unless named in
--stages (their earlier figures are kept). Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import date
from pathlib import Path

import yaml
from accuracy import DETERMINISTIC_MODELS, VECTORS, scratch_params
from common import ROOT, machine, timed_stage

from pipeline.io import exclusive_lock, read_json, write_json
from pipeline.models import get_kind
from pipeline.models.base import KerasKind

FULL = ROOT.parent / "shared" / "data" / "quora" / "quora_pairs_full.parquet"
JOIN_NETWORKS = Path(__file__).with_name("join_networks.py")
DATA_STAGES = ("raw", "prepare", "vectors", "features")
# published test accuracies on the same split (the full 10,000 test pairs)
PUBLISHED = {
    "BiMPM (Wang et al. 2017)": 0.882,
    "Decomposable attention + char n-grams (Tomar et al. 2017)": 0.884,
    "DIIN (Gong et al. 2018)": 0.891,
    "RE2 (Yang et al. 2019)": 0.892,
}


def validation_curves(live_dir: Path) -> dict[str, list[float]]:
    """A Keras model's validation metrics per epoch, as its dvclive directory holds them
    (`val_averaged_*` beside `val_*` with `train.weight_average_epochs`)."""
    curves = {}
    for tsv in sorted((live_dir / "plots" / "metrics" / "eval").glob("*.tsv")):
        lines = tsv.read_text().split()[2:]  # after the header "step <name>"
        curves[tsv.stem] = [round(float(value), 5) for value in lines[1::2]]
    return curves


def summarize(runs: list[dict]) -> dict:
    """Per model: mean test metrics and training time over its seeds (and their spread)."""
    models: dict[str, dict] = {}
    for name in dict.fromkeys(run["model"] for run in runs):
        group = [run for run in runs if run["model"] == name]
        row: dict = {"seeds": [run["seed"] for run in group]}
        val = [run["val_metrics"]["accuracy"] for run in group if "val_metrics" in run]
        if val:
            row["val_accuracy"] = round(statistics.fmean(val), 4)
        for key in ("accuracy", "roc_auc", "log_loss", "f1", "train_seconds", "epochs_run"):
            values = [run["metrics"][key] for run in group if run["metrics"].get(key) is not None]
            if not values:
                continue
            out = key if key in ("train_seconds", "epochs_run") else f"test_{key}"
            row[out] = round(statistics.fmean(values), 4)
            if len(values) > 1:
                row[f"{out}_sd"] = round(statistics.stdev(values), 4)
        models[name] = row
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FULL))
    parser.add_argument("--work", default="reports/bench/full_release_run")
    parser.add_argument("--output", default="reports/bench/full_release.json")
    parser.add_argument("--vectors", default="spacy_md", choices=list(VECTORS))
    parser.add_argument("--models", nargs="+", default=["logreg", "gbdt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument(
        "--stages", nargs="*", default=[], help="data stages to run even if their outputs exist"
    )
    parser.add_argument(
        "-S", "--set", action="append", default=[], help="section.key=value, for every stage"
    )
    parser.add_argument(
        "--variant", default=None, help="what this run tries, for the table of variants"
    )
    parser.add_argument(
        "--networks-from",
        nargs="+",
        default=[],
        metavar="WORK",
        help="scratch directories of one-network runs on the same data and settings: a model "
        "with <kind>.seeds > 1 joins their bundles of its seeds instead of training "
        "(bench/join_networks.py)",
    )
    args = parser.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"bench/full_release.py: {args.data} not found (it lives in ../shared)")
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    overrides = {"split.strategy": "column", **VECTORS[args.vectors]}
    overrides.update({k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    params = scratch_params(work, str(Path(args.data).resolve()), overrides)
    params["data"]["expected_rows"] = None

    output = ROOT / args.output
    report = {"stages": {}, "runs": []}  # the header; save() merges into the output as it is
    report.update(
        data=os.path.relpath(args.data, ROOT),
        date=date.today().isoformat(),
        machine=machine(),
        vectors=args.vectors,
        overrides=args.set,
        published=PUBLISHED,
    )
    if args.variant:
        report["variant"] = args.variant

    measured = {"stages": {}, "runs": {}}  # what this process adds to the output

    def save() -> None:
        """Merge this process's figures into the output as it is now: runs of other seeds may
        write the same file from another scratch directory meanwhile."""
        with exclusive_lock(output, timeout=60):
            latest = read_json(output) if output.exists() else {}
            latest["stages"] = {**latest.get("stages", {}), **measured["stages"]}
            latest["runs"] = [
                r for r in latest.get("runs", []) if (r["model"], r["seed"]) not in measured["runs"]
            ] + list(measured["runs"].values())
            header = {k: v for k, v in report.items() if k not in ("stages", "runs", "models")}
            latest.update(header, models=summarize(latest["runs"]))
            write_json(output, latest)

    outputs = {
        "raw": work / "raw",
        "prepare": work / "data.json",
        "vectors": work / "vectors.json",
        "features": work / "features.json",
    }
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    for name in DATA_STAGES:
        if name in args.stages or not outputs[name].exists():
            measured["stages"][name] = timed_stage(name, path, log=log)
            print(f"{name}: {measured['stages'][name]}", flush=True)
            save()
    data = read_json(work / "data.json")
    report["pairs"] = {s: data[s]["pairs"] for s in ("train", "val", "test")}
    base_seed = params["train"]["seed"]  # params.yaml's: its runs' stages go unsuffixed
    for seed in args.seeds:
        params["train"]["seed"] = seed
        path = work / f"params_{seed}.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        for model in args.models:
            if model in DETERMINISTIC_MODELS and seed != args.seeds[0]:
                continue
            key = model if seed == base_seed else f"{model}@{seed}"
            joined = args.networks_from and params.get(model, {}).get("seeds", 1) > 1
            networks = [str(Path(d).resolve() / "models" / model) for d in args.networks_from]
            measured["stages"][f"train@{key}"] = timed_stage(
                "train",
                path,
                "--model",
                model,
                *(("--networks", *networks) if joined else ()),
                log=log,
                script=JOIN_NETWORKS if joined else None,
            )
            measured["stages"][f"evaluate@{key}"] = timed_stage(
                "evaluate", path, "--model", model, log=log
            )
            metrics = read_json(work / "metrics" / f"{model}.json")
            bundle = read_json(work / "models" / model / "bundle.json")
            run = {
                "model": model,
                "seed": seed,
                "overrides": args.set,
                "val_metrics": bundle["val_metrics"],  # what settings are chosen on
                "metrics": metrics,
            }
            if isinstance(get_kind(model), KerasKind):
                run["val_curves"] = validation_curves(Path(params["paths"]["live"]) / model)
            if joined:  # its networks were trained by these runs, not this one
                run["networks_from"] = [os.path.relpath(d, ROOT) for d in networks]
            measured["runs"][(model, seed)] = run
            save()
            print(
                f"{model} seed {seed}: test accuracy {metrics['accuracy']:.4f} ROC-AUC "
                f"{metrics['roc_auc']:.4f} log loss {metrics['log_loss']:.4f} "
                f"({metrics.get('train_seconds', 0):.0f} s training)",
                flush=True,
            )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
