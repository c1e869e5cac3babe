"""The Spark session of the Spark engine, from settings, and what a record says about it.

One session per process: :func:`spark_session` starts it (or joins the one already running)
from :class:`~creditrisk.settings.SparkSettings` — ``local[*]`` by default, a master URL
(``CREDITRISK_SPARK_MASTER``) or a Spark Connect server (``SPARK_REMOTE=sc://host:15002``) —
with extra ``spark.*`` options on top. Whatever the options, the session computes as the
feature SQL expects: ANSI SQL on (a bad cast or a division by zero fails instead of turning into
NULL) and UTC session time.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from creditrisk.features.engine import EngineInfo
from creditrisk.settings import SparkSettings, default_environment

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Options the engine's results depend on: set on every session, after the user's options.
REQUIRED_OPTIONS = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}

#: The JVM's logging: errors only (see the file).
LOG4J2_FILE = Path(__file__).with_name("log4j2.properties")

#: Defaults a user's ``spark.*`` options may override: no console progress bars in a notebook,
#: only errors from the JVM's log.
DEFAULT_OPTIONS = {
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J2_FILE}",
}

INSTALL_HINT = (
    "the Spark engine needs the spark extra: `make install-spark`, or any make target with "
    "ENGINE=spark, or `pip install 'creditrisk[spark]'`"
)
JAVA_HINT = (
    "the Spark engine needs Java 17 on PATH or in JAVA_HOME "
    "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17)"
)


class SparkUnavailable(RuntimeError):
    """The Spark engine cannot start here: pyspark or Java is missing, or the session failed."""


def spark_info(spark: SparkSession, settings: SparkSettings) -> EngineInfo:
    """The Spark version the session reports and where it runs."""
    master = settings.remote or spark.sparkContext.master
    return EngineInfo("spark", spark.version, master)


def _builder(settings: SparkSettings) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable(INSTALL_HINT) from exc
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.remote:
        # The Connect server's JVM is started and configured by its operator.
        builder = builder.remote(settings.remote)
        defaults: dict[str, str] = {}
    else:
        builder = builder.master(settings.master)
        defaults = DEFAULT_OPTIONS
    for name, value in {**defaults, **settings.options, **REQUIRED_OPTIONS}.items():
        builder = builder.config(name, value)
    return builder


def _check_java(settings: SparkSettings) -> None:
    # A Connect client needs no JVM of its own; a local or master session starts one.
    if settings.remote:
        return
    home = settings.java_home
    found = shutil.which("java", path=f"{home}/bin") if home else shutil.which("java")
    if found is None:
        raise SparkUnavailable(JAVA_HINT)


def get_session(settings: SparkSettings) -> SparkSession:
    """The process's Spark session for ``settings``: started if none runs, else the running one.

    Spark's Python workers run this interpreter (``PYSPARK_PYTHON``, unless set), so they see
    the same packages as the driver.

    Raises:
        SparkUnavailable: pyspark is not installed, Java is missing, or the session cannot start.
    """
    builder = _builder(settings)
    _check_java(settings)
    default_environment("PYSPARK_PYTHON", sys.executable)
    default_environment("PYSPARK_DRIVER_PYTHON", sys.executable)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # py4j, the JVM launcher and grpc each raise their own types
        raise SparkUnavailable(
            f"the Spark session at {settings.target} did not start: {exc}"
        ) from exc
    # getOrCreate returns a running session as it is: make sure of what the SQL relies on.
    for name, value in REQUIRED_OPTIONS.items():
        spark.conf.set(name, value)
    return spark


def _active() -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


@contextmanager
def spark_session(settings: SparkSettings) -> Iterator[SparkSession]:
    """A session for the block (:func:`get_session`), stopped afterwards if the block started
    it: a session that was already running (a notebook's, a test's) is left running."""
    running = _active() is not None
    spark = get_session(settings)
    try:
        yield spark
    finally:
        if not running:
            spark.stop()
