"""Stage 07 — monitor (``07_monitor.ipynb``, ``creditrisk monitor``): is the champion still fit
for the population it scores?

* **Reference:** the training split (``data/splits/train.parquet``) scored by the champion — the
  population the model learned from. Its file is checked against the split hash the champion's
  MLflow run recorded; a mismatch is reported, not hidden.
* **Current:** the pipeline's test split (default), or a production batch given as raw tables
  (a folder or ``s3://`` prefix, e.g. the generator's drifted batch). A batch is scored by the
  batch scorer, so its features come from the same SQL as everywhere else. A batch's outcomes
  come from, in this order: the ``labels`` file given, the batch's ``labels.csv``, or the
  ``TARGET`` column of its ``application_train`` (a Kaggle-format sample); the split's from its
  ``TARGET``. ``reports/stability.json`` records which (``summary.current.labels``).
* **Reports:** the Evidently drift report over every model feature
  (``reports/drift_report.html``/``.json``); the PSI of the score with its bin table, the CSI of
  every feature with its bin table, and the PD back-test per score band when labels exist
  (``reports/stability.json``); source freshness of a raw-table batch
  (``reports/data_freshness.json``).
* **Decision:** the run joins ``reports/monitor_history.jsonl``, and the retrain trigger decides
  on its series (``reports/retrain_trigger.json``); with ``auto_retrain`` a retrain is launched.
* **Metrics:** score PSI, drift share, freshness and rows scored go to CloudWatch when
  ``CREDITRISK_CLOUDWATCH_ENABLED`` is set.

An interactive run writes its reports and its copy of the monitor history under
``scratch/07_monitor/``; it publishes nothing to CloudWatch and launches no retrain.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from creditrisk import registry
from creditrisk.data import sources
from creditrisk.io import read_json, write_json
from creditrisk.modeling.split import split_files
from creditrisk.monitoring import drift as drift_module
from creditrisk.monitoring.freshness import check_freshness
from creditrisk.monitoring.stability import (
    MISSING,
    StabilityBands,
    backtest,
    characteristic_stability,
    numeric_table,
)
from creditrisk.monitoring.trigger import (
    RetrainRules,
    TriggerDecision,
    record_and_decide,
    retrain_command,
)
from creditrisk.provenance import file_sha256, to_json_value, utc_now
from creditrisk.scoring import Scorer
from creditrisk.settings import EngineName, child_environment
from creditrisk.stages.context import RunContext
from creditrisk.stages.params import StageParams, parameter

ID_COLUMN, TARGET_COLUMN = "SK_ID_CURR", "TARGET"
LABELS_FILE = "labels.csv"
#: Where a population's outcomes came from, as ``stability.json`` records it.
LABELS_PARAMETER, LABELS_CSV, LABELS_TARGET_COLUMN, LABELS_SPLIT = (
    "labels_parameter",
    "labels_csv",
    "target_column",
    "test_split",
)
TEST_SPLIT = "test_split"
PRODUCTION = "production"

Echo = Callable[[str], object]
HISTORY_FILE = "monitor_history.jsonl"
TRIGGER_FILE = "retrain_trigger.json"
STABILITY_FILE = "stability.json"
FRESHNESS_FILE = "data_freshness.json"


class Params(StageParams):
    """The monitor stage's parameters (the notebook's parameters cell, ``creditrisk monitor``)."""

    STAGE = "monitor"

    current: str = parameter(
        "",
        "raw tables of a production batch (folder or s3://…); empty: the test split",
        policy="operational",
    )
    labels: str = parameter(
        "",
        "SK_ID_CURR,TARGET outcomes; empty: <current>/labels.csv, else its TARGET",
        policy="operational",
    )
    model_uri: str = parameter(
        "", "registry URI of the model to monitor; empty: the champion", policy="operational"
    )
    engine: EngineName = parameter(
        "duckdb", "engine that computes and scores a batch's features", policy="operational"
    )
    reference_sample: int = parameter(
        50000, "reference rows the drift tests use (seeded), 0 for all", ge=0
    )
    numeric_threshold: float = parameter(
        0.1, "Wasserstein distance (normed) from which a number has drifted", gt=0
    )
    categorical_threshold: float = parameter(
        0.1, "Jensen-Shannon distance from which a category has drifted", gt=0
    )
    score_bins: int = parameter(10, "quantile bins of the score PSI", ge=2)
    feature_bins: int = parameter(10, "quantile bins of each numeric feature's CSI", ge=2)
    watch: float = parameter(0.10, "stability index from which to watch", ge=0)
    act: float = parameter(0.25, "stability index from which to act", ge=0)
    max_score_psi: float = parameter(0.25, "trigger: a run breaches above this score PSI", ge=0)
    max_drift_share: float = parameter(
        0.10, "dataset drift, and a trigger breach, above this share of features", gt=0, le=1
    )
    consecutive: int = parameter(2, "trigger: breaches in a row that call for a retrain", ge=1)
    calibration: bool = parameter(True, "trigger: ... or when the back-test fails (outcomes known)")
    max_age_hours: float = parameter(
        48.0, "freshness: maximum age of a raw-table batch's files, in hours", gt=0
    )
    auto_retrain: bool = parameter(False, "launch the retrain command when a retrain is called for")
    retrain_command: str = parameter(
        "", "what auto_retrain launches; empty: creditrisk run --force --wait 21600"
    )


@dataclass
class Population:
    """One side of the comparison: features, the champion's scores and (maybe) outcomes."""

    name: str
    features: pd.DataFrame
    scores: pd.DataFrame
    labels: pd.Series | None = None
    #: Where ``labels`` came from: ``source`` (one of the LABELS_* names) and ``location``.
    labels_origin: dict[str, str] | None = None
    #: The engine that computed the features and scores of a batch (None: scored here).
    engine: dict[str, str] | None = None


@dataclass
class Outcome:
    """Everything the notebook shows; the files are in ``paths``."""

    summary: dict[str, Any]
    score_table: pd.DataFrame
    feature_summary: pd.DataFrame
    feature_tables: dict[str, pd.DataFrame]
    drift: drift_module.DriftResult
    backtest: pd.DataFrame | None
    decision: TriggerDecision
    freshness: dict[str, Any] | None
    paths: dict[str, Path] = field(default_factory=dict)
    launched: dict[str, Any] | None = None
    published: dict[str, Any] | None = None

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        s = self.summary
        return {
            "status": s["status"],
            "stream": s["stream"],
            "model_version": s["model"]["version"],
            "rows": s["current"]["rows"],
            "score_psi": s["score_psi"],
            "drift_share": s["drift"]["drift_share"],
            "drifted_features": s["drift"]["drifted"],
            "features_act": s["features_act"],
            "calibrated": (s["backtest"] or {}).get("calibrated"),
            "retrain": self.decision.retrain,
            "retrain_launched": self.launched is not None,
            "duration_seconds": s["timings_seconds"]["total"],
        }

    def headline(self) -> str:
        s = self.summary
        return (
            f"{s['status'].upper()}: {s['current']['rows']:,} applicants ({s['stream']}) against "
            f"{s['reference']['rows']:,}: score PSI {s['score_psi']:.3f} ({s['score_band']}), "
            f"{s['drift']['drifted']}/{s['drift']['tested']} features drifted, "
            f"{s['features_act']} feature(s) in the act band; "
            f"retrain {'CALLED FOR' if self.decision.retrain else 'not called for'}"
        )


def run(params: Params, ctx: RunContext, *, echo: Echo | None = None) -> Outcome:
    """Monitor the champion on the current population; writes every report and the decision.

    Raises:
        FileNotFoundError: The training split is absent (run the pipeline first).
        ScoringError: The model cannot be loaded.
        BatchError: A production batch cannot be read.
        CloudWatchError: Publishing failed (after every report was written).
    """
    say = echo or (lambda _: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    tracking_uri = ctx.tracking_uri
    out = ctx.outputs
    model_uri = params.model_uri or registry.champion_uri(ctx.settings.model_name)
    scorer = Scorer.load(model_uri, tracking_uri=tracking_uri)
    features, categorical = list(scorer.features), list(scorer.trained.categorical)
    say(f"model {scorer.info.uri} ({len(features)} features)")
    mark = lap("load_model", started)

    reference = _reference(scorer, ctx)
    mark = lap("score_reference", mark)
    freshness = None
    if params.current:
        current = _production_batch(params, scorer, ctx)
        freshness = check_freshness(params.current, max_age_hours=params.max_age_hours)
        write_json(out.reports / FRESHNESS_FILE, freshness)
    else:
        current = _test_split(scorer, ctx)
    say(f"reference {len(reference.features):,} rows, current {len(current.features):,} rows")
    mark = lap("score_current", mark)

    bands = StabilityBands(watch=params.watch, act=params.act)
    score_table = numeric_table(
        reference.scores["score"].to_numpy(dtype=float),
        current.scores["score"].to_numpy(dtype=float),
        params.score_bins,
    )
    score_psi = float(score_table["psi"].sum())
    feature_summary, feature_tables = characteristic_stability(
        reference.features,
        current.features,
        features,
        categorical,
        bins=params.feature_bins,
        bands=bands,
    )
    mark = lap("stability", mark)

    drift = drift_module.run_drift(
        reference.features,
        current.features,
        features,
        categorical,
        drift_module.DriftSettings(
            numeric_threshold=params.numeric_threshold,
            categorical_threshold=params.categorical_threshold,
            drift_share=params.max_drift_share,
            reference_sample=params.reference_sample or None,
        ),
    )
    mark = lap("drift", mark)
    say(f"drift: {drift.summary['drifted']}/{drift.summary['tested']} features")

    tested = None
    if current.labels is not None:
        tested = backtest(
            current.scores["probability_of_default"].to_numpy(dtype=float),
            current.labels.to_numpy(),
            current.scores["score_band"].astype(str).to_numpy(),
        )

    written = drift_module.write_drift_report(drift, out.reports)
    paths = {"drift_html": written["html"], "drift_json": written["json"]}
    mark = lap("drift_report", mark)
    summary = _summary(params, scorer, ctx, reference, current, score_psi, bands, drift)
    summary["features_act"] = int((feature_summary["band"] == "act").sum())
    summary["features_watch"] = int((feature_summary["band"] == "watch").sum())
    summary["backtest"] = None if tested is None else _backtest_summary(tested)
    if freshness is not None:
        summary["freshness"] = _freshness_summary(freshness)

    rules = RetrainRules(
        max_score_psi=params.max_score_psi,
        max_drift_share=params.max_drift_share,
        consecutive=params.consecutive,
        calibration=params.calibration,
    )
    paths["history"] = _history(ctx)
    paths["trigger"] = out.reports / TRIGGER_FILE
    observation = _observation(summary)
    decision = record_and_decide(observation, rules, paths["history"], paths["trigger"])
    summary["breaches"] = rules.breaches(observation)
    summary["status"] = _status(summary)
    launched = None
    if decision.retrain and params.auto_retrain:
        if ctx.interactive_mode:
            say("auto_retrain: an interactive run launches no retrain")
        else:
            launched = launch_retrain(ctx, params.retrain_command or None)
            _add_to_json(paths["trigger"], {"launched": launched})
            say(f"retrain launched: pid {launched['pid']}, log {launched['log']}")
    summary["decision"] = {**decision.as_dict(), "auto_retrain": params.auto_retrain}
    summary["timings_seconds"] = {**timings, "total": round(time.perf_counter() - started, 3)}

    paths["stability"] = out.reports / STABILITY_FILE
    write_json(
        paths["stability"],
        to_json_value(
            {
                "summary": summary,
                "score": {
                    "psi": score_psi,
                    "band": bands.band(score_psi),
                    "bins": labelled_bins(score_table),
                },
                "features": [
                    {**row, "bins": labelled_bins(feature_tables[row["feature"]])}
                    for row in feature_summary.to_dict(orient="records")
                ],
                "backtest": tested,
            }
        ),
    )
    if freshness is not None:
        paths["freshness"] = out.reports / FRESHNESS_FILE
    if ctx.run_dir is not None:  # the run folder is the audit record: the report goes with it
        paths["run_drift_html"] = Path(shutil.copy2(paths["drift_html"], ctx.run_dir))
    outcome = Outcome(
        summary=summary,
        score_table=score_table,
        feature_summary=feature_summary,
        feature_tables=feature_tables,
        drift=drift,
        backtest=tested,
        decision=decision,
        freshness=freshness,
        paths=paths,
        launched=launched,
    )
    if ctx.mode == "pipeline":
        outcome.published = _publish(outcome, ctx)
    else:
        outcome.published = {"published": False, "reason": "interactive run"}
    return outcome


# ---------------------------------------------------------------------------------------------
# The two populations
# ---------------------------------------------------------------------------------------------


def _scored(scorer: Any, frame: pd.DataFrame) -> pd.DataFrame:
    scores = scorer.score(frame, reasons=0)
    return pd.DataFrame(
        {
            ID_COLUMN: scores.ids,
            "probability_of_default": scores.probability_of_default,
            "score": scores.score,
            "score_band": scores.score_band.astype(str).to_numpy(),
            "decision": scores.decision,
        }
    )


def _reference(scorer: Any, ctx: RunContext) -> Population:
    path = split_files(ctx.workspace.splits)["train"]
    if not path.exists():
        raise FileNotFoundError(
            f"the training split {path} is absent: run the pipeline (make pipeline) first"
        )
    frame = pd.read_parquet(path)
    return Population("training split", frame, _scored(scorer, frame))


def _test_split(scorer: Any, ctx: RunContext) -> Population:
    path = split_files(ctx.workspace.splits)["test"]
    if not path.exists():
        raise FileNotFoundError(f"the test split {path} is absent: run the pipeline first")
    frame = pd.read_parquet(path)
    origin = {"source": LABELS_SPLIT, "location": f"{path.name} {TARGET_COLUMN}"}
    return Population("test split", frame, _scored(scorer, frame), frame[TARGET_COLUMN], origin)


def _production_batch(params: Params, scorer: Any, ctx: RunContext) -> Population:
    """Score the batch with the batch scorer, keeping its features for the comparison."""
    from creditrisk.scoring.batch import score_batch

    work = ctx.outputs.data / "monitoring"
    source = params.current
    if not sources.is_s3(source):
        source = str((ctx.workspace.home / Path(source).expanduser()).resolve())
    work.mkdir(parents=True, exist_ok=True)
    result = score_batch(
        source,
        work / "current_scores.parquet",
        scorer=scorer,
        tracking_uri=ctx.tracking_uri,
        reasons=0,
        work_dir=work,
        features_output=work / "current_features.parquet",
        engine=params.engine,
        spark_settings=ctx.settings.spark,
    )
    features = pd.read_parquet(work / "current_features.parquet")
    scores = pd.read_parquet(result.output)
    # The scorer writes in feature order; align on the applicant id to be sure.
    features = features.set_index(ID_COLUMN, drop=False).loc[scores[ID_COLUMN]]
    features = features.reset_index(drop=True)
    labels, origin = batch_labels(params.labels, source, scores[ID_COLUMN], features)
    return Population(
        f"batch {params.current}", features, scores, labels, origin, engine=result.engine
    )


def batch_labels(
    labels_file: str, source: str, ids: pd.Series, features: pd.DataFrame
) -> tuple[pd.Series | None, dict[str, str] | None]:
    """Realised outcomes of a batch aligned to ``ids``, and where they came from.

    In this order: ``labels_file`` (``SK_ID_CURR,TARGET``), the batch's own ``labels.csv``,
    then the ``TARGET`` its application_train rows carry (``features`` holds it, aligned to
    ``ids``, as the feature SQL passes it through). None, None when the batch has none.

    Raises:
        ValueError: The outcomes found miss some scored applicant (a back-test on part of a
            batch would be read as one on all of it).
    """
    path: Path | None = None
    if labels_file:
        path, source_name = Path(labels_file).expanduser(), LABELS_PARAMETER
    elif not sources.is_s3(source) and (Path(source) / LABELS_FILE).exists():
        path, source_name = Path(source) / LABELS_FILE, LABELS_CSV
    if path is not None:
        labels = pd.read_csv(path, usecols=[ID_COLUMN, TARGET_COLUMN]).drop_duplicates(ID_COLUMN)
        aligned = labels.set_index(ID_COLUMN)[TARGET_COLUMN].reindex(ids.to_numpy())
        if aligned.isna().any():
            missing = int(aligned.isna().sum())
            raise ValueError(f"{path}: no outcome for {missing} scored applicant(s)")
        origin = {"source": source_name, "location": str(path)}
        return aligned.astype("int64").reset_index(drop=True), origin
    if TARGET_COLUMN not in features.columns or features[TARGET_COLUMN].isna().all():
        return None, None
    target = features[TARGET_COLUMN].reset_index(drop=True)
    if target.isna().any():
        raise ValueError(
            f"{source}: {TARGET_COLUMN} is known for {int(target.notna().sum())} of "
            f"{len(target)} scored applicant(s) (application_test rows have none): give the "
            f"outcomes of all of them as {LABELS_FILE} or labels=, or leave application_test out"
        )
    origin = {"source": LABELS_TARGET_COLUMN, "location": f"{source} application_train"}
    return target.astype("int64"), origin


# ---------------------------------------------------------------------------------------------
# Summary, history, publishing
# ---------------------------------------------------------------------------------------------


def _reference_check(scorer: Any, ctx: RunContext) -> dict[str, Any]:
    """Does the training split on disk match the one the champion's run recorded?"""
    from mlflow.tracking import MlflowClient

    recorded = (
        MlflowClient(ctx.tracking_uri)
        .get_run(scorer.info.run_id)
        .data.tags.get("split_sha256.train")
    )
    on_disk = file_sha256(split_files(ctx.workspace.splits)["train"])
    return {
        "split_sha256": on_disk,
        "recorded_sha256": recorded,
        "matches_champion": recorded is not None and recorded == on_disk,
    }


def _population_summary(population: Population) -> dict[str, Any]:
    scores = population.scores
    return {
        "name": population.name,
        "rows": len(scores),
        "mean_pd": float(scores["probability_of_default"].mean()) if len(scores) else None,
        "approval_rate": float((scores["decision"] == "approve").mean()) if len(scores) else None,
        "labelled": population.labels is not None,
        "labels": population.labels_origin,
        "engine": population.engine,
    }


def _summary(
    params: Params,
    scorer: Any,
    ctx: RunContext,
    reference: Population,
    current: Population,
    score_psi: float,
    bands: StabilityBands,
    drift: drift_module.DriftResult,
) -> dict[str, Any]:
    return {
        "monitored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pipeline_run_id": ctx.run_id,
        "mode": ctx.mode,
        "stream": PRODUCTION if params.current else TEST_SPLIT,
        "source": params.current or "data/splits/test.parquet",
        "model": {
            "name": scorer.info.name,
            "version": scorer.info.version,
            "uri": scorer.info.uri,
            "mlflow_run_id": scorer.info.run_id,
        },
        "reference": {
            **_population_summary(reference),
            **_reference_check(scorer, ctx),
        },
        "current": _population_summary(current),
        "score_psi": score_psi,
        "score_band": bands.band(score_psi),
        "bands": {"watch": bands.watch, "act": bands.act},
        "drift": {k: v for k, v in drift.summary.items() if k != "settings"},
        "drifted_features": drift.drifted,
    }


def _status(summary: dict[str, Any]) -> str:
    """``act`` when this run breaches the retrain rules; ``watch`` when anything moved (a drifted
    feature, a score or feature index past the watch band, a miscalibrated score band);
    otherwise ``stable``."""
    if summary["breaches"]:
        return "act"
    moved = (
        summary["drift"]["drifted"] > 0
        or summary["score_band"] != "stable"
        or summary["features_act"] + summary["features_watch"] > 0
        or bool((summary["backtest"] or {}).get("bands_miscalibrated"))
    )
    return "watch" if moved else "stable"


def _backtest_summary(table: pd.DataFrame) -> dict[str, Any]:
    overall = table[table["group"] == "all"].iloc[0]
    return {
        "applicants": int(overall["applicants"]),
        "realised_default_rate": float(overall["realised_default_rate"]),
        "mean_pd": float(overall["mean_pd"]),
        "calibrated": bool(overall["calibrated"]),
        "bands_miscalibrated": table.loc[
            (table["group"] != "all") & ~table["calibrated"], "group"
        ].tolist(),
    }


def _freshness_summary(report: dict[str, Any]) -> dict[str, Any]:
    ages = [row["age_hours"] for row in report["tables"] if row["age_hours"] is not None]
    return {
        "stale": report["stale"],
        "stale_tables": sum(row["stale"] for row in report["tables"])
        + len(report["missing_required"]),
        "max_age_hours": max(ages) if ages else None,
        "reasons": report["reasons"],
    }


def _observation(summary: dict[str, Any]) -> dict[str, Any]:
    """What the history keeps of one run: enough to decide, and to chart the series."""
    return {
        "monitored_at": summary["monitored_at"],
        "stream": summary["stream"],
        "source": summary["source"],
        "model_version": summary["model"]["version"],
        "pipeline_run_id": summary["pipeline_run_id"],
        "rows": summary["current"]["rows"],
        "score_psi": round(summary["score_psi"], 6),
        "drift_share": round(summary["drift"]["drift_share"], 6),
        "drifted_features": summary["drift"]["drifted"],
        "features_tested": summary["drift"]["tested"],
        "features_act": summary["features_act"],
        "realised_default_rate": (summary["backtest"] or {}).get("realised_default_rate"),
        "mean_pd": summary["current"]["mean_pd"],
        "calibrated": (summary["backtest"] or {}).get("calibrated"),
    }


def _publish(outcome: Outcome, ctx: RunContext) -> dict[str, Any]:
    from creditrisk.monitoring.cloudwatch import MonitorMetrics, publish

    s = outcome.summary
    freshness = s.get("freshness") or {}
    metrics = MonitorMetrics(
        score_psi=s["score_psi"],
        drift_share=s["drift"]["drift_share"],
        drifted_features=s["drift"]["drifted"],
        features_tested=s["drift"]["tested"],
        rows_scored=s["current"]["rows"],
        stale_tables=freshness.get("stale_tables"),
        max_source_age_hours=freshness.get("max_age_hours"),
        retrain_recommended=outcome.decision.retrain,
        model_version=s["model"]["version"],
    )
    return publish(metrics, ctx.settings.cloudwatch)


def labelled_bins(table: pd.DataFrame) -> pd.DataFrame:
    """A bin table with a readable ``bin`` label first: ``(0.12, 0.35]``, a level, ``(missing)``."""
    if "level" in table.columns:
        labels = table["level"].astype(str)
        rest = table.drop(columns="level")
    else:
        labels = pd.Series(
            [
                MISSING if np.isnan(lo) and np.isnan(hi) else f"({lo:.6g}, {hi:.6g}]"
                for lo, hi in zip(table["lower"], table["upper"], strict=True)
            ],
            index=table.index,
        )
        rest = table
    return pd.concat([labels.rename("bin"), rest], axis=1)


def _add_to_json(path: Path, extra: dict[str, Any]) -> None:
    write_json(path, {**read_json(path), **extra})


def _history(ctx: RunContext) -> Path:
    """The monitor history this run appends to.

    Interactively: a copy of the workspace's history in the scratch folder, so the decision is
    made on the real series while the workspace's history stays untouched.
    """
    history = ctx.outputs.reports / HISTORY_FILE
    production = ctx.workspace.reports / HISTORY_FILE
    if history != production and production.exists() and not history.exists():
        history.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(production, history)
    return history


def launch_retrain(ctx: RunContext, command: str | None = None) -> dict[str, Any]:
    """Start the retrain command detached from this process; it outlives the monitor.

    It runs in the workspace (its log in ``runs/retrain-<time>.log``) as a run of its own: the
    pipeline run id of this process is not passed on, and the default command waits for the
    workspace lock this run holds.

    Returns:
        ``pid``, ``command``, ``log`` and ``launched_at``, for ``retrain_trigger.json``.
    """
    ctx.require_pipeline("launching a retrain")
    argv = retrain_command(command)
    launched_at = utc_now()
    workspace = ctx.workspace
    log = workspace.runs / f"retrain-{launched_at:%Y%m%dT%H%M%SZ}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = child_environment(
        {"CREDITRISK_HOME": str(workspace.home)}, remove=["CREDITRISK_RUN_ID"]
    )
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=workspace.home,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the monitor's process group
        )
    return {
        "pid": process.pid,
        "command": argv,
        "log": str(log),
        "launched_at": launched_at.isoformat(timespec="seconds"),
    }
