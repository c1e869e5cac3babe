"""The model card: one self-contained HTML page describing a trained PD model.

The page has inline CSS and no external assets (figures are embedded as ``data:`` URIs), so it
renders the same from ``reports/``, a run folder or an e-mail attachment. Every value is
HTML-escaped (Jinja autoescape): a category name or a reason string cannot inject markup.

Context keys read by :func:`render_model_card` (all optional; a missing section says so):
    ``model_name``, ``model_version``, ``created_at``, ``mlflow_run_id``, ``pipeline_run_id``
    ``purpose``          str
    ``data``             mapping: ``snapshot_id``, ``rows``, ``date`` (+ any other keys)
    ``features``         mapping: ``count`` and ``groups`` (group → count or list of names)
    ``performance``      mapping metric → value, or a list of rows (e.g. one per split)
    ``calibration``      list of rows (e.g. per PD bin: predicted, observed, count)
    ``fairness``         list of rows; a true ``flag`` (or ``flagged``) marks a row for review
    ``decision_policy``  mapping: ``threshold``, ``score_scaling`` (mapping) (+ other keys)
    ``validation``       a validation report (``passed``, ``gates``) or a list of gates
    ``deviations``       deviation records (:mod:`creditrisk.governance.deviations`): the
                         banner on top names each one, and relaxed gates qualify the verdict
    ``synthetic``        the synthetic generator's marker when the data were generated
    ``draft``            str: why this card is a draft (an interactive preview), shown on top
    ``limitations``      str or list of str
    ``intended_use``     str or list of str
    ``images``           mapping caption → PNG (bytes, a file path, or base64 / data URI text)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from creditrisk.governance import deviations as deviation_records
from creditrisk.io import write_text

MODEL_CARD_FILE = "model_card.html"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DATA_URI_PREFIX = "data:image/png;base64,"
_FLAG_KEYS = ("flag", "flagged")

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Model card — {{ model_name }}{% if model_version %} v{{ model_version }}{% endif %}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
         max-width: 60rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
  h1 { margin-bottom: 0.2rem; }
  h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; margin-top: 2rem; }
  .meta { color: #59636e; font-size: 0.9rem; }
  table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
  th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left;
           vertical-align: top; }
  th { background: #f6f8fa; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  tr.flagged td { background: #fff8c5; }
  .pass { color: #1a7f37; font-weight: 600; }
  .fail { color: #cf222e; font-weight: 600; }
  .verdict { padding: 0.5rem 0.8rem; border-radius: 6px; display: inline-block; }
  .verdict.pass { background: #dafbe1; }
  .verdict.fail { background: #ffebe9; }
  .verdict.warn { background: #fff8c5; color: #7d4e00; font-weight: 600; }
  .banner { padding: 0.6rem 0.9rem; border-radius: 6px; margin: 0.4rem 0; }
  .banner.relaxed, .banner.draft { background: #ffebe9; border: 1px solid #cf222e; }
  .banner.changed, .banner.synthetic { background: #fff8c5; border: 1px solid #bf8700; }
  .banner.tightened, .banner.operational { background: #f6f8fa; border: 1px solid #d0d7de;
                                           font-size: 0.9rem; }
  .missing { color: #59636e; font-style: italic; }
  figure { margin: 1rem 0; }
  figure img { max-width: 100%; border: 1px solid #d0d7de; }
  footer { margin-top: 3rem; color: #59636e; font-size: 0.8rem; }
</style>
</head>
<body>
{%- macro table(t) -%}
{%- if t and t.rows -%}
<table>
  <thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
  <tbody>
  {%- for row in t.rows %}
    <tr{% if row.flagged %} class="flagged"{% endif %}>
    {%- for cell in row.cells %}<td{% if cell.css %} class="{{ cell.css }}"{% endif %}>
    {{- cell.text }}</td>{% endfor -%}
    </tr>
  {%- endfor %}
  </tbody>
</table>
{%- else -%}
<p class="missing">Not recorded.</p>
{%- endif -%}
{%- endmacro -%}
{%- macro paragraphs(items) -%}
{%- if not items -%}<p class="missing">Not recorded.</p>
{%- elif items | length == 1 -%}<p>{{ items[0] }}</p>
{%- else -%}<ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>
{%- endif -%}
{%- endmacro %}
<header>
  <h1>Model card — {{ model_name }}{% if model_version %} v{{ model_version }}{% endif %}</h1>
  <p class="meta">
    {%- if created_at %}created {{ created_at }}{% endif %}
    {%- if mlflow_run_id %} · MLflow run {{ mlflow_run_id }}{% endif %}
    {%- if pipeline_run_id %} · pipeline run {{ pipeline_run_id }}{% endif %}</p>
  {%- if draft %}
  <p class="banner draft" id="draft"><strong>Draft:</strong> {{ draft }}</p>
  {%- endif %}
  {%- for banner in banners %}
  <p class="banner {{ banner.kind }}" id="deviation-{{ banner.kind }}">{{ banner.text }}</p>
  {%- endfor %}
</header>

<section id="purpose"><h2>Purpose</h2>
{{ paragraphs(purpose) }}
</section>

<section id="data"><h2>Data</h2>
{{ table(data) }}
</section>

<section id="features"><h2>Features</h2>
{%- if feature_count is not none %}<p>{{ feature_count }} model input features.</p>{% endif %}
{{ table(feature_groups) }}
</section>

<section id="performance"><h2>Performance</h2>
{{ table(performance) }}
</section>

<section id="calibration"><h2>Calibration</h2>
{{ table(calibration) }}
</section>

<section id="fairness"><h2>Fairness</h2>
{%- if fairness_flags %}
<p class="fail">{{ fairness_flags }} row(s) flagged for review.</p>
{%- elif fairness and fairness.rows %}
<p class="pass">No row flagged.</p>
{%- endif %}
{{ table(fairness) }}
</section>

<section id="decision-policy"><h2>Decision policy</h2>
{{ table(decision_policy) }}
{%- if score_scaling and score_scaling.rows %}
<h3>Score scaling</h3>
{{ table(score_scaling) }}
{%- endif %}
</section>

<section id="validation"><h2>Validation gates</h2>
{%- if validation_passed is not none %}
<p class="verdict {{ verdict_css }}">{{ verdict }}</p>
{%- endif %}
{{ table(validation) }}
</section>
{%- if images %}

<section id="figures"><h2>Figures</h2>
{%- for image in images %}
<figure><img alt="{{ image.caption }}" src="{{ image.src }}">
<figcaption>{{ image.caption }}</figcaption></figure>
{%- endfor %}
</section>
{%- endif %}

<section id="limitations"><h2>Limitations</h2>
{{ paragraphs(limitations) }}
</section>

<section id="intended-use"><h2>Intended use</h2>
{{ paragraphs(intended_use) }}
</section>

<footer>Generated by creditrisk. This page is self-contained: it loads nothing from the
network.</footer>
</body>
</html>
"""


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "NaN"
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_text(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    return str(value)


def _cell(value: Any) -> dict[str, str]:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return {"text": _text(value), "css": "num" if numeric else ""}


def _key_value_table(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not mapping:
        return None
    rows = [
        {"cells": [_cell(key), _cell(value)], "flagged": False} for key, value in mapping.items()
    ]
    return {"columns": ["item", "value"], "rows": rows}


def _is_flagged(row: Mapping[str, Any]) -> bool:
    return any(bool(row.get(key)) for key in _FLAG_KEYS)


def _row_table(rows: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    if not rows:
        return None
    columns: list[str] = []
    for row in rows:
        columns.extend(str(key) for key in row if str(key) not in columns)
    rendered = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if column in _FLAG_KEYS:
                cells.append(
                    {"text": "⚠ flagged" if value else "ok", "css": "fail" if value else ""}
                )
            else:
                cells.append(_cell(value))
        rendered.append({"cells": cells, "flagged": _is_flagged(row)})
    return {"columns": columns, "rows": rendered}


def _table(value: Any) -> dict[str, Any] | None:
    """A mapping becomes a two-column table, a list of mappings one row per item."""
    if isinstance(value, Mapping):
        return _key_value_table(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return _row_table([dict(row) for row in value])
    return None


def _items(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def _validation_table(validation: Any) -> tuple[dict[str, Any] | None, bool | None]:
    """The gates as a table (failed rows highlighted) and the overall verdict."""
    if isinstance(validation, Mapping):
        gates, passed = list(validation.get("gates", [])), validation.get("passed")
    elif validation:
        gates, passed = list(validation), None
    else:
        return None, None
    rows = []
    for gate in gates:
        record = gate.model_dump() if hasattr(gate, "model_dump") else dict(gate)
        ok = bool(record.get("passed"))
        rule = f"{record.get('comparison', '')} {_text(record.get('threshold'))}"
        cells = [
            _cell(record.get("name")),
            _cell(record.get("value")),
            {"text": rule, "css": ""},
            {"text": "pass" if ok else "FAIL", "css": "pass" if ok else "fail"},
            _cell(record.get("detail", "")),
        ]
        rows.append({"cells": cells, "flagged": not ok})
    if passed is None:
        passed = bool(rows) and not any(row["flagged"] for row in rows)
    columns = ["gate", "value", "rule", "result", "detail"]
    return ({"columns": columns, "rows": rows} if rows else None), bool(passed)


def _png_data_uri(image: bytes | str | Path) -> str:
    """A ``data:image/png;base64,…`` URI for raw PNG bytes, a PNG file or base64 text.

    Raises:
        ValueError: The image is not a PNG (or not valid base64).
    """
    if isinstance(image, Path):
        image = image.read_bytes()
    if isinstance(image, str):
        try:
            image = base64.b64decode(image.removeprefix(_DATA_URI_PREFIX), validate=True)
        except binascii.Error as exc:
            raise ValueError("model card image is neither PNG bytes nor base64 text") from exc
    if not image.startswith(_PNG_SIGNATURE):
        raise ValueError("model card images must be PNG")
    return _DATA_URI_PREFIX + base64.b64encode(image).decode("ascii")


def _features(features: Any) -> tuple[Any, dict[str, Any] | None]:
    if not isinstance(features, Mapping):
        return None, None
    groups = features.get("groups") or {}
    if isinstance(groups, Mapping):
        rows = [
            {"group": name, "features": len(members), "names": members}
            if isinstance(members, list | tuple)
            else {"group": name, "features": members}
            for name, members in groups.items()
        ]
    else:
        rows = [{"group": name} for name in groups]
    return features.get("count"), _row_table(rows)


def _template_context(context: Mapping[str, Any]) -> dict[str, Any]:
    policy = dict(context.get("decision_policy") or {})
    scaling = policy.pop("score_scaling", None)
    validation, validation_passed = _validation_table(context.get("validation"))
    fairness = _table(context.get("fairness"))
    feature_count, feature_groups = _features(context.get("features"))
    images = [
        {"caption": str(caption), "src": _png_data_uri(image)}
        for caption, image in (context.get("images") or {}).items()
    ]
    deviations = deviation_records.from_records(context.get("deviations"))
    synthetic = context.get("synthetic")
    verdict, verdict_css = _verdict(validation_passed, deviations)
    return {
        "draft": context.get("draft"),
        "banners": [
            {"kind": kind, "text": text}
            for kind, text in deviation_records.summary_lines(deviations, synthetic)
        ],
        "verdict": verdict,
        "verdict_css": verdict_css,
        "model_name": context.get("model_name", "CreditRiskPD"),
        "model_version": context.get("model_version"),
        "created_at": context.get("created_at"),
        "mlflow_run_id": context.get("mlflow_run_id"),
        "pipeline_run_id": context.get("pipeline_run_id"),
        "purpose": _items(context.get("purpose")),
        "data": _table(context.get("data")),
        "feature_count": feature_count,
        "feature_groups": feature_groups,
        "performance": _table(context.get("performance")),
        "calibration": _table(context.get("calibration")),
        "fairness": fairness,
        "fairness_flags": sum(row["flagged"] for row in (fairness or {}).get("rows", [])),
        "decision_policy": _key_value_table(policy),
        "score_scaling": _table(scaling),
        "validation": validation,
        "validation_passed": validation_passed,
        "images": images,
        "limitations": _items(context.get("limitations")),
        "intended_use": _items(context.get("intended_use")),
    }


def _verdict(
    passed: bool | None, deviations: Sequence[deviation_records.Deviation]
) -> tuple[str, str]:
    """The validation verdict in words: a pass at relaxed limits is not an unqualified pass."""
    if passed is None:
        return "", ""
    if not passed:
        return "Validation FAILED", "fail"
    qualification = deviation_records.verdict_suffix(deviations)
    if qualification:
        return f"All gates passed — {qualification}", "warn"
    return "All gates passed at the documented policy", "pass"


def render_model_card(context: Mapping[str, Any]) -> str:
    """Render the model card as one self-contained HTML page.

    Args:
        context: The card's content; keys are listed in the module docstring.

    Returns:
        The HTML text, with every value escaped.

    Raises:
        ValueError: An image is not a PNG.
    """
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(_TEMPLATE).render(**_template_context(context))


def write_model_card(html: str, targets: Sequence[Path]) -> list[Path]:
    """Write the card to every target (``reports/model_card.html``, the run folder, …).

    Returns:
        The paths written, in the order given.
    """
    return [write_text(target, html) for target in targets]


# ---------------------------------------------------------------------------------------------
# The model card's content
# ---------------------------------------------------------------------------------------------

PURPOSE = (
    "Estimates the probability that an applicant for a retail loan defaults (payment "
    "difficulties, the Home Credit TARGET definition) from the application and whatever credit "
    "history the lender holds: credit bureau records and monthly balances, previous "
    "applications, instalment payments, credit-card and POS/cash loan balances. The PD is "
    "calibrated to observed default rates, mapped to scorecard points and bands, and turned "
    "into an approve/decline decision at the cut-off of the credit policy below."
)

INTENDED_USE = [
    "Application scoring for retail cash and revolving loans, as one input to the credit "
    "decision, with adverse reason codes for every decline.",
    "Not for pricing, collections or behavioural scoring of existing customers without "
    "re-validation; not for populations the training data does not cover.",
]

LIMITATIONS = [
    "Trained on one snapshot; the score's stability is monitored (PSI/CSI) and a drift above "
    "the policy triggers re-training.",
    "Calibrated on a held-out fold of the same period: a shift in the default rate (economic "
    "cycle) makes the PD level drift before the ranking does.",
    "Reject inference is not performed: the training population is approved applicants only.",
    "The fairness screen covers gender and age band; flagged groups need a business "
    "justification (age is a legitimate credit factor in many jurisdictions, gender is not).",
]

HEADLINE_METRICS = (
    "test_auc",
    "test_gini",
    "test_ks",
    "test_pr_auc",
    "test_brier",
    "test_ece",
    "test_log_loss",
    "test_base_rate",
    "test_mean_pd",
    "train_auc",
    "train_test_auc_gap",
)


#: The evaluation figures the card embeds: caption → file in ``reports/evaluation/``.
CARD_FIGURES = (
    ("Calibration (reliability) on the test split", "calibration.png"),
    ("ROC curve on the test split", "roc_curve.png"),
    ("Score distribution by outcome", "score_distribution.png"),
)


def card_context(
    *,
    model_name: str,
    version: str | None,
    training: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    validation: Mapping[str, Any],
    ingestion_summary: Mapping[str, Any],
    pipeline_run_id: str | None,
    figures_dir: Path | None = None,
    draft: str | None = None,
) -> dict[str, Any]:
    """The model card's content, from the reports stages 01–05 wrote.

    Args:
        model_name: The registered model.
        version: The registry version (None for a draft of a model not registered).
        training: ``reports/training_run.json``.
        evaluation: ``reports/metrics.json``.
        validation: ``reports/validation.json`` (its ``deviations`` make the card's banner).
        ingestion_summary: ``reports/ingestion_summary.json`` (flags synthetic data).
        pipeline_run_id: The pipeline run that registered the model.
        figures_dir: The evaluation figures (``reports/evaluation``).
        draft: Why the card is a draft, shown on top (an interactive preview).
    """
    from datetime import UTC, datetime

    from creditrisk.features import catalog

    metrics, tables = evaluation["metrics"], evaluation["tables"]
    splits = training.get("splits", {})
    groups: dict[str, list[str]] = {}
    for feature in catalog.FEATURES:
        groups.setdefault(feature.group, []).append(feature.name)
    fairness = [
        {
            "attribute": attribute,
            "group": row.get(attribute),
            **{k: row[k] for k in ("n", "approval_rate", "default_rate", "bad_rate_approved")},
            "auc": row.get("auc"),
            "adverse_impact_ratio": row.get("adverse_impact_ratio"),
            "flag": bool(row.get("adverse_impact")),
        }
        for attribute in ("CODE_GENDER", "AGE_BAND")
        for row in tables.get(f"fairness_{attribute}", [])
    ]
    images = {
        caption: figures_dir / file
        for caption, file in CARD_FIGURES
        if figures_dir is not None and (figures_dir / file).exists()
    }
    return {
        "draft": draft,
        "model_name": model_name,
        "model_version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mlflow_run_id": training["mlflow_run_id"],
        "pipeline_run_id": pipeline_run_id,
        "purpose": PURPOSE,
        "intended_use": INTENDED_USE,
        "data": {
            "snapshot_id": ingestion_summary.get("snapshot_id"),
            "source": (ingestion_summary.get("source") or {}).get("uri"),
            "ingested_at": ingestion_summary.get("ingested_at"),
            "applicants (application_train)": (
                ingestion_summary.get("tables", {}).get("application_train", {}).get("rows")
            ),
            "training split": splits.get("train", {}).get("rows"),
            "test split": splits.get("test", {}).get("rows"),
            "test default rate": metrics.get("test_base_rate"),
            "contracts passed": ingestion_summary.get("contracts_passed"),
            "missing tables": ", ".join(ingestion_summary.get("missing_tables") or []) or "none",
            "synthetic data": _synthetic_text(ingestion_summary),
        },
        "features": {"count": len(catalog.FEATURES), "groups": groups},
        "performance": {key: metrics[key] for key in HEADLINE_METRICS if key in metrics},
        "calibration": [
            {k: row.get(k) for k in ("bin", "n", "mean_pd", "default_rate", "defaults")}
            for row in tables.get("calibration", [])
        ],
        "fairness": fairness,
        "decision_policy": {
            **{
                k: v
                for k, v in evaluation["decision_policy"]["decision"].items()
                if k in ("threshold", "approval_rate", "bad_rate_approved", "break_even_pd")
            },
            "policy": evaluation["decision_policy"]["decision"].get("policy", {}).get("kind"),
            "score_scaling": {
                k: v
                for k, v in evaluation["decision_policy"]["score_scaling"].items()
                if k in ("base_score", "base_odds", "pdo", "min_score", "max_score")
            },
        },
        "validation": validation,
        "deviations": validation.get("deviations") or [],
        "synthetic": deviation_records.synthetic_data(ingestion_summary),
        "limitations": LIMITATIONS,
        "images": images,
    }


def _synthetic_text(ingestion_summary: Mapping[str, Any]) -> str:
    marker = deviation_records.synthetic_data(ingestion_summary)
    if marker is None:
        return "no"
    return f"YES: generated by creditrisk (seed {marker.get('seed')}), not a lender's records"
