"""Feature store: the vetted feature set (FEATURES.md), defined once in SQL and run in DuckDB.

``catalog`` declares every output column; ``engine`` runs ``sql/*.sql`` over bronze Parquet
(:func:`build_feature_store`) or over in-memory tables (:func:`compute_features`).
"""

from creditrisk.features.catalog import (
    COLUMNS,
    FEATURES,
    GROUPS,
    ID_COLUMN,
    SQL_DIR,
    TARGET_COLUMN,
    FeatureSpec,
    as_frame,
    categorical_features,
    column_names,
    feature,
    feature_names,
    group_columns,
    numeric_features,
    sql_hash,
)
from creditrisk.features.engine import (
    FeatureStoreSummary,
    bind_memory_sources,
    bind_parquet_sources,
    build_feature_store,
    compute_features,
    feature_query,
    feature_sql,
    register_feature_views,
)

__all__ = [
    "COLUMNS",
    "FEATURES",
    "GROUPS",
    "ID_COLUMN",
    "SQL_DIR",
    "TARGET_COLUMN",
    "FeatureSpec",
    "FeatureStoreSummary",
    "as_frame",
    "bind_memory_sources",
    "bind_parquet_sources",
    "build_feature_store",
    "categorical_features",
    "column_names",
    "compute_features",
    "feature",
    "feature_names",
    "feature_query",
    "feature_sql",
    "group_columns",
    "numeric_features",
    "register_feature_views",
    "sql_hash",
]
