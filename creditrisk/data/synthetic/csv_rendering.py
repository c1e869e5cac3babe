"""CSV bytes as in Kaggle's files, rendered by ``pyarrow.csv.CSVWriter``.

A plain header, ints as integers, floats always with a decimal point (``202500.0``), NULL as an
empty field, and quotes only around values that need them (``"Spouse, partner"``).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from creditrisk.data.synthetic.sampling import Frame, _Cat, _decimals
from creditrisk.data.tables import tables

# Level strings that need quoting are pre-quoted with placeholder bytes, because Arrow either
# quotes every string or none; the placeholders become '"' and ',' in the rendered bytes.
_QUOTE, _COMMA = "\x02", "\x01"
_UNESCAPE = bytes.maketrans(_QUOTE.encode() + _COMMA.encode(), b'",')
_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="none")


def _columns(stem: str) -> list[tuple[str, str]]:
    """(name, dtype) of each column of an output file, in file order."""
    if stem == "labels":
        return [("SK_ID_CURR", "int"), ("TARGET", "int")]
    return [(col.name, col.dtype) for col in tables()[stem].columns]


def _header(stem: str) -> bytes:
    return (",".join(name for name, _ in _columns(stem)) + "\n").encode()


def _render_csv(columns: list[tuple[str, str]], frame: Frame) -> bytes:
    arrays = []
    for name, dtype in columns:
        values = frame[name]
        if isinstance(values, _Cat):
            arrays.append(_string_array(values))
        elif dtype == "int":
            arrays.append(pa.array(np.asarray(values, dtype=np.int64)))
        else:
            arrays.append(_float_array(np.asarray(values, dtype=np.float64), _decimals(name)))
    table = pa.Table.from_arrays(arrays, names=[name for name, _ in columns])
    if table.num_rows == 0:
        return b""
    sink = pa.BufferOutputStream()
    with pacsv.CSVWriter(sink, table.schema, write_options=_WRITE_OPTIONS) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    return body.translate(_UNESCAPE) if _QUOTE.encode() in body else body


def _float_array(values: np.ndarray, decimals: int | None) -> pa.Array:
    """Floats as text that always reads back as float: whole numbers get a '.0' like Kaggle's."""
    null = np.isnan(values)
    values = np.where(null, 0.0, values) + 0.0  # + 0.0 turns -0.0 into 0.0
    if decimals is not None and decimals <= 4 and np.abs(values).max(initial=0) < 1e12:
        return _fixed_point_text(values, decimals, null)
    whole = (np.trunc(values) == values) & (np.abs(values) < 1e15)
    dot_zero = pa.scalar(".0")
    if whole.all():
        text = pc.binary_join_element_wise(
            pc.cast(pa.array(values.astype(np.int64)), pa.string()), dot_zero, ""
        )
    elif not whole.any():
        text = pc.cast(pa.array(values), pa.string())
    else:
        as_int = pc.cast(pa.array(np.where(whole, values, 0.0).astype(np.int64)), pa.string())
        text = pc.if_else(
            pa.array(whole),
            pc.binary_join_element_wise(as_int, dot_zero, ""),
            pc.cast(pa.array(values), pa.string()),
        )
    if null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    return text


def _fixed_point_text(values: np.ndarray, decimals: int, null: np.ndarray) -> pa.Array:
    """Shortest text of numbers with at most ``decimals`` decimals, via integer formatting.

    Three to four times faster than Arrow's float-to-string cast, which dominates the run time.
    """
    scale = 10**decimals
    scaled = np.round(np.abs(values) * scale).astype(np.int64)
    whole, fraction = np.divmod(scaled, scale)
    sign = pc.take(pa.array(["", "-"]), pa.array(((values < 0) & (scaled > 0)).astype(np.int8)))
    fraction_text = pc.take(_fraction_texts(decimals), pa.array(fraction))
    text = pc.binary_join_element_wise(
        sign, pc.cast(pa.array(whole), pa.string()), fraction_text, ""
    )
    if null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    return text


@cache
def _fraction_texts(decimals: int) -> pa.Array:
    """ ".0", ".01", ..., ".99" (trailing zeros trimmed) for every fraction at ``decimals``."""
    texts = ["." + (f"{k:0{decimals}d}".rstrip("0") or "0") for k in range(10**decimals)]
    return pa.array(texts or [".0"], pa.string())


def _string_array(values: _Cat) -> pa.Array:
    dictionary = pa.array([_escape(level) for level in values.vocab.levels], pa.string())
    indices = pa.array(values.codes.astype(np.int32), mask=values.codes < 0)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _escape(level: str) -> str:
    if any(ch in level for ch in ',"\n\r'):
        return _QUOTE + level.replace('"', _QUOTE * 2).replace(",", _COMMA) + _QUOTE
    return level
