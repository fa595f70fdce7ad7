"""One Phase 1 partition: the tasks of a task range generated at one temperature, labelled in the sandbox,
their prompt residuals stored; the body of Phase 1.0 (greedy, every problem) and 1.2 (sampled, validation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pva_dagster.study import storage
from pva_dagster.study.generation.activation_store import ActivationStore
from pva_dagster.study.generation.prompts import build_prompt, format_for_model
from pva_dagster.study.generation.residual import decoder_blocks, validate_layers
from pva_dagster.study.generation.solutions import (
    GenerationRun,
    Generator,
    SolutionGroup,
    run_solutions,
    summarize,
    tasks_from_problems,
)
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.task_ranges import TaskRange


@dataclass(frozen=True)
class Partition:
    """What one Phase 1 partition generates and where its records and residuals go."""

    task_range: TaskRange
    temperature: float
    samples: int
    dataset_path: Path
    activations: ActivationStore


@dataclass(frozen=True)
class PromptFormat:
    """How a problem becomes the prompt the model continues: the template, and the tokenizer's chat template or not."""

    template: str
    use_chat_template: bool

    def prompts(self, problems: pd.DataFrame, tokenizer: Any) -> dict[int, str]:
        return prompts_for(problems, tokenizer, self.template, self.use_chat_template)


def prompts_for(
    problems: pd.DataFrame, tokenizer: Any, prompt_template: str, use_chat_template: bool
) -> dict[int, str]:
    """task_id -> the prompt Phase 1 generates from (the template, formatted for the model)."""
    return {
        int(row.task_id): format_for_model(
            tokenizer, build_prompt(row.text, list(row.test_list), prompt_template), use_chat_template
        )
        for row in problems.itertuples()
    }


def generate_and_label(
    problems: pd.DataFrame,
    partition: Partition,
    extended: pd.DataFrame | None,
    generator: Generator,
    prompt_format: PromptFormat,
    layers: Sequence[int] | None,
    seed: int,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run the partition's problems (resumably) and return (records, metadata).

    The records are kept as they are made in ``DataLayout.records_in_progress(partition.dataset_path)``, which a
    re-run resumes from; the dataset file itself is the caller's to write (the Phase 1 asset's IO manager).

    ``problems``: the candidates (the partition keeps those in its task range); ``extended``: their extended
    tests (Phase 0's table; None: base asserts only); ``layers``: the residuals stored (None = every layer).
    """
    task_range = partition.task_range
    rows = problems[problems.task_id.between(task_range.first, task_range.last)].sort_values("task_id")
    layers = validate_layers(generator.model, layers or range(len(decoder_blocks(generator.model))))
    prompts = prompt_format.prompts(rows, generator.tokenizer)
    tasks = tasks_from_problems(rows, prompts, extended)
    settings = generator.settings(partition.temperature, partition.samples, list(prompts.values()))
    log(
        f"{len(tasks)} tasks in {task_range.key} at temperature {partition.temperature}, {partition.samples} "
        f"sample(s) each, {len(layers)} layers stored, batches of {settings.batch_size} rows"
    )
    group = SolutionGroup(
        DataLayout.records_in_progress(partition.dataset_path), tasks, producer={"layers": layers},
        extra_columns={"temperature": partition.temperature, "partition": task_range.key},
    )
    frame = run_solutions(group, generator, GenerationRun(settings, seed, layers, partition.activations, log=log))
    metadata = {
        **summarize(frame), "label_rule": generator.label_rule, "partition": task_range.key,
        "temperature": partition.temperature,
        "samples_per_task": partition.samples, "seed": seed, "layers": layers, "model": generator.identity(),
        "generation_settings": settings.describe(),  # the batch size actually used
    }
    return frame, metadata


def write_metadata(dataset_path: Path, metadata: dict[str, Any]) -> Path:
    return storage.write_json(DataLayout.metadata_for(dataset_path), metadata)
