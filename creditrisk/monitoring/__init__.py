"""Monitoring the model after it ships: stability of scores and inputs and the PD back-test
(:mod:`.stability`), data drift with Evidently (:mod:`.drift`), data freshness
(:mod:`.freshness`), the retrain trigger (:mod:`.trigger`), CloudWatch metrics
(:mod:`.cloudwatch`) and the monitor stage that runs them all (:mod:`.monitor`)."""

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
