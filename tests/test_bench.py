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
