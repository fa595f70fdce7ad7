"""Resources whose launch-time config starts from the profile's values, one field at a time.

Dagster makes a configured resource's values the default of its whole ``config`` block: a run config (the
launchpad, ``--config-json``, ``dagster asset materialize --config-json``) that names one field replaces that
block, and every field it leaves out falls back to the class default, not to what the profile set. Here each
value the profile set becomes that field's own default, in a subclass made with pydantic's ``create_model``:
Dagster builds a resource's config schema from its fields' defaults, so a run config that names one field keeps
the profile's value of every other, and the launchpad shows the profile's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pydantic
from pydantic.fields import FieldInfo

PYTHONIC_RESOURCES = (dg.ConfigurableResource, dg.ConfigurableIOManager)


def _with_defaults(cls: type[pydantic.BaseModel], defaults: Mapping[str, Any]) -> type[pydantic.BaseModel]:
    """``cls`` (same name and module, so the UI and logs name it as before) whose fields in ``defaults`` default
    to those values (pydantic copies a mutable default for each instance)."""
    fields: dict[str, Any] = {
        name: (cls.model_fields[name].annotation, FieldInfo.merge_field_infos(
            # A nested config (a list of dg.Config, say) is a plain value in Dagster's schema; validating the
            # default turns it back into the field's type where the resource is made without config.
            cls.model_fields[name], default=_plain(value), default_factory=None, validate_default=True,
        ))
        for name, value in defaults.items()
    }
    return pydantic.create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **fields)


def _plain(value: Any) -> Any:
    """``value`` with every pydantic model in it (nested dg.Config) as its dict, as Dagster's schema holds it."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def keep_values_at_launch(resource: Any) -> Any:
    """``resource`` with each value it was given as that field's launch-time default; anything that is not a
    pythonic resource is returned as it is. Nested resources stay constructor arguments (Dagster wires them; they
    are not config), their own fields treated the same way."""
    if not isinstance(resource, PYTHONIC_RESOURCES):
        return resource
    given = {name: getattr(resource, name) for name in sorted(resource.model_fields_set)}
    nested = {name: keep_values_at_launch(value) for name, value in given.items()
              if isinstance(value, (*PYTHONIC_RESOURCES, dg.ResourceDefinition))}
    config = {name: value for name, value in given.items() if name not in nested}
    if not config and not nested:
        return resource
    return _with_defaults(type(resource), config)(**nested)


def keep_all_values_at_launch(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Every resource of a Definitions through ``keep_values_at_launch``."""
    return {key: keep_values_at_launch(value) for key, value in resources.items()}
