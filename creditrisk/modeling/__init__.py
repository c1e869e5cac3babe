"""Model training for the probability of default: splits, pipeline, calibration, MLflow artifact.

Submodules (imported explicitly; importing this package loads none of the heavy libraries):

* :mod:`creditrisk.modeling.split` — the applicant-level train/test split and its files;
* :mod:`creditrisk.modeling.train` — the sklearn/XGBoost pipeline, early stopping, calibration,
  and the MLflow training run;
* :mod:`creditrisk.modeling.pd_model` — the logged MLflow model that returns calibrated PDs.
"""
