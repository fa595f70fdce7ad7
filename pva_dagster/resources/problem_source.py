"""Where the MBPP-format problems come from: the embedded set, a local file, or the Hugging Face hub."""


import dagster as dg
from pydantic import Field

from pva_dagster.study.problems.mbpp import PROBLEM_SOURCES, Problem, load_problems


class ProblemSource(dg.ConfigurableResource):
    source: str = Field(
        default="embedded",
        description=f"One of {sorted(PROBLEM_SOURCES)}: 'embedded' (the project's own MBPP-format problems), "
        "'local' (an MBPP .jsonl/.parquet at `path`), 'huggingface' (google-research-datasets/mbpp, full).",
    )
    path: str | None = Field(default=None, description="The file for source='local'.")

    def load(self) -> list[Problem]:
        return load_problems(self.source, path=self.path)

    def describe(self) -> str:
        return self.source if self.path is None else f"{self.source}:{self.path}"
