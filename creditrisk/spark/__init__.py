"""The Spark engine: the same feature SQL on Apache Spark, for data past one machine.

DuckDB (:mod:`creditrisk.features.engine`) is the embedded default and the reference; Spark is
an engine choice (``CREDITRISK_ENGINE=spark``, ``--engine spark``, ``ENGINE=spark``), never a
second feature definition. It needs the ``spark`` extra (pyspark) and Java 17; Make installs
the extra itself when a target is given ``ENGINE=spark``.

* :mod:`creditrisk.spark.session` — the session from :class:`~creditrisk.settings.SparkSettings`
  (local, a master URL or Spark Connect) and what a record says about it;
* :mod:`creditrisk.spark.features` — the seven input relations over bronze Parquet and the
  feature store written by Spark;
* :mod:`creditrisk.spark.scoring` — batch scoring with the champion's scorer on the executors.
"""
