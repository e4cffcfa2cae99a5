"""The benchmarks' shared helpers."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from conftest import ROOT

RUN_A_STAGE = """
import sys
from pathlib import Path
sys.path.insert(0, "bench")
from common import timed_stage
timed_stage("sleeper", Path("params.yaml"), log=Path(sys.argv[1]), script=Path(sys.argv[2]))
"""


def test_a_benchmark_stopped_by_sigterm_stops_its_stage(tmp_path):
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\ntime.sleep(120)\n")
    bench = subprocess.Popen(
        [sys.executable, "-c", RUN_A_STAGE, str(tmp_path / "bench.log"), str(sleeper)], cwd=ROOT
    )
    deadline = time.monotonic() + 30
    while not (stages := psutil.Process(bench.pid).children()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stages, "the stage never started"
    bench.send_signal(signal.SIGTERM)
    assert bench.wait(timeout=30) == 128 + signal.SIGTERM
    assert not stages[0].is_running()


def test_the_machine_names_its_cpu_where_linux_tells_it():
    described = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, 'bench'); import common; print(common.machine())",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.fullmatch(r"[\w-]+( \(.+\))?, \d+ cores, Python [\d.]+\n", described), described
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert " (" in described.split(",")[0], described


def test_validation_curves_read_every_epoch_of_a_keras_models_dvclive_log(tmp_path):
    """What bench/full_release.py records per Keras run: the raw and averaged weights'
    validation metrics of each epoch, read back from the model's dvclive directory."""
    from pipeline.models.base import training_curves

    sys.path.insert(0, str(ROOT / "bench"))
    from full_release import validation_curves

    callback = training_curves(tmp_path / "re2")
    epochs = [
        {"loss": 0.5, "val_loss": 0.4, "val_averaged_loss": 0.38},
        {"loss": 0.4, "val_loss": 0.35, "val_averaged_loss": 0.33},
    ]
    for epoch, logs in enumerate(epochs):
        callback.on_epoch_end(epoch, logs)
    callback.on_train_end()
    assert validation_curves(tmp_path / "re2") == {
        "averaged_loss": [0.38, 0.33],
        "loss": [0.4, 0.35],
    }


def test_the_best_threshold_never_splits_pairs_of_one_value():
    """bench/vector_similarity.py's accuracy of a score alone: the best cut of the sorted
    scores, where no threshold can call one of two equal scores a duplicate and not the other."""
    sys.path.insert(0, str(ROOT / "bench"))
    from vector_similarity import best_threshold_accuracy

    labels = np.array([1, 1, 0, 0])
    assert best_threshold_accuracy(np.array([0.9, 0.8, 0.3, 0.1]), labels) == 1.0
    assert best_threshold_accuracy(np.array([0.9, 0.8, 0.8, 0.1]), labels) == 0.75
    assert best_threshold_accuracy(np.ones(4), labels) == 0.5
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 20, 500) / 20, rng.integers(0, 2, 500)
    every_threshold = [*np.unique(scores), np.inf]
    assert best_threshold_accuracy(scores, labels) == max(
        ((scores >= t) == labels).mean() for t in every_threshold
    )
