"""Model training for the probability of default: splits, pipeline, calibration, MLflow artifact.

Submodules (imported explicitly; importing this package loads none of the heavy libraries):

* :mod:`creditrisk.modeling.model` — the fitted model type (:class:`TrainedModel`, the
  calibrator, the hyper-parameters) and how it predicts; imported by training, the MLflow format
  and scoring alike;
* :mod:`creditrisk.modeling.split` — the applicant-level train/test split;
* :mod:`creditrisk.modeling.train` — the sklearn/XGBoost pipeline, early stopping, calibration;
* :mod:`creditrisk.modeling.pd_model` — the logged MLflow model that returns calibrated PDs;
* :mod:`creditrisk.modeling.evaluate`, :mod:`~creditrisk.modeling.scorecard`,
  :mod:`~creditrisk.modeling.explain`, :mod:`~creditrisk.modeling.plots` — metrics, cut-offs,
  score scaling, reason codes and the evaluation figures.
"""
