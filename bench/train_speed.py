"""Benchmark: seconds per training epoch of the Keras models, per Keras backend, on the device
each backend runs on.

Builds the Keras models as their kinds do, with their params.yaml sections, and fits each on
random inputs of the real shapes (300-d question embeddings; token ids of 6-20 real tokens
padded to features.max_len, over a 20k-word vocabulary): epoch time depends on shapes, not
values. The first epoch (graph tracing, compilation) is timed apart from the next ones. Keras
fixes its backend when imported, so each backend of `--backends` (tensorflow, jax, torch) runs
in a process of its own, one after the other on the same machine: their ratios are measured in
one run. Writes reports/bench/train_speed.json. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date

import numpy as np
import yaml
from common import ROOT, machine

from pipeline.io import write_json

VOCAB = 20_000
QUESTION_TOKENS = (6, 20)  # most Quora questions are 6-20 tokens long


def epoch_timer():
    """A Keras callback that records each epoch's seconds in `.seconds`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def model_and_inputs(name: str, params: dict, pairs: int, dim: int, rng):
    """The model as its kind builds it, over a random vocabulary, and random inputs of the
    kind it reads (token ids of real-question lengths, or embeddings)."""
    from pipeline.models import get_kind
    from pipeline.text import TextConfig
    from pipeline.text_model import FIRST_WORD_ID, PAD_ID, TextModel

    kind = get_kind(name)
    max_len = params["features"]["max_len"]
    text_model = TextModel(
        TextConfig(),
        np.array([f"w{i}" for i in range(VOCAB)]),
        rng.uniform(1, 10, VOCAB).astype(np.float32),
        rng.normal(scale=0.1, size=(VOCAB, dim)).astype(np.float32),
        max_len=max_len,
    )
    model = kind.build(params[name], text_model)
    if kind.reads == "token_ids":
        inputs = {}
        for q in ("q1", "q2"):
            ids = rng.integers(
                FIRST_WORD_ID, VOCAB + FIRST_WORD_ID, (pairs, max_len), dtype=np.int32
            )
            lengths = rng.integers(QUESTION_TOKENS[0], QUESTION_TOKENS[1] + 1, pairs)
            ids[np.arange(max_len) >= lengths[:, None]] = PAD_ID  # post-padded, as token_ids
            inputs[q] = ids
    else:
        inputs = {q: rng.normal(size=(pairs, dim)).astype(np.float32) for q in ("q1", "q2")}
    return model, inputs, params[name]["batch_size"]


def measure(args, backend: str) -> dict:
    """Every model's epoch times under this process's Keras backend."""
    import keras

    from pipeline.models.base import keras_device

    assert keras.backend.backend() == backend, keras.backend.backend()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    keras.utils.set_random_seed(params["train"]["seed"])
    device = keras_device()
    print(f"Keras {keras.__version__} on {backend}, device {device}", flush=True)
    runs = []
    for pairs in args.pairs:
        for name in args.models:
            rng = np.random.default_rng(0)
            model, inputs, batch_size = model_and_inputs(name, params, pairs, args.dim, rng)
            labels = rng.integers(0, 2, pairs).astype(np.float32)
            timer = epoch_timer()
            model.fit(
                inputs,
                labels,
                batch_size=batch_size,
                epochs=args.epochs,
                verbose=0,
                callbacks=[timer],
            )
            steady = float(np.median(timer.seconds[1:]))
            run = {
                "backend": backend,
                "device": device,
                "model": name,
                "pairs": pairs,
                "batch_size": batch_size,
                "first_epoch_s": round(timer.seconds[0], 2),
                "seconds_per_epoch": round(steady, 2),
                "pairs_per_s": round(pairs / steady),
            }
            runs.append(run)
            print(
                f"{backend:10s} {name:10s} {pairs:>8,} pairs  batch {batch_size:4d}  first epoch "
                f"{run['first_epoch_s']:7.2f} s  then {run['seconds_per_epoch']:7.2f} s/epoch "
                f"({run['pairs_per_s']:,} pairs/s)",
                flush=True,
            )
    return {"keras": keras.__version__, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[23_000])
    parser.add_argument("--epochs", type=int, default=3, help="the first is timed apart")
    parser.add_argument(
        "--models", nargs="+", default=["siamese", "residual", "birnn_cnn", "esim", "re2"]
    )
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--output", default="reports/bench/train_speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # measure this backend, print JSON
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return

    result = {"date": date.today().isoformat(), "machine": machine(), "runs": []}
    for backend in args.backends:
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", backend],
            env={**os.environ, "KERAS_BACKEND": backend},
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        lines = child.stdout.strip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        measured = json.loads(lines[-1])
        result["runs"] += measured["runs"]
        result["keras"] = measured["keras"]
    result["python"] = platform.python_version()
    write_json(ROOT / args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
