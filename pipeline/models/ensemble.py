"""`ensemble`: a logistic-regression stacker over other models' probabilities.

Members (`ensemble.members`) are trained bundles of the pipeline. The stacker reads the logit
of each member's probability. No pair is scored by a stacker that saw its label: the members
never saw the validation split's labels except for early stopping, the stacker's validation
predictions are out of fold (`ensemble.folds`-fold cross-validation on the validation split),
and the decision threshold is chosen on those out-of-fold predictions; the stacker that is
saved is then fitted on the whole validation split. The test split is never used.

The bundle holds ensemble.json: each member's bundle path (relative to the ensemble's
bundle), the sha256 of every file in it at fit time, and the stacker's weights. Loading checks
the hashes, so a member that is missing or was retrained since is a clear error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import BundleError, ParamsError
from pipeline.io import changed_files, file_hashes, read_json, write_json
from pipeline.models.base import Fitted, ModelKind, ScoringParts, sigmoid, to_probability
from pipeline.params import Int, Names, Number

MODEL_FILE = "ensemble.json"


def _trained_kinds() -> list[str]:
    from pipeline.models import trained_kinds  # the registry, which imports this module

    return trained_kinds()


@dataclass
class MemberEncodings:
    """Each member's per-question rows for the same questions, indexable as one."""

    rows: tuple

    def __getitem__(self, index) -> MemberEncodings:
        return MemberEncodings(tuple(rows[index] for rows in self.rows))


def member_logits(members: list, enc_a: MemberEncodings, enc_b: MemberEncodings) -> np.ndarray:
    """(pairs, members) logit of each member's probability, clipped away from 0 and 1."""
    columns = []
    for bundle, a, b in zip(members, enc_a.rows, enc_b.rows, strict=True):
        raw = np.asarray(bundle.parts.per_pair(a, b)).ravel()
        p = np.clip(to_probability(raw, bundle.meta.get("calibration")), 1e-6, 1 - 1e-6)
        columns.append(np.log(p / (1 - p)))
    return np.column_stack(columns)


def member_encodings(members: list, questions, batch_size: int) -> MemberEncodings:
    return MemberEncodings(
        tuple(m.encode_questions(m.model_inputs(questions), batch_size) for m in members)
    )


def out_of_fold_probabilities(
    x: np.ndarray, labels: np.ndarray, folds: int, c: float, seed: int
) -> np.ndarray:
    """Each pair's stacker probability from a stacker fitted on the other folds only. The
    folds depend on the number of pairs and the seed, never on the labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict

    splits = KFold(folds, shuffle=True, random_state=seed)
    stacker = LogisticRegression(C=c)
    return cross_val_predict(stacker, x, labels, cv=splits, method="predict_proba")[:, 1]


class Ensemble(ModelKind):
    name = "ensemble"
    reads = "text"
    model_file = MODEL_FILE

    param_fields = {"members": Names(_trained_kinds, minimum=2), "folds": Int(2), "C": Number()}

    def check_params(self, section: dict, params: dict) -> None:
        trained = params.get("train", {}).get("models", [])
        outside = [name for name in section["members"] if name not in trained]
        if outside:
            raise ParamsError(
                f"ensemble.members: {outside} not in train.models, so the pipeline does not "
                "train them"
            )

    def fit(self, params, train_cfg, text_model, train, val, dirs) -> Fitted:
        from sklearn.linear_model import LogisticRegression

        from dvclive import Live
        from pipeline.bundle import Pairs, load_bundle

        start = time.perf_counter()
        models_dir = dirs.models
        try:
            members = [load_bundle(models_dir / name) for name in params["members"]]
        except BundleError as err:
            raise BundleError(f"ensemble member: {err}") from None
        pairs = Pairs.from_columns(val["q1"], val["q2"], text_model.text)
        rows = member_encodings(members, pairs.questions, train_cfg["predict_batch"])
        x = member_logits(members, rows[pairs.first], rows[pairs.second])
        labels = np.asarray(val["label"])
        out_of_fold = out_of_fold_probabilities(
            x, labels, params["folds"], params["C"], int(train_cfg["seed"])
        )
        stacker = LogisticRegression(C=params["C"]).fit(x, labels)
        seconds = time.perf_counter() - start
        weights = dict(zip(params["members"], stacker.coef_[0].tolist(), strict=True))
        with Live(str(dirs.live), dvcyaml=False, save_dvc_exp=False) as live:
            for name, weight in weights.items():
                live.log_metric(f"weight/{name}", weight)
        model = {
            "members": [
                {
                    "name": name,
                    "path": os.path.relpath(models_dir / name, models_dir / self.name),
                    "files": file_hashes(models_dir / name),
                }
                for name in params["members"]
            ],
            "coef": stacker.coef_[0].tolist(),
            "intercept": float(stacker.intercept_[0]),
        }
        info = {
            "device": "CPU (scikit-learn stacker)",
            "train_seconds": round(seconds, 2),
            "epochs_run": 1,
            "seconds_per_epoch": round(seconds, 2),
            "stacker_weights": weights,
        }
        return Fitted(model, out_of_fold.astype(np.float32), info)

    def save(self, model: dict, directory: Path, text_model) -> dict:
        write_json(directory / MODEL_FILE, model)
        metas = [read_json(directory / m["path"] / "bundle.json") for m in model["members"]]
        return {
            "members": [member["name"] for member in model["members"]],
            # a chunk holds every member's rows of its questions
            "encoding_floats": sum(meta.get("encoding_floats") or 0 for meta in metas),
        }

    def load(self, directory: Path) -> ScoringParts:
        from pipeline.bundle import load_bundle

        spec = read_json(directory / MODEL_FILE)
        members = []
        for member in spec["members"]:
            path = (directory / member["path"]).resolve()
            if not (path / "bundle.json").is_file():
                raise BundleError(f"{directory}: member bundle {member['path']} is missing")
            if changed_files(path, member["files"]):
                raise BundleError(
                    f"{directory}: member bundle {member['path']} changed since the ensemble "
                    "was fitted (retrain the ensemble)"
                )
            members.append(load_bundle(path))
        coef, intercept = np.asarray(spec["coef"], np.float64), float(spec["intercept"])

        def per_pair(enc_a: MemberEncodings, enc_b: MemberEncodings) -> np.ndarray:
            return sigmoid(member_logits(members, enc_a, enc_b) @ coef + intercept)

        return ScoringParts(
            None,
            lambda questions, batch_size: member_encodings(members, questions, batch_size),
            per_pair,
        )


KIND = Ensemble()
