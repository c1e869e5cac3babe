"""Model governance: the gates a model must pass, deviations from the documented policy, and the
records an auditor reads (lineage, the model card, the deploy manifest).

* :mod:`.gates` — the governance gates and the canary (re-exported here: ``governance.Gate``);
* :mod:`.deviations` — parameters that differ from ``pipeline.yaml``'s policy, synthetic data;
* :mod:`.lineage` — from a registered version back to the data checksums;
* :mod:`.model_card` — the self-contained model card page and its content;
* :mod:`.manifest` — the deploy manifest of the champion.

Functions here take data and return data: the stage layer (:mod:`creditrisk.stages`) decides
where reports are written.
"""

from creditrisk.governance.gates import (
    BOUNDARY_TOLERANCE,
    VALIDATION_FILE,
    Comparison,
    Gate,
    GateFailure,
    GateThresholds,
    artefact_gates,
    canary,
    check_gate,
    consistency_gate,
    contracts_gate,
    gates_from_report,
    metric_gates,
    psi,
    psi_table,
    raise_for_failures,
    validation_report,
)

__all__ = [
    "BOUNDARY_TOLERANCE",
    "VALIDATION_FILE",
    "Comparison",
    "Gate",
    "GateFailure",
    "GateThresholds",
    "artefact_gates",
    "canary",
    "check_gate",
    "consistency_gate",
    "contracts_gate",
    "gates_from_report",
    "metric_gates",
    "psi",
    "psi_table",
    "raise_for_failures",
    "validation_report",
]
