"""Evidently 0.7.x data-drift recipe (tested against evidently 0.7.23, pandas 2.3.3).

Public 0.7 API only: Report / Dataset / DataDefinition / DataDriftPreset.
"""

from __future__ import annotations

import os

# Only the evidently UI service / collector send telemetry; harmless to set anyway.
os.environ.setdefault("DO_NOT_TRACK", "1")

from collections.abc import Iterable, Sequence

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from pandas.api.types import is_bool_dtype, is_numeric_dtype

ID_COL = "SK_ID_CURR"
NON_FEATURES = ("SK_ID_CURR", "TARGET")

VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"


def split_features(df: pd.DataFrame, exclude: Iterable[str] = NON_FEATURES):
    """Numeric dtypes (float, int, nullable Int64) -> numerical; everything else -> categorical."""
    exclude = set(exclude)
    feats = [c for c in df.columns if c not in exclude]
    num = [c for c in feats if is_numeric_dtype(df[c]) and not is_bool_dtype(df[c])]
    cat = [c for c in feats if c not in set(num)]
    return num, cat


def make_definition(
    num: Sequence[str],
    cat: Sequence[str],
    id_column: str | None = ID_COL,
    other: Sequence[str] = ("TARGET",),
) -> DataDefinition:
    # Set every list explicitly: a list left as None is auto-inferred from the data
    # (e.g. categorical_columns=None turns int columns with <=10 levels into categorical).
    return DataDefinition(
        id_column=id_column,
        numerical_columns=list(num),
        categorical_columns=list(cat),
        text_columns=[],
        datetime_columns=[],
        list_columns=[],
        unknown_columns=list(other),  # ignored by the drift preset
    )


def untestable_columns(reference: pd.DataFrame, current: pd.DataFrame, cols: Sequence[str]) -> dict:
    """Columns Evidently would raise on: absent, or no non-null finite value in ref or current."""
    out = {}
    for c in cols:
        if c not in current.columns:
            out[c] = "missing_in_current"
            continue
        for name, df in (("reference", reference), ("current", current)):
            s = df[c]
            if is_numeric_dtype(s) and not is_bool_dtype(s):
                ok = pd.notna(s.replace([float("inf"), float("-inf")], float("nan"))).any()
            else:
                ok = s.notna().any()
            if not ok:
                out[c] = f"all_null_in_{name}"
                break
    return out


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    exclude: Iterable[str] = NON_FEATURES,
    num_method: str | None = None,
    cat_method: str | None = None,
    num_threshold: float | None = None,
    cat_threshold: float | None = None,
    per_column_method: dict | None = None,
    per_column_threshold: dict | None = None,
    drift_share: float = 0.5,
    guard: bool = True,
):
    """Returns (snapshot, skipped) where skipped = {column: reason} for untestable columns."""
    if guard and len(current) == 0:
        raise ValueError(
            "current batch is empty: nothing to compare"
        )  # Evidently raises a confusing error
    num, cat = split_features(reference, exclude)
    skipped = untestable_columns(reference, current, num + cat) if guard else {}
    num = [c for c in num if c not in skipped]
    cat = [c for c in cat if c not in skipped]
    keep = num + cat
    dd = make_definition(num, cat, id_column=None, other=())
    ref_ds = Dataset.from_pandas(reference[keep], data_definition=dd)
    cur_ds = Dataset.from_pandas(current[keep], data_definition=dd)
    preset = DataDriftPreset(
        columns=num + cat,  # explicit list: never drift-test anything else
        num_method=num_method,
        cat_method=cat_method,
        num_threshold=num_threshold,
        cat_threshold=cat_threshold,
        per_column_method=per_column_method,
        per_column_threshold=per_column_threshold,
        drift_share=drift_share,
    )
    # include_tests=True is what gives the per-column drifted flag (test status FAIL = drifted)
    report = Report([preset], include_tests=True)
    snapshot = report.run(current_data=cur_ds, reference_data=ref_ds)
    snapshot.set_name("data_drift")
    return snapshot, skipped


def drift_results(snapshot, drift_share: float = 0.5) -> dict:
    """Tidy result from snapshot.dict() (needs Report(include_tests=True) for `drifted`).

    If the report has no DriftedColumnsCount metric (run_drift_fast), the summary is
    computed here with Evidently's rule: dataset_drift = share_drifted >= drift_share."""
    d = snapshot.dict()
    per_col, summary = [], None
    by_metric_id = {}
    for m in d["metrics"]:
        cfg = m["config"]
        if cfg["type"] == VALUE_DRIFT:
            row = {
                "column": cfg["column"],
                "method": cfg.get("method"),
                "threshold": float(cfg["threshold"]),
                "score": float(m["value"]),
                "drifted": None,
            }
            per_col.append(row)
            by_metric_id[m["id"]] = row
        elif cfg["type"] == DRIFTED_COUNT:
            share_thr = cfg.get("drift_share", 0.5)
            summary = {
                "n_drifted": int(m["value"]["count"]),
                "share_drifted": float(m["value"]["share"]),
                "drift_share_threshold": share_thr,
                # Evidently's rule (legacy get_dataset_drift): share >= drift_share
                "dataset_drift": bool(m["value"]["share"] >= share_thr),
                "_count_metric_id": m["id"],
            }
    for t in d["tests"]:
        mid = t["metric_config"]["metric_id"]
        if mid in by_metric_id:
            by_metric_id[mid]["drifted"] = str(getattr(t["status"], "value", t["status"])) == "FAIL"
        elif summary is not None and mid == summary["_count_metric_id"]:
            summary["dataset_drift_test_status"] = str(
                getattr(t["status"], "value", t["status"])
            )  # FAIL <=> drift
    if summary is not None:
        summary.pop("_count_metric_id")
    else:
        n = sum(bool(r["drifted"]) for r in per_col)
        share = n / len(per_col) if per_col else 0.0
        summary = {
            "n_drifted": n,
            "share_drifted": share,
            "drift_share_threshold": drift_share,
            "dataset_drift": bool(share >= drift_share),
        }
    summary["n_columns"] = len(per_col)
    return {"summary": summary, "columns": per_col}


def run_drift_lean(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    exclude: Iterable[str] = NON_FEATURES,
    num_method: str | None = None,
    cat_method: str | None = None,
    num_threshold: float | None = None,
    cat_threshold: float | None = None,
    drift_share: float = 0.5,
):
    """Same numbers as run_drift, without the preset container: the preset's render step
    (legacy DataDriftTable: a 3rd drift computation + ~2 plotly figures per column) is skipped.
    The HTML then shows the count/share and one widget per column, but no summary table."""
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    if len(current) == 0:
        raise ValueError("current batch is empty: nothing to compare")
    num, cat = split_features(reference, exclude)
    skipped = untestable_columns(reference, current, num + cat)
    num = [c for c in num if c not in skipped]
    cat = [c for c in cat if c not in skipped]
    dd = make_definition(num, cat, id_column=None, other=())
    metrics = [
        DriftedColumnsCount(
            columns=num + cat,
            drift_share=drift_share,
            num_method=num_method,
            cat_method=cat_method,
            num_threshold=num_threshold,
            cat_threshold=cat_threshold,
        )
    ]
    metrics += [ValueDrift(column=c, method=num_method, threshold=num_threshold) for c in num]
    metrics += [ValueDrift(column=c, method=cat_method, threshold=cat_threshold) for c in cat]
    report = Report(metrics, include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[num + cat], data_definition=dd),
        reference_data=Dataset.from_pandas(reference[num + cat], data_definition=dd),
    )
    return snapshot, skipped


def run_drift_fast(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    exclude: Iterable[str] = NON_FEATURES,
    num_method: str | None = None,
    cat_method: str | None = None,
    num_threshold: float | None = None,
    cat_threshold: float | None = None,
    reference_sample: int | None = None,
    seed: int = 0,
):
    """Fastest public-0.7 path: one ValueDrift per column, nothing else.

    DriftedColumnsCount / the preset run the legacy DatasetDriftMetric (and DataDriftTable),
    which compute a full pandas .corr() matrix of all numeric columns of reference AND current
    (NaN-aware pairwise, O(rows * cols^2)): ~10 s per pass here, used only for plots.
    Summary (count/share/dataset_drift) is then computed by drift_results(snapshot, drift_share)."""
    from evidently.metrics import ValueDrift

    if len(current) == 0:
        raise ValueError("current batch is empty: nothing to compare")
    if reference_sample and len(reference) > reference_sample:
        reference = reference.sample(reference_sample, random_state=seed)
    num, cat = split_features(reference, exclude)
    skipped = untestable_columns(reference, current, num + cat)
    num = [c for c in num if c not in skipped]
    cat = [c for c in cat if c not in skipped]
    dd = make_definition(num, cat, id_column=None, other=())
    metrics = [ValueDrift(column=c, method=num_method, threshold=num_threshold) for c in num]
    metrics += [ValueDrift(column=c, method=cat_method, threshold=cat_threshold) for c in cat]
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current[num + cat], data_definition=dd),
        reference_data=Dataset.from_pandas(reference[num + cat], data_definition=dd),
    )
    return snapshot, skipped
