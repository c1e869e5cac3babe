"""Monitoring the model after it ships: stability of scores and inputs, the PD back-test, data
freshness (:mod:`.freshness`) and the retrain trigger (:mod:`.trigger`)."""

from creditrisk.monitoring.stability import (
    MISSING,
    PSI_EPSILON,
    UNSEEN,
    StabilityBands,
    backtest,
    categorical_table,
    characteristic_stability,
    jeffreys_interval,
    numeric_table,
    psi_contributions,
    quantile_edges,
)

__all__ = [
    "MISSING",
    "PSI_EPSILON",
    "UNSEEN",
    "StabilityBands",
    "backtest",
    "categorical_table",
    "characteristic_stability",
    "jeffreys_interval",
    "numeric_table",
    "psi_contributions",
    "quantile_edges",
]
