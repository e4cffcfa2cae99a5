"""Stage `report`: one Markdown table of every model's test metrics, training time and device.

Reads params `train.models`, `evaluate` and metrics/<model>.json (and metrics/ensemble.json);
writes reports/models.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import run_stage
from pipeline.io import atomic_path, read_json
from pipeline.metrics import METRIC_KEYS

log = logging.getLogger("report")
SECTIONS = ("train", "evaluate")  # params.yaml sections read, checked first
COLUMNS = [*METRIC_KEYS, "train_seconds", "device"]


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(rows: dict[str, dict]) -> str:
    lines = [
        "# Model comparison (test split)",
        "",
        "Threshold chosen on the validation split; majority_accuracy is the floor "
        "any model must beat.",
        "",
        "| model | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(metrics.get(c)) for c in COLUMNS) + " |")
    blog = {n: m["blog_precision"] for n, m in rows.items() if m.get("blog_precision") is not None}
    for name, value in blog.items():
        lines += [
            "",
            f'`{name}` blog_precision (the 2017 post\'s "accuracy", share of duplicates '
            f"among pairs with distance < 0.5): {value:.4f}",
        ]
    return "\n".join(lines) + "\n"


def run(params: dict) -> str:
    metrics_dir = Path(params["evaluate"]["metrics_dir"])
    names = [*params["train"]["models"], "ensemble"]  # the stacked model, when it was built
    rows = {
        name: read_json(metrics_dir / f"{name}.json")
        for name in names
        if name in params["train"]["models"] or (metrics_dir / f"{name}.json").exists()
    }
    text = render(rows)
    out = Path(params["evaluate"]["report"])
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("wrote %s (%d models)", out, len(rows))
    return text


def print_table(params: dict) -> None:
    print(run(params))


def main(argv: list[str] | None = None) -> None:
    run_stage("report", __doc__.splitlines()[0], print_table, SECTIONS, argv)


if __name__ == "__main__":
    main()
