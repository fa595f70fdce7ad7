"""Nothing new to do, nothing redone: an asset whose code version, inputs and settings are those of its latest
materialization hands on the value that materialization stored instead of computing it again.

"The same inputs" is Dagster's own record: the data version of each upstream asset's latest materialization
(every asset here versions its value by content, provenance.py, so a re-materialization that produced the same
value counts as unchanged) and, for a partitioned upstream, which materialization of each partition is the
latest. "The same settings" is a fingerprint of the step's config and the resources it reads. All of it, with the
asset's code version, goes into the materialization's metadata as one fingerprint, which the next run compares.
A stored value that is gone or unreadable is computed again, never assumed; a run tagged ``pva/recompute``
(``pva-study --force``, or the tag set at launch) computes everything again.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import BaseModel

from pva_dagster.assets.provenance import data_version
from pva_dagster.resources.parquet_io import stored_value
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.records import fingerprint

INPUTS_FINGERPRINT = "inputs fingerprint"
RECOMPUTE_TAG = "pva/recompute"
DATA_VERSION_TAG = "dagster/data_version"  # where Dagster records a materialization's data version


def _setting(value: Any) -> Any:
    """A config or resource as plain data (its fields), anything else as it is."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _upstream_versions(context: dg.AssetExecutionContext) -> dict[str, Any]:
    """Per upstream asset: its latest data version, or per partition the storage id of its latest materialization."""
    instance, versions = context.instance, dict[str, Any]()
    for key in sorted(context.assets_def.asset_deps[context.asset_key], key=lambda k: k.to_user_string()):
        name = key.to_user_string()
        by_partition = instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
        if by_partition:
            versions[name] = dict(sorted(by_partition.items()))
        else:
            record = instance.get_latest_data_version_record(key)
            materialization = record.asset_materialization if record else None
            versions[name] = (materialization.tags or {}).get(DATA_VERSION_TAG) if materialization else None
    return versions


def inputs_fingerprint(context: dg.AssetExecutionContext, *settings: Any) -> str:
    """What this step's value is made from: the asset's code version, its upstream versions and ``settings``."""
    code_version = context.assets_def.code_versions_by_key.get(context.asset_key)
    return fingerprint(code_version, _upstream_versions(context), [_setting(s) for s in settings])


def stored_if_unchanged(context: dg.AssetExecutionContext, made_from: str, layout: DataLayout) -> dg.Output | None:
    """The asset's stored value as this step's output when its latest materialization was made from ``made_from``
    (same data version, so downstream stays fresh; that materialization's metadata carried over); None when it
    was made otherwise, never made, or its files are gone."""
    if context.run.tags.get(RECOMPUTE_TAG, "").lower() in ("1", "true", "yes"):
        return None
    event = context.instance.get_latest_materialization_event(context.asset_key)
    materialization = event.asset_materialization if event else None
    previous = materialization.metadata.get(INPUTS_FINGERPRINT) if materialization else None
    if event is None or materialization is None or getattr(previous, "value", None) != made_from:
        return None
    try:
        value = stored_value(layout, context.asset_key.path[-1])
    except (FileNotFoundError, OSError) as error:
        context.log.info(f"the stored value is unreadable ({error}): computing it again")
        return None
    context.log.info(
        f"code, inputs and settings unchanged since run {event.run_id}: its stored value is handed on, nothing "
        "recomputed"
    )
    return dg.Output(value, data_version=data_version(value), metadata={
        **materialization.metadata, "handed on from run": event.run_id,
    })
