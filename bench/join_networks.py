"""The train stage for a Keras model whose networks were trained already, in other runs.

`<kind>.seeds: N` trains its i-th network exactly as a one-network run with seed
train.seed + i does (tests/test_models.py checks that the N-network bundle scores the mean of
the one-network bundles). So the one-network bundles of those seeds, trained on the same data
with the same settings, join into the bundle that N networks would have made: this runs the
train stage with each network's training replaced by loading it from its bundle, and refuses a
bundle whose settings, data or seed differ. Used by `bench/full_release.py --networks-from`.

    python bench/join_networks.py --params P --model re2 --networks DIR [DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.bundle import load_bundle
from pipeline.io import read_json, sha256_of
from pipeline.models.base import KerasKind
from pipeline.params import read_params
from pipeline.stages import train


def one_network_bundles(directories: list[str]) -> dict[int, Path]:
    """Each one-network bundle by the seed it was trained with."""
    by_seed = {}
    for directory in map(Path, directories):
        if not (directory / "bundle.json").is_file():
            raise SystemExit(f"{directory}: not a model bundle (no bundle.json)")
        meta = read_json(directory / "bundle.json")
        if meta.get("networks", 1) != 1:
            raise SystemExit(f"{directory}: holds {meta['networks']} networks, not one")
        by_seed[meta["train_params"]["seed"]] = directory
    return by_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--networks", nargs="+", required=True, help="one-network bundles")
    args = parser.parse_args()
    bundles = one_network_bundles(args.networks)
    features = Path(read_params(args.params)["paths"]["features"])
    text_model_hash = sha256_of(features / "text_model.npz")

    def load_network(kind, params, train_cfg, text_model, train_pairs, val, live) -> tuple:
        """What `KerasKind._fit_network` returns, from the bundle of train_cfg's seed."""
        seed = train_cfg["seed"]
        if seed not in bundles:
            raise SystemExit(f"no one-network bundle of seed {seed} among {args.networks}")
        bundle = load_bundle(bundles[seed])
        meta = bundle.meta
        settings = {**params, "seeds": 1}
        if meta["params"] != settings or meta["train_params"] != {**train_cfg, "seed": seed}:
            raise SystemExit(f"{bundles[seed]}: trained with other settings than {args.params}")
        if meta["files"]["text_model.npz"] != text_model_hash:
            raise SystemExit(f"{bundles[seed]}: trained on other features than {args.params}'s")
        return bundle.keras_model, meta["train_seconds"], meta["epochs_run"], meta["device"], 1

    KerasKind._fit_network = load_network
    train.main(["--params", args.params, "--model", args.model])


if __name__ == "__main__":
    main()
