"""Monitoring the model after it ships: stability of scores and inputs, and the PD back-test."""

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
