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

from creditrisk.io import write_text
from creditrisk.settings import Workspace

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
<p class="verdict {{ 'pass' if validation_passed else 'fail' }}">
{{- 'All gates passed' if validation_passed else 'Validation FAILED' }}</p>
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
    return {
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


def write_model_card(html: str, workspace: Workspace, run_dir: Path | None = None) -> list[Path]:
    """Write the card to ``reports/model_card.html`` and, if given, into the run folder.

    Returns:
        The paths written, ``reports/`` first.
    """
    targets = [workspace.reports / MODEL_CARD_FILE]
    if run_dir is not None:
        targets.append(Path(run_dir) / MODEL_CARD_FILE)
    return [write_text(target, html) for target in targets]
