"""The stage layer: one module per notebook of the pipeline, and what they share.

============  ======================  ===============================================
module        notebook                writes (pipeline mode)
============  ======================  ===============================================
``ingest``    ``01_ingest.ipynb``     ``data/bronze/``, ``reports/ingestion_summary.json``
``features``  ``02_features.ipynb``   ``data/features/feature_store.parquet``
``train``     ``03_train.ipynb``      ``data/splits/``, an MLflow run, ``training_run.json``
``evaluate``  ``04_evaluate.ipynb``   ``reports/metrics.json``, ``reports/evaluation/``
``validate``  ``05_validate.ipynb``   ``reports/validation.json``
``register``  ``06_register.ipynb``   a registry version, aliases, ledger, lineage, card
``monitor``   ``07_monitor.ipynb``    drift, stability, freshness, the retrain trigger
============  ======================  ===============================================

Each module declares ``Params`` (*the* declaration of the stage's parameters: type, default =
the documented policy, meaning; :mod:`.params`), an ``Outcome``, the named steps its notebook's
sections call, and ``run(params, ctx)`` chaining them. :mod:`.context` is the
:class:`~creditrisk.stages.context.RunContext` every stage receives (workspace, run id, tracking
store, mode: ``pipeline`` or ``interactive``), :mod:`.notebook` the ``begin`` call after a
notebook's parameters cell, :mod:`.results` the ``record`` call that ends it.

This layer alone builds workspace paths, talks to MLflow runs and the registry (through
:mod:`creditrisk.tracking` and :mod:`creditrisk.registry`), and starts processes; the domain
packages below it are functions of tables, models and settings. Nothing here is imported at
package import: a notebook's import closure holds only the stage it runs.
"""
