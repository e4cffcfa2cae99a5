"""The benchmarks' shared helpers."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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
