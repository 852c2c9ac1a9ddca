"""Platform tweaks: every speed trick that touches a private internal of a dependency, one module per dependency.

* :mod:`~qlib_prefect.tweaks.interpreter`: CPython's exit (``threading._shutdown``, ``atexit._run_exitfuncs``,
  ``os._exit``), switch ``QLIB_PREFECT_FAST_EXIT``.
* :mod:`~qlib_prefect.tweaks.heap`: glibc ``mallopt``/``malloc_trim`` and numpy's ``_set_madvise_hugepage``,
  switch ``QLIB_PREFECT_HEAP_TWEAKS``.
* :mod:`~qlib_prefect.tweaks.prefect_server`: Prefect's temporary API server started early (its uvicorn app
  factory and private ``PREFECT__SERVER_*`` flags, its settings files read without importing Prefect), switch
  ``QLIB_PREFECT_EARLY_SERVER``.
* :mod:`~qlib_prefect.tweaks.mlflow_store`: MLflow's tracking store behind ``MlflowClient``
  (``client._tracking_client.store``: SQL listing, SQLite pragmas), switch ``QLIB_PREFECT_MLFLOW_STORE_TWEAKS``.

Each module imports only its own dependency (the data layer may import :mod:`.heap`); each checks that the internal
is there (a test in ``tests/tweaks`` fails loudly when a release removes or changes it) and otherwise logs once at
debug level and takes the public, slower path. This ``__init__`` imports nothing. See ``docs/architecture.md``,
"Platform tweaks", for what each saves.
"""
