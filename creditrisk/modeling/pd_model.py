"""The PD model as an MLflow artifact: ``pyfunc.load_model(uri).predict(rows)`` gives the PD.

Serving loads ``models:/CreditRiskPD@champion`` and needs the *calibrated probability of
default*, not a 0/1 label and not the raw tree score. The sklearn flavour would return labels
(or a two-column ``predict_proba``) and could not carry the calibrator, so the model is a
``mlflow.pyfunc.PythonModel`` whose state is stored in formats that are data, not code:

* ``xgboost_model.json`` — the trees, in XGBoost's own JSON format (stable across XGBoost
  versions, readable, no pickle);
* ``encoder.skops`` — the fitted ColumnTransformer in skops' format, loaded with no type
  trusted beyond skops' defaults (scikit-learn, numpy);
* ``calibrator.json`` — Platt's slope and intercept, or the isotonic knots;
* ``model_meta.json`` — features, categories, parameters and training metrics.

The ``PythonModel`` itself is logged as *model from code*: a three-line script that imports
:class:`CreditRiskPDModel` from this package, so no cloudpickle file is written either. Loading
therefore needs the ``creditrisk`` package importable (serving imports it anyway: it runs the
same feature SQL).

Signature: every model feature by name; categories as ``string``; DOUBLE features as
``double``; BIGINT features as ``Any``, because pandas stores an integer column as int64 when a
batch has no NULL and as float64 when it has one, and MLflow accepts neither int64 for a
``double`` column nor float64 for a ``long`` one. Their numeric type is checked by
:func:`creditrisk.modeling.model.feature_frame` instead. Extra input columns (SK_ID_CURR,
TARGET) are dropped by MLflow's schema enforcement with a warning.
"""

from __future__ import annotations

import importlib.metadata
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import AnyType, ColSpec, Schema

from creditrisk.features import catalog
from creditrisk.io import write_json
from creditrisk.modeling.model import Calibrator, TrainedModel, TrainParams

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

#: Name of the model inside its run: ``runs:/<run_id>/model``.
ARTIFACT_NAME = "model"

#: Name of the single output column.
OUTPUT_COLUMN = "probability_of_default"

#: Format version of the files below; bump when their layout changes.
FORMAT_VERSION = 1

BOOSTER_FILE = "xgboost_model.json"
ENCODER_FILE = "encoder.skops"
CALIBRATOR_FILE = "calibrator.json"
META_FILE = "model_meta.json"

#: The entry point MLflow executes to build the (state-less) PythonModel at load time.
_MODEL_CODE = '''"""MLflow model-from-code entry point of the creditrisk PD model."""

import mlflow

from creditrisk.modeling.pd_model import CreditRiskPDModel

mlflow.models.set_model(CreditRiskPDModel())
'''

#: Distributions the logged model needs at load time (pinned to the training environment).
_REQUIREMENTS = (
    "mlflow",
    "xgboost",
    "scikit-learn",
    "skops",
    "pandas",
    "numpy",
    "pydantic",
    "creditrisk",
)

_SIGNATURE_TYPES = {"DOUBLE": "double", "VARCHAR": "string"}


def save_trained(trained: TrainedModel, directory: Path) -> dict[str, str]:
    """Write the model's state as data files into ``directory``.

    Returns:
        Artifact name -> file path, as ``mlflow.pyfunc.log_model(artifacts=…)`` takes them.
    """
    import skops.io

    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "booster": directory / BOOSTER_FILE,
        "encoder": directory / ENCODER_FILE,
        "calibrator": directory / CALIBRATOR_FILE,
        "meta": directory / META_FILE,
    }
    trained.classifier.save_model(paths["booster"])
    skops.io.dump(trained.encoder, paths["encoder"])
    write_json(paths["calibrator"], trained.calibrator.to_dict())
    write_json(
        paths["meta"],
        {
            "format_version": FORMAT_VERSION,
            "features": list(trained.features),
            "categorical": list(trained.categorical),
            "categories": trained.categories(),
            "best_iteration": trained.best_iteration,
            "params": trained.params.model_dump(),
            "metrics": trained.metrics,
        },
    )
    return {name: str(path) for name, path in paths.items()}


def load_trained(artifacts: Mapping[str, str]) -> TrainedModel:
    """Rebuild a :class:`TrainedModel` from the files :func:`save_trained` wrote.

    Args:
        artifacts: Artifact name -> local path (``context.artifacts`` inside MLflow).

    Raises:
        ValueError: When the files are of an unknown format version or the encoder file holds
            types skops does not trust by default.
    """
    import skops.io
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    meta = json.loads(Path(artifacts["meta"]).read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"model files have format version {meta.get('format_version')}, "
            f"this code reads version {FORMAT_VERSION}"
        )
    untrusted = skops.io.get_untrusted_types(file=artifacts["encoder"])
    if untrusted:
        raise ValueError(f"the encoder file holds untrusted types {untrusted}; refusing to load")
    encoder = skops.io.load(artifacts["encoder"])
    classifier = XGBClassifier()
    classifier.load_model(artifacts["booster"])
    calibrator = Calibrator.from_dict(
        json.loads(Path(artifacts["calibrator"]).read_text(encoding="utf-8"))
    )
    return TrainedModel(
        pipeline=Pipeline([("encode", encoder), ("model", classifier)]),
        calibrator=calibrator,
        params=TrainParams.model_validate(meta["params"]),
        features=tuple(meta["features"]),
        categorical=tuple(meta["categorical"]),
        metrics=dict(meta.get("metrics", {})),
    )


class CreditRiskPDModel(PythonModel):
    """The pyfunc: calibrated probability of default per applicant.

    ``mlflow.pyfunc.load_model(uri).unwrap_python_model()`` returns this object; besides
    :meth:`predict` it offers the raw model for explanations (:meth:`contributions`,
    :meth:`predict_log_odds`, :meth:`importance`) and the full :attr:`trained` model.
    """

    def __init__(self) -> None:
        self._trained: TrainedModel | None = None

    def load_context(self, context: PythonModelContext) -> None:
        """Read the model files MLflow downloaded beside the model."""
        self._trained = load_trained(context.artifacts)

    @property
    def trained(self) -> TrainedModel:
        """The underlying :class:`TrainedModel` (encoder, trees, calibrator)."""
        if self._trained is None:
            raise RuntimeError("the model has not been loaded (load it with mlflow.pyfunc)")
        return self._trained

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.Series:
        """Calibrated PD for each row of ``model_input`` (feature-store rows).

        Returns:
            A float Series named ``probability_of_default``, indexed like the input.
        """
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return pd.Series(self.trained.predict_pd(frame), index=frame.index, name=OUTPUT_COLUMN)

    def predict_pd(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated PD, as :meth:`TrainedModel.predict_pd`."""
        return self.trained.predict_pd(frame)

    def predict_log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds of the trees, as :meth:`TrainedModel.predict_log_odds`."""
        return self.trained.predict_log_odds(frame)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """SHAP contributions to the raw log-odds, as :meth:`TrainedModel.contributions`."""
        return self.trained.contributions(frame)

    def importance(self) -> pd.DataFrame:
        """Gain per feature, as :meth:`TrainedModel.importance`."""
        return self.trained.importance()


def signature(trained: TrainedModel) -> ModelSignature:
    """Inputs: the model's features by name and type; output: the PD (see module docstring)."""
    inputs = Schema([_input_spec(name) for name in trained.features])
    outputs = Schema([ColSpec("double", OUTPUT_COLUMN)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _input_spec(name: str) -> ColSpec:
    dtype = _SIGNATURE_TYPES.get(catalog.feature(name).dtype)
    return ColSpec(dtype, name) if dtype else ColSpec(AnyType(), name)


def feature_manifest(trained: TrainedModel) -> dict[str, Any]:
    """The model's inputs for the run record: name, type, group, meaning, levels."""
    categories = trained.categories()
    return {
        "n_features": len(trained.features),
        "features": [
            {
                "name": name,
                "dtype": catalog.feature(name).dtype,
                "kind": catalog.feature(name).kind,
                "group": catalog.feature(name).group,
                "description": catalog.feature(name).description,
                **({"categories": categories[name]} if name in categories else {}),
            }
            for name in trained.features
        ],
        "feature_sql_hash": catalog.sql_hash(),
    }


def pip_requirements() -> list[str]:
    """The distributions (with installed versions) the model needs to load."""
    pins = []
    for distribution in _REQUIREMENTS:
        try:
            pins.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(distribution)
    return pins


def log_model(
    trained: TrainedModel,
    *,
    input_example: pd.DataFrame | None,
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Log the model into the active MLflow run as ``model``.

    Args:
        trained: The trained model.
        input_example: A few real feature-store rows; only the model's features are kept.
        registered_model_name: Also create a registry version under this name.

    Returns:
        MLflow's ModelInfo (``model_uri``, ``signature``, ``registered_model_version``, …).
    """
    example = None
    if input_example is not None:
        example = input_example[list(trained.features)].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="creditrisk-model-") as scratch:
        directory = Path(scratch)
        artifacts = save_trained(trained, directory / "artifacts")
        code = directory / "creditrisk_pd_model.py"
        code.write_text(_MODEL_CODE, encoding="utf-8")
        return mlflow.pyfunc.log_model(
            name=ARTIFACT_NAME,
            python_model=str(code),
            artifacts=artifacts,
            signature=signature(trained),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            metadata={
                "creditrisk_format_version": FORMAT_VERSION,
                "output": f"{OUTPUT_COLUMN}: calibrated probability of default in [0, 1]",
                "calibration_method": trained.calibrator.method,
                "best_iteration": trained.best_iteration,
            },
        )
