"""Dagster assets, one module per phase; each asset is a thin wrapper over ``pva_dagster.study``."""
