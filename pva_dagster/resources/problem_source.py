"""Where the MBPP-format problems come from, one class per variant: the embedded set, a local file, the hub
(MBPP, or EvalPlus's MBPP+ with its own extended tests)."""

from abc import ABC, abstractmethod

import dagster as dg
from pydantic import Field

from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.mbpp import HF_MBPP_ID, Problem, load_huggingface, load_local
from pva_dagster.study.problems.mbpp_plus import MBPP_PLUS_CONFIG, MBPP_PLUS_ID, load_mbpp_plus


class ProblemSource(dg.ConfigurableResource, ABC):
    """Phase 0 reads every problem from one of the subclasses below."""

    @abstractmethod
    def load(self) -> list[Problem]: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the problems came from, for the asset's metadata."""

    def provided_tests(self) -> dict[int, tuple[str, ...]]:
        """Extended tests the source ships, by task id (used instead of generated ones); none by default."""
        return {}


class EmbeddedProblems(ProblemSource):
    """The project's own MBPP-format problems, shipped as package data."""

    def load(self) -> list[Problem]:
        return load_embedded()

    def describe(self) -> str:
        return "embedded"


class LocalProblems(ProblemSource):
    """An MBPP file on disk: JSON lines (the MBPP release format) or Parquet."""

    path: str = Field(description="An MBPP .jsonl or .parquet file.")

    def load(self) -> list[Problem]:
        return load_local(self.path)

    def describe(self) -> str:
        return f"local:{self.path}"


class HubProblems(ProblemSource):
    """A Hugging Face data set in MBPP's format, every split concatenated (needs the hub or its cache)."""

    dataset_id: str = Field(default=HF_MBPP_ID, description="Hugging Face data set id.")
    config: str = Field(default="full", description="Its configuration (MBPP 'full': 974 problems).")

    def load(self) -> list[Problem]:
        return load_huggingface(self.dataset_id, self.config)

    def describe(self) -> str:
        return f"huggingface:{self.dataset_id}/{self.config}"


class HubMBPPPlus(ProblemSource):
    """EvalPlus's MBPP+ (378 problems) from the hub or its cache, with its own inputs and expected outputs as the
    extended tests."""

    dataset_id: str = Field(default=MBPP_PLUS_ID, description="Hugging Face data set id.")
    config: str = Field(default=MBPP_PLUS_CONFIG, description="Its configuration.")

    def load(self) -> list[Problem]:
        return load_mbpp_plus(self.dataset_id, self.config)[0]

    def provided_tests(self) -> dict[int, tuple[str, ...]]:
        return {task_id: found.tests for task_id, found in load_mbpp_plus(self.dataset_id, self.config)[1].items()}

    def describe(self) -> str:
        return f"huggingface:{self.dataset_id}/{self.config} (MBPP+)"
