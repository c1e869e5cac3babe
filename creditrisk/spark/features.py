"""The feature store on Spark: the same SQL files, over the seven relations read from bronze.

The composed feature query (:func:`creditrisk.features.engine.feature_query`) runs unchanged on
Spark SQL, with ANSI mode on. Its inputs are bound as on DuckDB: each bronze Parquet file
conformed to the canonical columns and types of :mod:`creditrisk.data.tables` (a missing file is
an empty relation, a missing column NULL, extra columns dropped), the two application files
stacked into ``application``.

Spark writes the result, ordered by SK_ID_CURR, as part files into a staging folder beside the
destination; they are then appended in partition order into one Parquet file with the catalog's
Arrow schema, one row group at a time (memory: one row group), and renamed over the destination.
Every reader of the DuckDB store (training, the splits, the notebooks) reads it as it is.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from creditrisk.data.tables import APPLICATION_TABLES, ColumnSpec, tables
from creditrisk.features.catalog import COLUMNS, FEATURES, ID_COLUMN, sql_hash
from creditrisk.features.engine import (
    APPLICATION_VIEW,
    ENGINE_METADATA_PREFIX,
    FeatureStoreSummary,
    applicant_columns,
    check_feature_columns,
    feature_query,
    output_schema,
)
from creditrisk.io import atomic_path
from creditrisk.spark.session import EngineInfo

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType


def spark_type(duckdb_type: str) -> DataType:
    """The Spark type of a canonical (DuckDB) column type."""
    from pyspark.sql import types as T

    mapping: dict[str, DataType] = {
        "BIGINT": T.LongType(),
        "DOUBLE": T.DoubleType(),
        "VARCHAR": T.StringType(),
    }
    try:
        return mapping[duckdb_type]
    except KeyError:
        raise ValueError(f"no Spark type for the canonical type {duckdb_type!r}") from None


def duckdb_type_name(data_type: DataType) -> str:
    """The canonical (DuckDB) name of a Spark column type the feature SQL emits."""
    from pyspark.sql import types as T

    names: list[tuple[type[DataType], str]] = [
        (T.LongType, "BIGINT"),
        (T.DoubleType, "DOUBLE"),
        (T.StringType, "VARCHAR"),
        (T.IntegerType, "INTEGER"),
        (T.FloatType, "FLOAT"),
        (T.BooleanType, "BOOLEAN"),
    ]
    for kind, name in names:
        if isinstance(data_type, kind):
            return name
    return data_type.simpleString().upper()


def schema_of(columns: tuple[ColumnSpec, ...]) -> StructType:
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField(c.name, spark_type(c.duckdb_type), nullable=True) for c in columns]
    )


def conform(
    frame: DataFrame, columns: tuple[ColumnSpec, ...], ignore: frozenset[str] = frozenset()
) -> DataFrame:
    """``frame`` projected onto the canonical columns: cast to the canonical type, NULL if absent
    (or ignored), extra columns dropped. Spark matches names without regard to case, so the
    match here is exact on purpose."""
    from pyspark.sql import functions as F

    present = set(frame.columns) - ignore
    return frame.select(
        *[
            (F.col(f"`{c.name}`") if c.name in present else F.lit(None))
            .cast(spark_type(c.duckdb_type))
            .alias(c.name)
            for c in columns
        ]
    )


def bind_parquet_sources(spark: SparkSession, bronze_dir: Path | str) -> dict[str, Path | None]:
    """Register the seven input relations as temporary views over ``<bronze_dir>/<stem>.parquet``.

    Returns:
        Kaggle stem -> the file bound, or None when it was missing (bound empty).
    """
    bronze_dir = Path(bronze_dir)
    bound: dict[str, Path | None] = {}
    applicants: dict[str, DataFrame] = {}
    for stem, spec in tables().items():
        path = bronze_dir / f"{stem}.parquet"
        bound[stem] = path if path.is_file() else None
        if stem in APPLICATION_TABLES:
            columns, ignore = applicant_columns(stem)
        else:
            columns, ignore = spec.columns, frozenset()
        raw = (
            spark.read.parquet(str(path))
            if path.is_file()
            else spark.createDataFrame([], schema_of(columns))
        )
        relation = conform(raw, columns, ignore)
        if stem in APPLICATION_TABLES:
            applicants[stem] = relation
        else:
            relation.createOrReplaceTempView(spec.view)
    stacked = applicants["application_train"].unionByName(applicants["application_test"])
    stacked.createOrReplaceTempView(APPLICATION_VIEW)
    return bound


def feature_frame(spark: SparkSession) -> DataFrame:
    """The feature store as a Spark DataFrame over the bound relations, its columns checked
    against the catalog."""
    frame = spark.sql(feature_query())
    check_feature_columns([(f.name, duckdb_type_name(f.dataType)) for f in frame.schema.fields])
    return frame


def part_files(folder: Path) -> list[Path]:
    """The Parquet part files Spark wrote into ``folder``; name order is partition order
    (``part-00000-…``)."""
    return sorted(folder.glob("part-*.parquet"))


def ordered_tables(parts: list[Path], schema: pa.Schema) -> Iterator[pa.Table]:
    """The row groups of Spark's sorted part files, in order, cast to ``schema``.

    Raises:
        RuntimeError: A part's columns are not ``schema``'s, or SK_ID_CURR goes backwards (the
            parts would not be Spark's sorted output).
    """
    last_id: int | None = None
    for part in parts:
        reader = pq.ParquetFile(part)
        if reader.schema_arrow.names != schema.names:
            raise RuntimeError(f"{part.name}: columns differ from the expected ones")
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group).cast(schema)
            if table.num_rows == 0:
                continue
            ids = table.column(ID_COLUMN)
            first = ids[0].as_py()
            if last_id is not None and first <= last_id:
                raise RuntimeError(
                    f"{part.name}: {ID_COLUMN} {first} after {last_id}; "
                    "the part files are not in key order"
                )
            last_id = ids[-1].as_py()
            yield table


def merge_parts(parts: list[Path], output: Path, metadata: dict[str, str]) -> int:
    """Append ``parts`` in order into one Parquet file with the catalog's schema; rows written.

    Raises:
        RuntimeError: As :func:`ordered_tables`; ``output`` is then left as it was.
    """
    tagged = {ENGINE_METADATA_PREFIX + key: value for key, value in metadata.items()}
    schema = output_schema().with_metadata(tagged)
    rows = 0
    with (
        atomic_path(output) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
    ):
        for table in ordered_tables(parts, schema):
            writer.write_table(table)
            rows += table.num_rows
    return rows


def write_sorted(frame: DataFrame, folder: Path) -> None:
    """Write ``frame`` ordered by SK_ID_CURR as part files into ``folder``: range-partitioned by
    key, so part i holds keys below part i+1's (read back in order by :func:`ordered_tables`)."""
    frame.orderBy(frame[ID_COLUMN].asc_nulls_last()).write.option("compression", "zstd").parquet(
        str(folder)
    )


def staging_dir(output: Path) -> Path:
    """Where Spark writes the part files of ``output``: beside it, under a name the runner's
    recovery sweeps (``.<name>.partial-*``) if a killed run leaves it behind."""
    return output.parent / f".{output.name}.partial-spark-{uuid.uuid4().hex[:12]}"


def build_feature_store(
    spark: SparkSession,
    bronze_dir: Path | str,
    output: Path | str,
    *,
    engine: EngineInfo,
) -> FeatureStoreSummary:
    """Compute the feature store on Spark over the bronze Parquet files and write it as Parquet.

    Args:
        spark: The session (:func:`creditrisk.spark.session.get_session`).
        bronze_dir: Folder with ``<Kaggle stem>.parquet`` files; a missing file counts as empty.
        output: Destination Parquet file (one file, ordered by SK_ID_CURR, as DuckDB writes it).
        engine: The session's :class:`EngineInfo`, kept in the file's metadata.

    Returns:
        What was written.
    """
    started = time.perf_counter()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    bind_parquet_sources(spark, bronze_dir)
    frame = feature_frame(spark)
    staging = staging_dir(output)
    try:
        write_sorted(frame, staging)
        rows = merge_parts(part_files(staging), output, engine.as_dict())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    labelled = pq.read_table(output, columns=["TARGET"]).column("TARGET").null_count
    return FeatureStoreSummary(
        output=output,
        rows=rows,
        n_labelled=rows - labelled,
        n_features=len(FEATURES),
        columns=tuple(c.name for c in COLUMNS),
        seconds=round(time.perf_counter() - started, 3),
        sql_hash=sql_hash(),
        bytes=output.stat().st_size,
    )
