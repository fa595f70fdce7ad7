"""Dagster resources: every external system (data, model, SAEs, devices) sits behind one of these."""

from pva_dagster.resources.data_store import DataStore
from pva_dagster.resources.design import StudyDesign
from pva_dagster.resources.devices import DevicePool, DeviceSource, WorkerDevice
from pva_dagster.resources.language_model import LanguageModel
from pva_dagster.resources.problem_source import ProblemSource
from pva_dagster.resources.sae_source import SAESource
from pva_dagster.resources.sandbox import Sandbox

__all__ = [
    "DataStore",
    "DevicePool",
    "DeviceSource",
    "LanguageModel",
    "ProblemSource",
    "SAESource",
    "Sandbox",
    "StudyDesign",
    "WorkerDevice",
]
