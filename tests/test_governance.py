"""Governance gates, PSI, the canary, the validation report, lineage and the model card.

Expected numbers are worked out by hand in the comments.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from creditrisk import governance
from creditrisk.governance import (
    Gate,
    GateFailure,
    GateThresholds,
    artefact_gates,
    canary,
    consistency_gate,
    contracts_gate,
    metric_gates,
    psi,
    psi_table,
    raise_for_failures,
    validation_report,
)
from creditrisk.governance.gates import PSI_EPSILON
from creditrisk.governance.lineage import LINEAGE_FILE, build_lineage
from creditrisk.governance.model_card import MODEL_CARD_FILE, render_model_card, write_model_card
from creditrisk.io import write_json
from creditrisk.settings import Workspace

# ---------------------------------------------------------------------------------------------
# Metric gates
# ---------------------------------------------------------------------------------------------

AT_THE_LIMITS = {"test_auc": 0.70, "test_ks": 0.25, "test_ece": 0.03, "train_auc": 0.78}


def by_name(gates: list[Gate]) -> dict[str, Gate]:
    return {gate.name: gate for gate in gates}


def test_thresholds_default_to_the_documented_policy() -> None:
    limits = GateThresholds()
    assert limits.model_dump() == {
        "min_auc": 0.70,
        "min_ks": 0.25,
        "max_ece": 0.03,
        "max_train_test_auc_gap": 0.08,
        "max_approval_rate_change": 0.05,
        "max_mean_pd_change": 0.02,
        "max_score_psi": 0.10,
    }
    with pytest.raises(ValidationError):
        GateThresholds(min_acu=0.8)  # type: ignore[call-arg]  # a typo must not pass silently


def test_metric_gates_pass_exactly_at_the_limits() -> None:
    # train 0.78 − test 0.70 is 0.08000000000000007 in floating point: still at the limit.
    gates = by_name(metric_gates(AT_THE_LIMITS))
    assert set(gates) == {"auc", "ks", "ece", "train_test_auc_gap"}
    assert all(gate.passed for gate in gates.values()), [g.describe() for g in gates.values()]
    assert gates["train_test_auc_gap"].value == pytest.approx(0.08)
    assert gates["auc"].comparison == ">=" and gates["ece"].comparison == "<="


@pytest.mark.parametrize(
    ("changes", "gate"),
    [
        ({"test_auc": 0.6999, "train_auc": 0.7799}, "auc"),  # gap stays 0.08
        ({"test_ks": 0.2499}, "ks"),
        ({"test_ece": 0.0301}, "ece"),
        ({"train_auc": 0.7801}, "train_test_auc_gap"),  # gap 0.0801
    ],
)
def test_metric_gates_fail_just_beyond_the_limits(changes: dict[str, float], gate: str) -> None:
    gates = by_name(metric_gates({**AT_THE_LIMITS, **changes}))
    assert not gates[gate].passed
    assert [name for name, g in gates.items() if not g.passed] == [gate]


def test_test_auc_above_train_auc_is_no_overfitting() -> None:
    gates = by_name(metric_gates({**AT_THE_LIMITS, "test_auc": 0.80, "train_auc": 0.72}))
    assert gates["train_test_auc_gap"].value == pytest.approx(-0.08)
    assert gates["train_test_auc_gap"].passed


def test_missing_or_nan_metric_fails_its_gate() -> None:
    gates = by_name(metric_gates({"test_auc": float("nan"), "test_ks": 0.4, "train_auc": 0.8}))
    assert not gates["auc"].passed and gates["auc"].value is None
    assert not gates["ece"].passed and "test_ece" in gates["ece"].detail
    assert not gates["train_test_auc_gap"].passed
    assert gates["ks"].passed


def test_metric_gates_use_the_thresholds_given() -> None:
    strict = GateThresholds(min_auc=0.80)
    assert not by_name(metric_gates(AT_THE_LIMITS, strict))["auc"].passed
    assert by_name(metric_gates(AT_THE_LIMITS, strict))["auc"].threshold == 0.80


# ---------------------------------------------------------------------------------------------
# Artefact, consistency and contract gates
# ---------------------------------------------------------------------------------------------


def test_artefact_gates_require_existing_non_empty_artefacts(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "roc.png").write_bytes(b"\x89PNG")
    (tmp_path / "no_figures").mkdir()
    gates = by_name(
        artefact_gates(
            {
                "metrics": tmp_path / "metrics.json",
                "empty": tmp_path / "empty.json",
                "missing": tmp_path / "missing.json",
                "figures": tmp_path / "figures",
                "no_figures": tmp_path / "no_figures",
            }
        )
    )
    assert gates["artefact:metrics"].passed and gates["artefact:metrics"].value == 2
    assert gates["artefact:figures"].passed
    assert not gates["artefact:empty"].passed and "empty" in gates["artefact:empty"].detail
    assert not gates["artefact:missing"].passed
    assert "does not exist" in gates["artefact:missing"].detail
    assert not gates["artefact:no_figures"].passed


def test_consistency_gate_compares_every_numeric_metric() -> None:
    local = {"test_auc": 0.78, "test_ks": 0.41, "threshold": 0.12, "calibration": [1, 2]}
    logged = {"test_auc": 0.78, "test_ks": 0.41, "threshold": 0.12, "extra": 1.0}
    gate = consistency_gate(local, logged)
    assert gate.passed and gate.value == 0

    drifted = consistency_gate(local, {**logged, "test_ks": 0.41 + 1e-6})
    assert not drifted.passed and drifted.value == 1 and "test_ks" in drifted.detail
    assert consistency_gate(local, {**logged, "test_ks": 0.41 + 1e-6}, tolerance=1e-5).passed

    missing = consistency_gate(local, {"test_auc": 0.78})
    assert not missing.passed and missing.value == 2
    assert "threshold missing from the MLflow run" in missing.detail


def test_contracts_gate_follows_the_ingestion_summary() -> None:
    assert contracts_gate({"contracts_passed": True}).passed
    failed = contracts_gate(
        {
            "contracts_passed": False,
            "tables": {
                "application_train": {"contract": {"status": "failed"}},
                "bureau": {"contract": {"status": "passed"}},
                "credit_card_balance": {"contract": None},
            },
        }
    )
    assert not failed.passed and "application_train" in failed.detail
    assert "bureau" not in failed.detail
    assert not contracts_gate({}).passed  # no verdict is no pass


# ---------------------------------------------------------------------------------------------
# PSI
# ---------------------------------------------------------------------------------------------


def test_psi_of_a_hand_computed_two_bin_example() -> None:
    # Expected shares 0.5/0.5, actual 0.6/0.4:
    # (0.6 − 0.5)·ln(0.6/0.5) + (0.4 − 0.5)·ln(0.4/0.5) = 0.1·0.18232 + 0.1·0.22314 = 0.040546
    expected = [0.0] * 5 + [1.0] * 5
    actual = [0.0] * 6 + [1.0] * 4
    assert psi(expected, actual, bins=2) == pytest.approx(0.0405465108, abs=1e-9)
    table = psi_table(expected, actual, bins=2)
    assert table["expected_share"].tolist() == [0.5, 0.5]
    assert table["actual_share"].tolist() == pytest.approx([0.6, 0.4])
    assert table["psi"].sum() == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(1.25))


def test_psi_of_identical_samples_is_zero() -> None:
    scores = np.random.default_rng(0).beta(2, 8, size=5_000)
    assert abs(psi(scores, scores.copy())) < 1e-12
    assert len(psi_table(scores, scores)) == 10


def test_psi_replaces_empty_bins_by_epsilon() -> None:
    # Actual puts everything in the lower bin: shares 1 and 0 → 1 and 1e-4.
    expected = [0.0] * 5 + [1.0] * 5
    e, a = 0.5, PSI_EPSILON
    hand = (1 - e) * math.log(1 / e) + (a - e) * math.log(a / e)
    assert psi(expected, [0.0] * 10, bins=2) == pytest.approx(hand)
    assert math.isfinite(hand) and hand > 2


def test_psi_bins_are_quantiles_of_expected_with_open_ends() -> None:
    expected = np.arange(100, dtype=float)
    table = psi_table(expected, [-50.0, 500.0], bins=4)
    assert table["expected_count"].tolist() == [25, 25, 25, 25]
    assert table["actual_count"].tolist() == [1, 0, 0, 1]  # out-of-range values still land
    assert table["lower"].iloc[0] == -np.inf and table["upper"].iloc[-1] == np.inf


def test_psi_rejects_nan_and_empty_input() -> None:
    with pytest.raises(ValueError, match="actual"):
        psi([0.1, 0.2], [0.1, float("nan")])
    with pytest.raises(ValueError, match="expected"):
        psi([], [0.1])


# ---------------------------------------------------------------------------------------------
# Canary
# ---------------------------------------------------------------------------------------------


def test_canary_hand_picked_pds() -> None:
    champion = [0.05, 0.10, 0.20, 0.40]
    # Approval (PD < 0.15) stays 2 of 4; mean PD moves (0.02 + 0.05) / 4 = 0.0175 ≤ 0.02.
    close = by_name(canary([0.05, 0.12, 0.25, 0.40], champion, threshold_pd=0.15))
    assert close["canary_approval_rate_change"].value == 0.0
    assert close["canary_mean_pd_change"].value == pytest.approx(0.0175)
    assert close["canary_mean_pd_change"].passed and close["canary_approval_rate_change"].passed
    # 0.16 crosses the cut-off: approval 0.50 → 0.25, a change of 0.25 > 0.05.
    crossed = by_name(canary([0.05, 0.16, 0.20, 0.40], champion, threshold_pd=0.15))
    assert crossed["canary_approval_rate_change"].value == pytest.approx(0.25)
    assert not crossed["canary_approval_rate_change"].passed


def test_canary_flags_a_shifted_challenger() -> None:
    champion = np.linspace(0.01, 0.30, 2_000)
    same = canary(champion.copy(), champion, threshold_pd=0.15)
    assert all(gate.passed for gate in same)
    assert by_name(same)["canary_score_psi"].value == pytest.approx(0.0, abs=1e-12)

    shifted = by_name(canary(champion + 0.05, champion, threshold_pd=0.15))
    assert not shifted["canary_approval_rate_change"].passed
    assert not shifted["canary_mean_pd_change"].passed
    assert shifted["canary_mean_pd_change"].value == pytest.approx(0.05)
    score_psi = shifted["canary_score_psi"]
    assert not score_psi.passed
    assert isinstance(score_psi.value, float) and score_psi.value > 0.25  # a major shift


def test_canary_needs_pds_for_the_same_applicants() -> None:
    with pytest.raises(ValueError, match="same applicants"):
        canary([0.1, 0.2, 0.3], [0.1, 0.2], threshold_pd=0.15)


# ---------------------------------------------------------------------------------------------
# Report and failure
# ---------------------------------------------------------------------------------------------


def test_validation_report_lists_every_gate(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak_model = {**AT_THE_LIMITS, "test_auc": 0.65, "train_auc": 0.68}
    gates = [*metric_gates(weak_model), contracts_gate({"contracts_passed": True})]
    report = validation_report(
        gates, thresholds=GateThresholds(), pipeline_run_id="20261122T061500Z-3f9a1c"
    )
    assert report["passed"] is False and report["failed"] == ["auc"]
    assert report["pipeline_run_id"] == "20261122T061500Z-3f9a1c"
    assert report["n_gates"] == 5
    # The run id is the caller's to give: the environment is not read.
    monkeypatch.setenv("CREDITRISK_RUN_ID", "20261122T061500Z-3f9a1c")
    assert validation_report(gates)["pipeline_run_id"] is None
    assert {g["name"] for g in report["gates"]} == {
        "auc",
        "ks",
        "ece",
        "train_test_auc_gap",
        "ingestion_contracts",
    }
    auc = next(g for g in report["gates"] if g["name"] == "auc")
    assert (auc["value"], auc["threshold"], auc["passed"]) == (0.65, 0.70, False)

    # The report is JSON as it stands: written and read back, it is unchanged.
    path = write_json(workspace.reports / governance.VALIDATION_FILE, report)
    assert path == workspace.reports / "validation.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))

    assert validation_report(metric_gates(AT_THE_LIMITS))["passed"] is True
    assert validation_report([])["passed"] is False  # nothing validated is no pass


def test_gate_failure_lists_failed_gates_with_values() -> None:
    gates = metric_gates({**AT_THE_LIMITS, "test_auc": 0.65, "train_auc": 0.68, "test_ece": 0.05})
    with pytest.raises(GateFailure) as raised:
        raise_for_failures(gates)
    message = str(raised.value)
    assert "2 governance gate(s) failed" in message
    assert "auc: 0.65 (required >= 0.7) FAILED" in message
    assert "ece: 0.05 (required <= 0.03) FAILED" in message
    assert [gate.name for gate in raised.value.failed] == ["auc", "ece"]

    with pytest.raises(GateFailure):
        raise_for_failures(validation_report(gates))  # the report read back works too
    with pytest.raises(GateFailure, match="no governance gate"):
        raise_for_failures([])
    raise_for_failures(metric_gates(AT_THE_LIMITS))  # all passed: no exception


# ---------------------------------------------------------------------------------------------
# Lineage
# ---------------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lineage_links_model_back_to_data(workspace: Workspace) -> None:
    features = workspace.feature_store
    features.parent.mkdir(parents=True)
    pd.DataFrame({"SK_ID_CURR": range(30), "TARGET": [0, 1] * 15}).to_parquet(features)
    workspace.splits.mkdir(parents=True)
    splits = {
        "train": workspace.splits / "train.parquet",
        "test": workspace.splits / "test.parquet",
    }
    pd.DataFrame({"SK_ID_CURR": range(20)}).to_parquet(splits["train"])
    pd.DataFrame({"SK_ID_CURR": range(10)}).to_parquet(splits["test"])
    splits["ids"] = workspace.splits / "ids.bin"  # > 1 MiB: hashed over several chunks
    splits["ids"].write_bytes(np.random.default_rng(1).bytes(2_500_000))
    summary = {
        "snapshot_id": "f" * 64,
        "source": {"uri": "data/raw", "kind": "local"},
        "ingested_at": "2026-11-22T06:15:00+00:00",
        "contracts_passed": True,
        "tables": {
            "application_train": {
                "status": "ok",
                "file": "application_train.csv",
                "sha256": "a" * 64,
                "rows": 30,
                "bytes": 900,
            },
        },
    }

    lineage = build_lineage(
        ingestion_summary=summary,
        feature_store=features,
        feature_sql_hash="c" * 64,
        splits=splits,
        mlflow_run_id="0123abcd",
        model_name="CreditRiskPD",
        model_version=3,
        pipeline_run_id="20261122T061500Z-3f9a1c",
        runs_dir=workspace.runs,
        tracking_uri=workspace.mlflow_uri,
        code={"git": {"commit": "d" * 40}, "lock_sha256": "e" * 64},
        parameters={"deviations": [], "policy_followed": True},
    )

    assert list(lineage)[2:] == [
        "data",
        "features",
        "splits",
        "mlflow",
        "model",
        "code",
        "parameters",
        "pipeline_run",
    ]
    assert lineage["data"]["snapshot_id"] == "f" * 64
    assert lineage["data"]["tables"]["application_train"]["sha256"] == "a" * 64
    assert lineage["data"]["tables"]["application_train"]["rows"] == 30
    assert lineage["features"]["sha256"] == sha256_of(features)
    assert lineage["features"]["rows"] == 30
    assert lineage["features"]["sql_sha256"] == "c" * 64
    for name, path in splits.items():
        assert lineage["splits"][name]["sha256"] == sha256_of(path)
    assert lineage["splits"]["train"]["rows"] == 20 and lineage["splits"]["test"]["rows"] == 10
    assert lineage["splits"]["ids"]["rows"] is None
    assert lineage["mlflow"] == {"run_id": "0123abcd", "tracking_uri": workspace.mlflow_uri}
    assert lineage["model"] == {
        "name": "CreditRiskPD",
        "version": "3",
        "uri": "models:/CreditRiskPD/3",
    }
    assert lineage["code"] == {"git": {"commit": "d" * 40}, "lock_sha256": "e" * 64}
    assert lineage["parameters"] == {"deviations": [], "policy_followed": True}
    assert lineage["pipeline_run"]["dir"] == str(workspace.runs / "20261122T061500Z-3f9a1c")

    # JSON-ready: written to reports/lineage.json and read back, the checksums are intact.
    path = write_json(workspace.reports / LINEAGE_FILE, lineage)
    assert path == workspace.reports / "lineage.json"
    assert json.loads(path.read_text())["features"]["sha256"] == sha256_of(features)


def test_lineage_fails_on_a_missing_split(workspace: Workspace) -> None:
    workspace.feature_store.parent.mkdir(parents=True)
    pd.DataFrame({"SK_ID_CURR": [1]}).to_parquet(workspace.feature_store)
    with pytest.raises(FileNotFoundError, match=r"test\.parquet"):
        build_lineage(
            ingestion_summary={},
            feature_store=workspace.feature_store,
            feature_sql_hash="",
            splits={"test": workspace.splits / "test.parquet"},
            mlflow_run_id="r",
            model_name="CreditRiskPD",
            model_version=None,
            pipeline_run_id=None,
            runs_dir=workspace.runs,
            tracking_uri=workspace.mlflow_uri,
        )


# ---------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------

INJECTION = "<script>alert('pd')</script>"


def tiny_png() -> bytes:
    """A valid 1×1 grey PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def card_context() -> dict[str, object]:
    return {
        "model_name": "CreditRiskPD",
        "model_version": "4",
        "created_at": "2026-11-22T06:15:00+00:00",
        "mlflow_run_id": "0123abcd",
        "purpose": f"Estimate the 12-month PD of retail applicants {INJECTION}",
        "data": {"snapshot_id": "f" * 64, "rows": 307_511, "date": "2026-11-22"},
        "features": {
            "count": 27,
            "groups": {"application": 12, "bureau": ["BUREAU_N", "BUREAU_DEBT"]},
        },
        "performance": [
            {"split": "train", "auc": 0.781, "ks": 0.43},
            {"split": "test", "auc": 0.7712, "ks": 0.41},
        ],
        "calibration": [{"bin": 1, "predicted": 0.02, "observed": 0.021, "count": 1000}],
        "fairness": [
            {"group": "CODE_GENDER=F", "approval_rate": 0.81, "flag": False},
            {"group": INJECTION, "approval_rate": 0.62, "flag": True},
        ],
        "decision_policy": {
            "threshold": 0.12,
            "score_scaling": {"base_score": 600, "base_odds": 50, "pdo": 20},
        },
        "validation": validation_report(metric_gates({**AT_THE_LIMITS, "test_ece": 0.05})),
        "limitations": ["Trained on synthetic data", "Not for SME lending"],
        "intended_use": "Retail consumer credit decisions with human review of declines.",
        "images": {"ROC curve": tiny_png()},
    }


def test_model_card_has_every_section_and_escapes_values() -> None:
    html = render_model_card(card_context())
    for section in (
        "Purpose",
        "Data",
        "Features",
        "Performance",
        "Calibration",
        "Fairness",
        "Decision policy",
        "Validation gates",
        "Limitations",
        "Intended use",
    ):
        assert f"<h2>{section}</h2>" in html, section
    assert "<script" not in html  # the injected tag is text, not markup
    assert "&lt;script&gt;alert(&#39;pd&#39;)&lt;/script&gt;" in html
    fairness = html[html.index('id="fairness"') : html.index('id="decision-policy"')]
    assert fairness.count('class="flagged"') == 1 and "1 row(s) flagged" in fairness
    assert "Validation FAILED" in html and "FAIL" in html
    assert "307,511" in html and "0.7712" in html and "pdo: 20" not in html
    assert "<th>pdo</th>" not in html and "<td>pdo</td>" in html


def test_model_card_is_self_contained() -> None:
    html = render_model_card(card_context())
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html and "<link" not in html
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)


def test_model_card_accepts_base64_images_and_rejects_other_formats() -> None:
    import base64

    encoded = base64.b64encode(tiny_png()).decode()
    html = render_model_card(
        {"images": {"lift": encoded, "gain": "data:image/png;base64," + encoded}}
    )
    assert html.count("data:image/png;base64," + encoded) == 2
    with pytest.raises(ValueError, match="PNG"):
        render_model_card({"images": {"x": b"GIF89a"}})
    assert 'class="missing"' in render_model_card({})  # missing sections say so


def test_write_model_card_to_reports_and_run_dir(workspace: Workspace) -> None:
    html = render_model_card(card_context())
    run_dir = workspace.runs / "20261122T061500Z-3f9a1c"
    targets = [workspace.reports / MODEL_CARD_FILE, run_dir / MODEL_CARD_FILE]
    paths = write_model_card(html, targets)
    assert paths == [workspace.reports / "model_card.html", run_dir / "model_card.html"]
    assert all(path.read_text(encoding="utf-8") == html for path in paths)
