"""Record a stage's key results in its notebook, and read them back.

The last cell of every stage notebook calls :func:`record` with the handful of numbers and
names an auditor or the next stage needs (row counts, AUC, the registered model version, …).
The values are stored inside the executed notebook with scrapbook; the pipeline runner reads
them back with :func:`read_results` into ``run.json``.

scrapbook 0.5 is old and unmaintained, so these two functions are the only code that touches
it: swapping it out later means changing this module only.

Values are converted to plain JSON first (numpy/pandas scalars and arrays, paths, dates,
enums, dataclasses and pydantic models are understood). Non-finite floats (NaN, ±inf) become
``null`` so that ``run.json`` stays strict JSON. Key results are meant to be small: a value
larger than :data:`MAX_RESULT_BYTES` once serialised is refused (write tables to ``reports/``
and record their path instead).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from creditrisk.provenance import JsonValue, to_json_value

#: Upper bound on one serialised result: results are key numbers, not data sets.
MAX_RESULT_BYTES = 1_000_000

#: scrapbook encoder name under which :func:`record` stores values (JSON text in the payload).
_ENCODER_NAME = "creditrisk-json"

#: Longest value shown in the one-line-per-result summary that :func:`record` displays.
_SUMMARY_WIDTH = 80


def record(**results: object) -> dict[str, JsonValue]:
    """Record key results of the running notebook so the pipeline can read them back.

    Each value is converted to plain JSON and glued into the notebook's outputs under its
    name. Inside a kernel, one small text summary of the recorded values is displayed, so the
    rendered HTML shows what was recorded; outside a kernel (plain Python, unit tests) nothing
    is stored and only the conversion happens.

    Args:
        **results: Result names and values, e.g. ``record(n_applications=307511, auc=0.76)``.

    Returns:
        The values as recorded (plain JSON).

    Raises:
        TypeError: A value cannot be represented as JSON.
        ValueError: A value is larger than :data:`MAX_RESULT_BYTES` once serialised.
    """
    recorded = {name: to_json_value(value) for name, value in results.items()}
    for name, value in recorded.items():
        size = len(json.dumps(value))
        if size > MAX_RESULT_BYTES:
            raise ValueError(
                f"result {name!r} is {size:,} bytes as JSON (limit {MAX_RESULT_BYTES:,}): "
                "record key numbers; write tables to reports/ and record their path"
            )
    if not recorded or not _in_kernel():
        return recorded

    import scrapbook
    from IPython.display import display

    _register_encoder()
    for name, value in recorded.items():
        # display=False: the payload lives in a private MIME type that renders as nothing.
        scrapbook.glue(name, value, encoder=_ENCODER_NAME, display=False)
    display({"text/plain": _summary(recorded)}, raw=True)
    return recorded


def read_results(notebook_path: str | PurePath) -> dict[str, JsonValue]:
    """Read back the results recorded in an executed notebook.

    Args:
        notebook_path: Path of an executed ``.ipynb``.

    Returns:
        Result names and values in the order they were recorded; a name recorded twice keeps
        its last value. Display-only scraps (from direct scrapbook use) are left out.
    """
    import scrapbook

    _register_encoder()
    scraps = scrapbook.read_notebook(str(notebook_path)).scraps
    return {name: scrap.data for name, scrap in scraps.items() if scrap.encoder != "display"}


def _summary(recorded: Mapping[str, JsonValue]) -> str:
    """One line per result, values shortened, for the notebook and its HTML."""
    width = max(len(name) for name in recorded)
    lines = []
    for name, value in recorded.items():
        text = json.dumps(value)
        if len(text) > _SUMMARY_WIDTH:
            text = text[: _SUMMARY_WIDTH - 1] + "…"
        lines.append(f"{name:<{width}}  {text}")
    return "recorded results:\n" + "\n".join(lines)


def _in_kernel() -> bool:
    """Whether this code runs inside a Jupyter kernel (where outputs can be stored)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None) is not None


class _JsonTextEncoder:
    """scrapbook encoder storing any JSON value as JSON text.

    scrapbook's own ``json`` encoder rejects ``None`` and re-parses strings (``"42"`` would come
    back as ``42``); JSON text round-trips every value exactly.
    """

    def name(self) -> str:
        return _ENCODER_NAME

    def encodable(self, data: object) -> bool:
        return False  # never chosen implicitly; record() names it

    def encode(self, scrap: Any, **kwargs: object) -> Any:
        return scrap._replace(data=json.dumps(scrap.data, allow_nan=False))

    def decode(self, scrap: Any, **kwargs: object) -> Any:
        return scrap._replace(data=json.loads(scrap.data))


def _register_encoder() -> None:
    """Register the JSON text encoder with scrapbook (idempotent)."""
    from scrapbook.encoders import registry

    if _ENCODER_NAME not in registry:
        registry.register(_JsonTextEncoder())
