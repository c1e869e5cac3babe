"""The feature SQL stays portable: the same text must mean the same on DuckDB and Spark SQL (ANSI).

Every ``*.sql`` file in ``creditrisk/features/sql`` is parsed with sqlglot (DuckDB dialect) and
its syntax tree is checked against the rules of ``creditrisk/features/sql/README.md``. No JVM
and no DuckDB connection: this is a fast unit test. The Spark parity tests (``make test-spark``)
run the SQL on both engines and compare the outputs.

Each rule is also shown to fail: small bad snippets go through the same checker,
:func:`violations`, and must be reported under the expected rule; good snippets must pass.
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokens import TokenType

from creditrisk.data.tables import APPLICATION_TABLES, tables
from creditrisk.features.catalog import COLUMNS, ID_COLUMN, SQL_DIR

SQL_FILES: list[Path] = sorted(SQL_DIR.glob("*.sql"))

#: Rule id -> why it exists (the README has the table with what to write instead).
RULES: dict[str, str] = {
    "division": "divisor must be nullif(<expr>, 0) or a non-zero number "
    "(x / 0: DuckDB gives inf or NaN, Spark ANSI raises)",
    "nulls-order": "ORDER BY item without NULLS FIRST / NULLS LAST (the defaults differ)",
    "sum-boolean": "sum of a boolean: sum a case when ... then 1 else 0 end",
    "log-guard": "ln/log argument may be 0 or negative: guard it with nullif(x, 0) or "
    "greatest(x, <positive>)",
    "log-base": "log(x) is base 10 on DuckDB and natural on Spark: write ln(x)",
    "int-division": "// is DuckDB-only integer division",
    "star-modifier": "* EXCLUDE / REPLACE / RENAME and COLUMNS(...) are DuckDB-only",
    "ordered-set": "quantile / median / percentile / mode aggregates differ between the engines "
    "or are approximate on Spark",
    "concat": "concat / concat_ws / || treat NULL differently",
    "integer-cast": "cast to an integer type of an operand not known to be an integer "
    "(DuckDB rounds, Spark truncates)",
    "cast-type": "cast only to double or bigint",
    "colon-cast": "x::type cast (Spark only since 4.0): write cast(x as type)",
    "duckdb-only": "DuckDB-only syntax or function",
    "integer-sum": "sum of a non-double must be cast: cast(sum(x) as bigint) "
    "(DuckDB sums integers to HUGEINT, Spark to BIGINT)",
    "string-number": "string compared with a number (the implicit casts differ)",
    "function": "function not on the portable list (README)",
    "types": "sqlglot could not resolve the types of the query",
}

#: Functions the feature SQL uses (sqlglot's canonical names).
FUNCTIONS_IN_USE = frozenset(
    {"avg", "case", "cast", "coalesce", "count", "max", "min", "nullif", "stddev_samp", "sum"}
)
#: Not used yet, allowed with the same meaning on both engines; a first use still needs the
#: Spark parity tests.
FUNCTIONS_ALSO_ALLOWED = frozenset({"abs", "greatest", "least", "ln", "try_cast"})
ALLOWED_FUNCTIONS = FUNCTIONS_IN_USE | FUNCTIONS_ALSO_ALLOWED

_ORDERED_SET = (
    exp.PercentileCont,
    exp.PercentileDisc,
    exp.Quantile,
    exp.ApproxQuantile,
    exp.Median,
    exp.Mode,
    exp.WithinGroup,
)
_ORDERED_SET_NAMES = frozenset(
    {"percentile", "percentile_approx", "approx_percentile", "quantile", "median", "mode"}
)
_CONCAT = (exp.Concat, exp.ConcatWs, exp.DPipe)
_DUCKDB_ONLY = (
    exp.Qualify,
    exp.TableSample,
    exp.Pivot,
    exp.Lambda,
    exp.Array,  # [1, 2], list_value(...)
    exp.Struct,  # {'a': 1}, struct_pack(...)
    exp.ArrayAgg,  # list(x)
    exp.ILike,
    exp.RegexpLike,  # regexp_matches
    exp.TimeToStr,  # strftime
    exp.StrToTime,  # strptime
    exp.TimeToUnix,  # epoch
    exp.UnixToTime,  # epoch_ms, to_timestamp
    exp.DateDiff,  # date_diff('day', a, b): argument order differs from Spark's datediff
)
_DUCKDB_ONLY_NAMES = frozenset(
    {"divide", "fdiv", "fmod", "ilike", "regexp_matches", "strftime", "epoch", "struct_pack"}
)
_DUCKDB_ONLY_PREFIXES = ("list_", "struct_", "array_")
_CAST_TARGETS = (exp.DataType.Type.DOUBLE, exp.DataType.Type.BIGINT)
_INTEGER_TYPES = tuple(exp.DataType.INTEGER_TYPES)
_NUMERIC_TYPES = tuple(exp.DataType.INTEGER_TYPES | exp.DataType.REAL_TYPES)
_TEXT_TYPES = tuple(exp.DataType.TEXT_TYPES)
_DOUBLE_TYPES = (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT)
_COMPARISONS = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
)
_TAG = "portability_check_id"
_SNIPPET_CHARS = 120


class _NullsSmallDuckDB(DuckDB):
    """DuckDB syntax, but an ORDER BY item without NULLS FIRST/LAST defaults as on Spark."""

    NULL_ORDERING = "nulls_are_small"


class _NullsLargeDuckDB(DuckDB):
    """DuckDB syntax, with the opposite default (NULLs sort as the largest value)."""

    NULL_ORDERING = "nulls_are_large"


# ---------------------------------------------------------------------------------------------
# The checker


def _snippet(node: exp.Expr) -> str:
    text = " ".join(node.sql(dialect="duckdb").split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


def _message(name: str, rule: str, snippet: str) -> str:
    return f"{name} [{rule}] {snippet} -- {RULES[rule]}"


def rules_of(messages: list[str]) -> set[str]:
    """The rule ids in :func:`violations` messages."""
    return {m.group(1) for m in (re.match(r"^\S+ \[([a-z-]+)\] ", msg) for msg in messages) if m}


def _strip(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _number(node: exp.Expr | None) -> float | None:
    """The value of a numeric literal (or its negation), else None."""
    if node is None:
        return None
    node = _strip(node)
    if isinstance(node, exp.Neg):
        inner = _number(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.this)
    return None


def _is_nullif_zero(node: exp.Expr) -> bool:
    node = _strip(node)
    return isinstance(node, exp.Nullif) and _number(node.expression) == 0


def _safe_divisor(node: exp.Expr) -> bool:
    value = _number(node)
    return (value is not None and value != 0) or _is_nullif_zero(node)


def _guarded_log_argument(node: exp.Expr | None) -> bool:
    if node is None:
        return False
    node = _strip(node)
    if isinstance(node, exp.Greatest):
        return any((_number(arg) or 0) > 0 for arg in (node.this, *node.expressions))
    return _is_nullif_zero(node)


def _is_all(node: exp.Expr) -> bool:
    return isinstance(node, exp.Var) and node.name.upper() == "ALL"


def function_name(node: exp.Func) -> str:
    """A function's name as sqlglot knows it: ``stddev_samp``, ``cast``, ``list_sum``, …"""
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    return type(node).sql_names()[0].lower()


def _is_function_call(node: exp.Expr) -> bool:
    # sqlglot models AND/OR and CASE's WHEN branches as functions too.
    if not isinstance(node, exp.Func) or isinstance(node, exp.Connector):
        return False
    return not (isinstance(node, exp.If) and isinstance(node.parent, exp.Case))


def _node_rules(node: exp.Expr) -> list[str]:
    """Rules one node breaks, from its syntax alone."""
    found: list[str] = []
    if isinstance(node, exp.Div | exp.Mod) and not _safe_divisor(node.expression):
        found.append("division")
    if isinstance(node, exp.IntDiv):
        found.append("int-division")
    if isinstance(node, exp.Sum) and isinstance(
        _strip(node.this), exp.Predicate | exp.Connector | exp.Not | exp.Boolean
    ):
        found.append("sum-boolean")
    if isinstance(node, exp.Log) and node.expression is None:
        found.append("log-base")
    if isinstance(node, exp.Ln | exp.Log):
        argument = node.this if node.expression is None else node.expression
        if not _guarded_log_argument(argument):
            found.append("log-guard")
    if isinstance(node, exp.Star) and any(
        node.args.get(key) for key in ("except_", "except", "replace", "rename", "ilike")
    ):
        found.append("star-modifier")
    if isinstance(node, exp.Columns):
        found.append("star-modifier")
    name = function_name(node) if isinstance(node, exp.Func) else ""
    if isinstance(node, _ORDERED_SET) or name in _ORDERED_SET_NAMES:
        found.append("ordered-set")
    if isinstance(node, _CONCAT) or name in {"concat", "concat_ws"}:
        found.append("concat")
    if isinstance(node, exp.Cast) and not node.to.is_type(*_CAST_TARGETS):
        found.append("cast-type")
    if (
        isinstance(node, _DUCKDB_ONLY)
        or name in _DUCKDB_ONLY_NAMES
        or name.startswith(_DUCKDB_ONLY_PREFIXES)
        or (isinstance(node, exp.Group) and node.args.get("all"))
        or (isinstance(node, exp.Distinct) and node.args.get("on"))
        or (isinstance(node, exp.Ordered) and _is_all(node.this))  # ORDER BY ALL
    ):
        found.append("duckdb-only")
    if not found and _is_function_call(node) and name not in ALLOWED_FUNCTIONS:
        found.append("function")
    return found


def _colon_casts(sql: str, name: str) -> list[str]:
    """``::`` casts, found by the DuckDB tokenizer (so not inside strings or comments)."""
    lines = sql.splitlines()
    return [
        _message(name, "colon-cast", f"line {token.line}: {lines[token.line - 1].strip()}")
        for token in sqlglot.tokenize(sql, read="duckdb")
        if token.token_type == TokenType.DCOLON
    ]


def _implicit_null_orderings(sql: str, tree: exp.Expr, name: str) -> list[str]:
    """ORDER BY items (also in windows and WITHIN GROUP) without NULLS FIRST / NULLS LAST.

    sqlglot fills in a dialect's default null ordering when the text has none, so one parse
    cannot tell ``order by a`` from ``order by a nulls last``. Parsed with two dialects that
    differ only in that default, an explicit item reads the same and an implicit one does not.
    """
    small = list(sqlglot.parse_one(sql, dialect=_NullsSmallDuckDB()).find_all(exp.Ordered))
    large = list(sqlglot.parse_one(sql, dialect=_NullsLargeDuckDB()).find_all(exp.Ordered))
    items = list(tree.find_all(exp.Ordered))
    assert len(small) == len(large) == len(items), "the parses must have the same shape"
    found = []
    for item, a, b in zip(items, small, large, strict=True):
        if a.args.get("nulls_first") != b.args.get("nulls_first"):
            context = item.find_ancestor(exp.Window) or item.parent or item
            snippet = f"{_snippet(context)} (item {_snippet(item.this)})"
            found.append(_message(name, "nulls-order", snippet))
    return found


def _typed_rules(tree: exp.Expr, name: str, schema: dict[str, dict[str, str]] | None) -> list[str]:
    """Rules that need the types of expressions: sqlglot infers them from ``schema``.

    The checked nodes are tagged in ``tree`` first, so a finding in the qualified copy is
    reported with the text of the original node.
    """
    checked = (exp.Cast, exp.Sum, *_COMPARISONS, exp.In, exp.Between, exp.Case)
    originals: dict[int, exp.Expr] = {}
    for number, node in enumerate(tree.find_all(*checked)):
        node.meta[_TAG] = number
        originals[number] = node
    try:
        typed = annotate_types(
            qualify(
                tree.copy(),
                schema=schema,
                dialect="duckdb",
                validate_qualify_columns=False,
                quote_identifiers=False,
                identify=False,
            ),
            schema=schema,
            dialect="duckdb",
        )
    except sqlglot.errors.SqlglotError as error:
        return [_message(name, "types", f"{type(error).__name__}: {error}")]

    def kind(node: exp.Expr | None) -> exp.DataType:
        return (_strip(node).type if node is not None else None) or exp.DataType.build("unknown")

    def mixes_strings_and_numbers(left: exp.Expr | None, right: exp.Expr | None) -> bool:
        a, b = kind(left), kind(right)
        return (a.is_type(*_TEXT_TYPES) and b.is_type(*_NUMERIC_TYPES)) or (
            b.is_type(*_TEXT_TYPES) and a.is_type(*_NUMERIC_TYPES)
        )

    found: dict[tuple[int, str], str] = {}
    for node in typed.find_all(*checked):
        number = node.meta.get(_TAG)
        if number is None:
            continue  # made by qualify
        rules: list[str] = []
        if (
            isinstance(node, exp.Cast)
            and node.to.is_type(*_INTEGER_TYPES)
            and not kind(node.this).is_type(*_INTEGER_TYPES)
        ):
            rules.append("integer-cast")
        if isinstance(node, exp.Sum) and not kind(node.this).is_type(*_DOUBLE_TYPES):
            parent = node.parent
            while isinstance(parent, exp.Paren):
                parent = parent.parent
            if not (isinstance(parent, exp.Cast) and parent.to.is_type(*_CAST_TARGETS)):
                rules.append("integer-sum")
        if isinstance(node, _COMPARISONS) and mixes_strings_and_numbers(node.this, node.expression):
            rules.append("string-number")
        if isinstance(node, exp.In) and any(
            mixes_strings_and_numbers(node.this, value) for value in node.expressions
        ):
            rules.append("string-number")
        if isinstance(node, exp.Between) and any(
            mixes_strings_and_numbers(node.this, node.args.get(bound)) for bound in ("low", "high")
        ):
            rules.append("string-number")
        if (
            isinstance(node, exp.Case)
            and node.this is not None
            and any(mixes_strings_and_numbers(node.this, when.this) for when in node.args["ifs"])
        ):
            rules.append("string-number")
        for rule in rules:
            found[(number, rule)] = _message(name, rule, _snippet(originals[number]))
    return list(found.values())


def violations(sql: str, name: str, schema: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Every portability rule ``sql`` breaks, as ``"<name> [<rule>] <snippet> -- <why>"``.

    Args:
        sql: One SELECT in DuckDB syntax (a trailing ``;`` is ignored).
        name: What to call it in the messages (the file name).
        schema: ``relation -> column -> type`` of the relations it reads, for the rules that
            need types; without it every column's type is unknown, which those rules treat as
            not proven safe.
    """
    sql = sql.strip().removesuffix(";")
    tree = sqlglot.parse_one(sql, read="duckdb")
    found = _colon_casts(sql, name)
    for node in tree.walk():
        found.extend(_message(name, rule, _snippet(node)) for rule in _node_rules(node))
    found.extend(_implicit_null_orderings(sql, tree, name))
    found.extend(_typed_rules(tree, name, schema))
    return found


def dialect_difference(sql: str) -> str | None:
    """How sqlglot's DuckDB and Spark readings of ``sql`` differ (written as Spark SQL), or None.

    A portable text means the same thing to both dialects, so both readings print alike.
    """
    sql = sql.strip().removesuffix(";")
    as_duckdb = sqlglot.parse_one(sql, read="duckdb").sql(dialect="spark", pretty=True)
    as_spark = sqlglot.parse_one(sql, read="spark").sql(dialect="spark", pretty=True)
    if as_duckdb == as_spark:
        return None
    diff = difflib.unified_diff(
        as_duckdb.splitlines(),
        as_spark.splitlines(),
        "read as duckdb",
        "read as spark",
        n=1,
        lineterm="",
    )
    return "\n".join(list(diff)[:20])


@cache
def feature_schema() -> dict[str, dict[str, str]]:
    """Types of every relation the feature SQL reads: the seven inputs and the group views."""
    schema: dict[str, dict[str, str]] = {}
    for spec in tables().values():
        if spec.name in APPLICATION_TABLES:
            if spec.name == "application_train":  # application = train UNION ALL test
                schema["application"] = spec.duckdb_types
        else:
            schema[spec.view] = spec.duckdb_types
    for column in COLUMNS:
        view = schema.setdefault(f"{column.group}_features", {ID_COLUMN: "BIGINT"})
        view[column.name] = column.dtype
    return schema


# ---------------------------------------------------------------------------------------------
# The feature SQL files


def test_every_sql_file_is_checked() -> None:
    names = {path.stem for path in SQL_FILES}
    assert {"application", "bureau", "feature_store"} <= names
    assert len(SQL_FILES) >= 8


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda path: path.name)
def test_feature_sql_is_portable(path: Path) -> None:
    found = violations(path.read_text(encoding="utf-8"), path.name, schema=feature_schema())
    assert not found, "the feature SQL must run unchanged on DuckDB and Spark:\n" + "\n".join(found)


def test_functions_in_use_are_the_listed_ones() -> None:
    # Keeps FUNCTIONS_IN_USE (and the README's list) true: a first use moves a function there.
    used = {
        function_name(node)
        for path in SQL_FILES
        for node in sqlglot.parse_one(
            path.read_text(encoding="utf-8").strip().removesuffix(";"), read="duckdb"
        ).walk()
        if _is_function_call(node)
    }
    assert used == FUNCTIONS_IN_USE, {
        "not listed": sorted(used - FUNCTIONS_IN_USE),
        "no longer used": sorted(FUNCTIONS_IN_USE - used),
    }


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda path: path.name)
def test_feature_sql_reads_the_same_in_spark(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    sqlglot.parse_one(text.strip().removesuffix(";"), read="spark")  # raises if not Spark SQL
    difference = dialect_difference(text)
    assert difference is None, f"{path.name} means different things to the dialects:\n{difference}"


# ---------------------------------------------------------------------------------------------
# Each rule can fail

SNIPPET_SCHEMA: dict[str, dict[str, str]] = {
    "t": {"a": "BIGINT", "b": "DOUBLE", "s": "VARCHAR"},
    "u": {"a": "BIGINT", "b": "DOUBLE", "s": "VARCHAR"},
}

BAD: list[tuple[str, str]] = [
    ("division", "select a / b from t"),
    ("division", "select a / (b - 1) from t"),
    ("division", "select a / 0 from t"),
    ("division", "select a / nullif(b, 1) from t"),
    ("division", "select a % b from t"),
    ("nulls-order", "select a from t order by a"),
    ("nulls-order", "select a from t order by a desc"),
    ("nulls-order", "select a from t order by a nulls last, b"),
    ("nulls-order", "select max(a) over (partition by s order by b) from t"),
    ("sum-boolean", "select sum(a > 1) from t"),
    ("sum-boolean", "select sum(s is null) from t"),
    ("sum-boolean", "select sum((a > 1 and b > 1)) from t"),
    ("log-guard", "select ln(b) from t"),
    ("log-guard", "select ln(b + 1) from t"),
    ("log-guard", "select ln(greatest(b, 0)) from t"),
    ("log-base", "select log(b) from t"),
    ("int-division", "select a // 2 from t"),
    ("star-modifier", "select * exclude (a) from t"),
    ("star-modifier", "select t.* exclude (a) from t"),
    ("star-modifier", "select * replace (a + 1 as a) from t"),
    ("star-modifier", "select columns('a.*') from t"),
    ("ordered-set", "select quantile_cont(a, 0.5) from t"),
    ("ordered-set", "select quantile_disc(a, 0.5) from t"),
    ("ordered-set", "select median(a) from t"),
    ("ordered-set", "select percentile_cont(0.5) within group (order by a nulls last) from t"),
    ("ordered-set", "select approx_quantile(a, 0.5) from t"),
    ("ordered-set", "select mode(s) from t"),
    ("concat", "select concat(s, s) from t"),
    ("concat", "select concat_ws(',', s, s) from t"),
    ("concat", "select s || s from t"),
    ("integer-cast", "select cast(a * 1.5 as bigint) from t"),
    ("integer-cast", "select cast(b as bigint) from t"),
    ("integer-cast", "select cast(avg(a) as bigint) from t"),
    ("integer-cast", "select cast(1.5 as bigint) from t"),
    ("integer-cast", "select try_cast(b as bigint) from t"),
    ("cast-type", "select cast(a as varchar) from t"),
    ("cast-type", "select cast(a as int) from t"),
    ("cast-type", "select cast(b as decimal(10, 2)) from t"),
    ("colon-cast", "select a::double from t"),
    ("colon-cast", "select cast(a as double), b::bigint from t"),
    ("duckdb-only", "select s from t where s ilike 'x%'"),
    ("duckdb-only", "select regexp_matches(s, 'x') from t"),
    ("duckdb-only", "select strftime(s, '%Y') from t"),
    ("duckdb-only", "select epoch(s) from t"),
    ("duckdb-only", "select date_diff('day', s, s) from t"),
    ("duckdb-only", "select list_sum(a) from t"),
    ("duckdb-only", "select list(a) from t"),
    ("duckdb-only", "select struct_pack(x := 1) from t"),
    ("duckdb-only", "select [1, 2] from t"),
    ("duckdb-only", "select {'k': 1} from t"),
    ("duckdb-only", "select list_transform(a, x -> x + 1) from t"),
    ("duckdb-only", "select divide(a, 2) from t"),
    ("duckdb-only", "select s, count(*) from t group by all"),
    ("duckdb-only", "select a from t order by all"),
    ("duckdb-only", "select distinct on (s) s, a from t"),
    ("duckdb-only", "select a, max(a) over (partition by s) as m from t qualify m = a"),
    ("duckdb-only", "select * from t using sample 10%"),
    ("duckdb-only", "pivot t on s using max(a)"),
    ("integer-sum", "select sum(case when a > 1 then 1 else 0 end) from t"),
    ("integer-sum", "select sum(a) from t"),
    ("integer-sum", "select sum(a) / nullif(count(*), 0) from t"),
    ("string-number", "select a from t where a = '1'"),
    ("string-number", "select a from t where s > 1"),
    ("string-number", "select a from t where a in (1, '2')"),
    ("string-number", "select a from t where a between '1' and 2"),
    ("string-number", "select case a when '1' then 1 else 0 end from t"),
    ("function", "select if(a > 1, 1, 0) from t"),
    ("function", "select round(b, 2) from t"),
    ("function", "select row_number() over (order by a nulls last) from t"),
]

GOOD: list[str] = [
    "select a / nullif(b, 0) from t",
    "select a / nullif((b - 1), 0), a % nullif(a, 0) from t",
    "select -cast(a as double) / 365, b / 365.25, b / -2 from t",
    "select a from t order by a nulls last",
    "select a from t order by a desc nulls first, b asc nulls last",
    "select max(a) over (partition by s order by b nulls first) from t",
    "select cast(sum(case when a > 1 then 1 else 0 end) as bigint) from t",
    "select cast(sum(a) as bigint), cast(sum(a) as double), sum(b) from t",
    "select avg(cast(case when b > 0 then 1 else 0 end as double)) from t",
    "select ln(nullif(b, 0)), ln(greatest(b, 1e-9)) from t",
    "select cast(a as bigint), count(*), count(distinct a), count(case when a > 1 then 1 end) "
    "from t",
    "select cast(coalesce(a, 0) + coalesce(a, 0) as bigint), try_cast(a as bigint) from t",
    "select coalesce(a, 0), nullif(b, 0), abs(b), greatest(a, 1), least(a, 1) from t",
    "select a from t where s = '1' and a = 1 and b >= 0.5 and a in (1, 2)",
    "select case s when 'C' then 0 when '1' then 1 end from t",
    "select stddev_samp(b), min(a), max(a) from t group by s",
    "with x as (select *, case when a = 1 then 1 else 0 end as f from t) "
    "select cast(f as bigint) as g, cast(max(f) as bigint) as h from x group by f",
    "select t.a, u.b from t left join u on t.a = u.a",
    "select * from t",
    "select a from t where s = 'a::b' -- not a cast: a::b\n",
    "select distinct s, a from t;",
]


@pytest.mark.parametrize(("rule", "sql"), BAD, ids=[f"{rule}:{sql}" for rule, sql in BAD])
def test_rule_catches_bad_sql(rule: str, sql: str) -> None:
    found = violations(sql, "snippet.sql", schema=SNIPPET_SCHEMA)
    assert rule in rules_of(found), found
    assert all(message.startswith("snippet.sql [") for message in found)


@pytest.mark.parametrize("sql", GOOD)
def test_good_sql_passes(sql: str) -> None:
    assert violations(sql, "snippet.sql", schema=SNIPPET_SCHEMA) == []


def test_every_rule_has_a_bad_snippet() -> None:
    assert {rule for rule, _ in BAD} == set(RULES) - {"types"}


@pytest.mark.parametrize(
    ("rule", "sql"),
    [
        ("integer-cast", "select cast(x as bigint) from v"),
        ("integer-sum", "select sum(x) from v"),
    ],
)
def test_unknown_types_are_not_taken_as_safe(rule: str, sql: str) -> None:
    assert rule in rules_of(violations(sql, "snippet.sql"))


def test_a_violation_names_the_file_the_snippet_and_the_rule() -> None:
    (message,) = violations("select\n  a / b\nfrom t", "bureau.sql", schema=SNIPPET_SCHEMA)
    assert message == f"bureau.sql [division] a / b -- {RULES['division']}"


def test_colon_cast_reports_the_line() -> None:
    found = violations("select\n  a::double\nfrom t", "x.sql", schema=SNIPPET_SCHEMA)
    assert rules_of(found) == {"colon-cast"}
    assert "line 2: a::double" in found[0]


@pytest.mark.parametrize(
    "sql", ["select log(b) from t", "select a from t order by a", "select 1 from t order by b"]
)
def test_dialect_difference_catches_a_different_reading(sql: str) -> None:
    assert dialect_difference(sql) is not None


@pytest.mark.parametrize("sql", GOOD[:8])
def test_dialect_difference_passes_portable_sql(sql: str) -> None:
    assert dialect_difference(sql) is None
