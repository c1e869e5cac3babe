"""Orchestrators' views of the pipeline: each shells out to the ``creditrisk`` CLI, as ``make``.

:mod:`creditrisk.orchestration.airflow_dag` is the Airflow DAG. Nothing else in the package
imports this package, so the library, the notebooks and the service never need an orchestrator.
"""
