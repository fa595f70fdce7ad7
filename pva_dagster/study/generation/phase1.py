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
from pva_dagster.study.generation.batched import GenerationSettings, longest_prompt_tokens
from pva_dagster.study.generation.models import model_fingerprint, stop_token_ids
from pva_dagster.study.generation.prompts import build_prompt, format_for_model
from pva_dagster.study.generation.residual import decoder_blocks, validate_layers
from pva_dagster.study.generation.solutions import run_solutions, summarize, tasks_from_problems
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.task_ranges import TaskRange
from pva_dagster.study.sandbox.sandbox import SandboxLimits


@dataclass(frozen=True)
class Partition:
    """What one Phase 1 partition generates and where its records and residuals go."""

    task_range: TaskRange
    temperature: float
    samples: int
    dataset_path: Path
    activations: ActivationStore


@dataclass(frozen=True)
class Generator:
    """The loaded model and how it is prompted, run and judged (the same for every partition of a run)."""

    model: Any
    tokenizer: Any
    weights: str  # what from_pretrained loaded: identifies the model in fingerprints and metadata
    prompt_template: str
    use_chat_template: bool
    # (temperature, samples, longest prompt's tokens) -> settings
    settings: Callable[[float, int, int], GenerationSettings]
    limits: SandboxLimits
    max_workers: int | None


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
    generator: Generator,
    layers: Sequence[int] | None,
    seed: int,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run the partition's problems (resumably) and write its records; returns (records, metadata).

    ``problems``: the candidates (the partition keeps those in its task range); ``layers``: the residuals
    stored (None = every layer). The metadata is also written beside the dataset (``*_metadata.json``).
    """
    task_range = partition.task_range
    rows = problems[problems.task_id.between(task_range.first, task_range.last)].sort_values("task_id")
    layers = validate_layers(generator.model, layers or range(len(decoder_blocks(generator.model))))
    prompts = prompts_for(rows, generator.tokenizer, generator.prompt_template, generator.use_chat_template)
    tasks = tasks_from_problems(rows, prompts)
    settings = generator.settings(
        partition.temperature, partition.samples, longest_prompt_tokens(generator.tokenizer, list(prompts.values()))
    )
    model = {"weights": generator.weights, **model_fingerprint(generator.model)}
    log(
        f"{len(tasks)} tasks in {task_range.key} at temperature {partition.temperature}, {partition.samples} "
        f"sample(s) each, {len(layers)} layers stored, batches of {settings.batch_size} rows"
    )
    frame = run_solutions(
        tasks, model=generator.model, tokenizer=generator.tokenizer, settings=settings,
        stop_token_ids=stop_token_ids(generator.model, generator.tokenizer), layers=layers,
        dataset_path=partition.dataset_path, activations=partition.activations, limits=generator.limits,
        seed=seed, producer={"model": model, "layers": layers, "limits": generator.limits},
        extra_columns={"temperature": partition.temperature, "partition": task_range.key},
        max_workers=generator.max_workers, log=log,
    )
    metadata = {
        **summarize(frame), "partition": task_range.key, "temperature": partition.temperature,
        "samples_per_task": partition.samples, "seed": seed, "layers": layers, "model": model,
        "generation_settings": settings.describe(),  # the batch size actually used
    }
    return frame, metadata


def write_metadata(dataset_path: Path, metadata: dict[str, Any]) -> Path:
    return storage.write_json(DataLayout.metadata_for(dataset_path), metadata)
