"""Column values from the profile in ``tables.py``: marginals, categorical codes, generic columns.

A ``Frame`` maps column names to values (float64/int64 arrays, ``_Cat`` codes for strings); the
per-table writers build them with these samplers and then override the structural columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from creditrisk.data.synthetic.process import _APP, SENTINEL_DAYS
from creditrisk.data.tables import tables

# --------------------------------------------------------------------------------------------
# Marginal sampling from the profile
# --------------------------------------------------------------------------------------------

_PROFILE_PROBS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_PROFILE_KEYS = ("min", "p01", "p05", "p25", "p50", "p75", "p95", "p99", "max")


#: Rare real levels the profile sample missed (CODE_GENDER = XNA: 4 of 307,511 applicants).
_EXTRA_LEVELS: dict[tuple[str, str], dict[str, float]] = {
    (_APP, "CODE_GENDER"): {"XNA": 1.3e-5},
}


@dataclass(frozen=True)
class _Marginal:
    """Inverse CDF through profile quantiles: linear inside, power-law tails outside p01/p99."""

    probs: np.ndarray
    values: np.ndarray
    tail: float

    def ppf(self, u: np.ndarray) -> np.ndarray:
        p, v = self.probs, self.values
        out = np.interp(u, p[1:-1], v[1:-1])
        low, high = u < p[1], u > p[-2]
        out[low] = v[1] - (v[1] - v[0]) * ((p[1] - u[low]) / p[1]) ** self.tail
        out[high] = v[-2] + (v[-1] - v[-2]) * ((u[high] - p[-2]) / (1 - p[-2])) ** self.tail
        return out


def _fit_marginal(probs: Sequence[float], values: Sequence[float], mean: float | None) -> _Marginal:
    p, v = np.asarray(probs, dtype=float), np.asarray(values, dtype=float)
    tail = 4.0
    if mean is not None:
        # Choose one tail exponent so the distribution's mean matches the profile mean; a
        # segment v0 + (v1 - v0) * t**k has mean v0 + (v1 - v0) / (k + 1).
        inner = float(np.sum(np.diff(p[1:-1]) * (v[1:-2] + v[2:-1]) / 2))
        excess = mean - inner - p[1] * v[1] - (1 - p[-2]) * v[-2]
        spread = (1 - p[-2]) * (v[-1] - v[-2]) - p[1] * (v[1] - v[0])
        if excess != 0 and spread / excess > 1:
            tail = float(np.clip(spread / excess - 1, 1.0, 40.0))
    return _Marginal(p, v, tail)


@cache
def _marginal(table: str, column: str) -> _Marginal:
    col = tables()[table].column(column)
    values = [col.quantiles[k] for k in _PROFILE_KEYS]
    return _fit_marginal(_PROFILE_PROBS, values, col.mean)


@cache
def _employed_days_marginal() -> _Marginal:
    """DAYS_EMPLOYED of the employed: the profile quantiles below the 365243 sentinel."""
    col = tables()[_APP].column("DAYS_EMPLOYED")
    # Everyone employed has an employer phone flag, so its 0-share is the sentinel share.
    employed_share = 1 - tables()[_APP].column("FLAG_EMP_PHONE").levels.get("0", 0.1844)
    pairs = [
        (p / employed_share, col.quantiles[k])
        for p, k in zip(_PROFILE_PROBS, _PROFILE_KEYS, strict=True)
        if col.quantiles[k] < SENTINEL_DAYS and p / employed_share < 1
    ]
    probs, values = zip(*pairs, (1.0, 0.0), strict=False)
    return _fit_marginal(probs, values, None)


@cache
def _share_above_zero(table: str, column: str) -> float:
    """Share of a count column's marginal that rounds to a positive count."""
    grid = (np.arange(100_000) + 0.5) / 100_000
    return float(np.mean(np.round(_ppf(table, column, grid)) > 0))


def _ppf(table: str, column: str, u: np.ndarray) -> np.ndarray:
    return _marginal(table, column).ppf(u)


@dataclass(frozen=True)
class _Vocab:
    """The levels of a categorical column and their real shares."""

    levels: tuple[str, ...]
    shares: np.ndarray

    def code(self, level: str) -> int:
        return self.levels.index(level)

    def draw(
        self,
        rng: np.random.Generator,
        n: int,
        allowed: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        u: np.ndarray | None = None,
    ) -> np.ndarray:
        """Level codes drawn by share, optionally restricted to some levels or reweighted."""
        if weights is not None:
            codes = np.array([self.code(k) for k in weights])
            shares = np.array(list(weights.values()), dtype=float)
        elif allowed is not None:
            codes = np.array([self.code(k) for k in allowed])
            shares = self.shares[codes]
        else:
            codes, shares = np.arange(len(self.levels)), self.shares
        cumulative = np.cumsum(shares / shares.sum())
        u = rng.random(n) if u is None else u
        picked = np.minimum(np.searchsorted(cumulative, u, side="right"), len(codes) - 1)
        return codes[picked].astype(np.int16)


@cache
def _vocab(table: str, column: str) -> _Vocab:
    col = tables()[table].column(column)
    levels = {**col.levels, **_EXTRA_LEVELS.get((table, column), {})}
    # Profile shares are rounded to 4 decimals; a "0.0" level is rare, not impossible.
    shares = np.array([max(share, 1e-5) for share in levels.values()])
    return _Vocab(tuple(levels), shares / shares.sum())


@dataclass(frozen=True)
class _Cat:
    """A categorical column: level codes (-1 = NULL) into a vocabulary."""

    codes: np.ndarray
    vocab: _Vocab

    def isin(self, *levels: str) -> np.ndarray:
        return np.isin(self.codes, [self.vocab.code(level) for level in levels])

    def effect(self, effects: Mapping[str, float]) -> np.ndarray:
        """Per-row value of a level -> number mapping (0 for other levels and NULL)."""
        table = np.array([effects.get(level, 0.0) for level in self.vocab.levels] + [0.0])
        return table[self.codes]

    def take(self, index: np.ndarray) -> _Cat:
        return _Cat(self.codes[index], self.vocab)


Column = np.ndarray | _Cat
#: Column name -> values: float64/int64 arrays for numbers (NaN = NULL), ``_Cat`` for strings.
Frame = dict[str, Any]


def _cat(table: str, column: str, codes: np.ndarray) -> _Cat:
    return _Cat(np.asarray(codes, dtype=np.int16), _vocab(table, column))


def _draw_cat(table: str, column: str, rng: np.random.Generator, n: int, **kwargs: Any) -> _Cat:
    vocab = _vocab(table, column)
    return _Cat(vocab.draw(rng, n, **kwargs), vocab)


def _const_cat(table: str, column: str, level: str, n: int) -> _Cat:
    vocab = _vocab(table, column)
    return _Cat(np.full(n, vocab.code(level), dtype=np.int16), vocab)


def _choose(condition: np.ndarray, when_true: _Cat, when_false: _Cat) -> _Cat:
    return _Cat(np.where(condition, when_true.codes, when_false.codes), when_true.vocab)


def _decimals(column: str) -> int | None:
    """Decimals a float column is written with (None = full precision, like Kaggle's scores)."""
    if column.startswith(("EXT_SOURCE", "RATE_")):
        return None
    if column.startswith(
        ("DAYS_", "CNT_", "OBS_", "DEF_", "AMT_REQ_", "NUM_", "NFLAG_", "OWN_CAR_AGE")
    ):
        return 0  # counts and day offsets are whole numbers stored as floats
    if column.startswith("AMT_"):
        return 2
    return 6 if column == "REGION_POPULATION_RELATIVE" else 4


def _generic_columns(table: str, n: int, rng: np.random.Generator, skip: set[str]) -> Frame:
    """Every column not in ``skip`` sampled independently from its profile marginal."""
    frame: Frame = {}
    for col in tables()[table].columns:
        if col.name in skip:
            continue
        if col.dtype == "string":
            values: Column = _draw_cat(table, col.name, rng, n)
        elif col.levels:
            values = _finish_numeric(
                _draw_numeric_levels(table, col.name, rng, n), col.dtype, col.name
            )
        else:
            values = _finish_numeric(_ppf(table, col.name, rng.random(n)), col.dtype, col.name)
        if col.null_share > 0:
            values = _with_nulls(values, rng.random(n) < col.null_share)
        frame[col.name] = values
    return frame


def _draw_numeric_levels(
    table: str, column: str, rng: np.random.Generator, n: int, u: np.ndarray | None = None
) -> np.ndarray:
    """Values of a few-valued numeric column; with ``u``, larger u gives larger values."""
    vocab = _vocab(table, column)
    order = np.argsort([float(level) for level in vocab.levels])
    ordered = _Vocab(tuple(vocab.levels[i] for i in order), vocab.shares[order])
    numbers = np.array([float(level) for level in ordered.levels])
    return numbers[ordered.draw(rng, n, u=u)]


def _finish_numeric(values: np.ndarray, dtype: str, column: str) -> np.ndarray:
    if dtype == "int":
        return np.round(values).astype(np.int64)
    decimals = _decimals(column)
    return values if decimals is None else np.round(values, decimals)


def _with_nulls(values: Column, mask: np.ndarray) -> Column:
    if isinstance(values, _Cat):
        return _Cat(np.where(mask, -1, values.codes).astype(np.int16), values.vocab)
    if values.dtype.kind != "f":
        return values  # int columns are never NULL
    return np.where(mask, np.nan, values)


# --------------------------------------------------------------------------------------------
# Loan terms and frame rows
# --------------------------------------------------------------------------------------------


def _draw_terms(
    rng: np.random.Generator, n: int, terms: Mapping[int, float], u: np.ndarray | None = None
) -> np.ndarray:
    """Loan terms in months by share; with ``u``, larger u gives longer terms."""
    values = np.array(list(terms), dtype=float)
    cumulative = np.cumsum(list(terms.values()))
    u = rng.random(n) if u is None else u
    return values[np.minimum(np.searchsorted(cumulative, u), values.size - 1)]


def _filter_rows(frame: Frame, keep: np.ndarray) -> None:
    for name, values in list(frame.items()):
        frame[name] = (
            values.take(np.flatnonzero(keep)) if isinstance(values, _Cat) else values[keep]
        )
