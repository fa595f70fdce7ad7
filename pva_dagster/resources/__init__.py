"""Dagster resources: every external system (data, model, SAEs, devices) sits behind one of these."""

from pva_dagster.resources.data_store import DataStore
from pva_dagster.resources.design import StudyDesign
from pva_dagster.resources.devices import DevicePool, DeviceSource, WorkerDevice
from pva_dagster.resources.language_model import EmbeddedModel, HubModel, LanguageModel, LocalModel
from pva_dagster.resources.problem_source import (
    EmbeddedProblems,
    HubMBPPPlus,
    HubProblems,
    HumanEvalProblems,
    LocalProblems,
    ProblemSource,
)
from pva_dagster.resources.sae_source import EmbeddedSAEs, LocalSAEs, PretrainedSAEs, PretrainedVariant, SAESource
from pva_dagster.resources.sandbox_resource import Sandbox

# Assets take the base classes (LanguageModel, ProblemSource, SAESource); profiles bind one variant of each.
__all__ = [
    "DataStore",
    "DevicePool",
    "DeviceSource",
    "EmbeddedModel",
    "EmbeddedProblems",
    "EmbeddedSAEs",
    "HubMBPPPlus",
    "HubModel",
    "HubProblems",
    "HumanEvalProblems",
    "LanguageModel",
    "LocalModel",
    "LocalProblems",
    "LocalSAEs",
    "PretrainedSAEs",
    "PretrainedVariant",
    "ProblemSource",
    "SAESource",
    "Sandbox",
    "StudyDesign",
    "WorkerDevice",
]
