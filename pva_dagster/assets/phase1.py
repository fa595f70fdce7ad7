"""Phase 1.0 (temperature 0, every problem) and Phase 1.2 (validation split, sampled): solutions, pass@1
labels from the sandbox, and the residual stream at the last prompt token, one task range per partition."""


from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd

from pva_dagster.assets.loading import model_on_device
from pva_dagster.assets.models import language_model_weights
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_GENERATION
from pva_dagster.partitions import (
    TASK_RANGE_DIM,
    TEMPERATURE_DIM,
    TaskRange,
    phase1_0_partitions,
    phase1_2_partitions,
)
from pva_dagster.profiles import ACTIVE
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, Sandbox, StudyDesign
from pva_dagster.study import storage
from pva_dagster.study.generation.models import model_fingerprint, stop_token_ids
from pva_dagster.study.generation.prompts import build_prompt, format_for_model
from pva_dagster.study.generation.residual import decoder_blocks, validate_layers
from pva_dagster.study.generation.solutions import Task, run_solutions, summarize

PHASE1_0_PARTITIONS = phase1_0_partitions(ACTIVE.design)
PHASE1_2_PARTITIONS = phase1_2_partitions(ACTIVE.design)


def _tasks(problems: pd.DataFrame, task_range: TaskRange, design: StudyDesign, tokenizer) -> list[Task]:
    rows = problems[problems.task_id.between(task_range.first, task_range.last)].sort_values("task_id")
    return [
        Task(
            task_id=int(row.task_id),
            prompt=format_for_model(
                tokenizer, build_prompt(row.text, list(row.test_list), design.prompt_template), design.use_chat_template
            ),
            test_list=tuple(row.test_list),
            setup_code=row.test_setup_code or "",
        )
        for row in rows.itertuples()
    ]


def _generate_and_label(
    context: dg.AssetExecutionContext,
    problems: pd.DataFrame,
    task_range: TaskRange,
    temperature: float,
    samples: int,
    dataset_path: Path,
    activation_path: Callable[[str, int, int, int], Path],
    language_model: LanguageModel,
    study_design: StudyDesign,
    data_store: DataStore,
    sandbox: Sandbox,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """Shared body of both Phase 1 assets: claim a device, load the model, run, report."""
    layout = data_store.layout
    with model_on_device(context, device_pool, language_model, data_store) as (device, model, tokenizer):
        layers = validate_layers(model, study_design.layers or range(len(decoder_blocks(model))))
        tasks = _tasks(problems, task_range, study_design, tokenizer)
        settings = language_model.settings(study_design, temperature, samples, model=model)
        context.log.info(
            f"{len(tasks)} tasks in {task_range.key} at temperature {temperature}, {samples} sample(s) each, "
            f"{len(layers)} layers stored, on {device}, batches of {settings.batch_size} rows"
        )
        frame = run_solutions(
            tasks,
            model=model,
            tokenizer=tokenizer,
            settings=settings,
            stop_token_ids=stop_token_ids(model, tokenizer),
            layers=layers,
            dataset_path=dataset_path,
            activation_path=activation_path,
            limits=sandbox.limits,
            seed=study_design.seed,
            extra_columns={"temperature": temperature, "partition": task_range.key},
            max_workers=sandbox.max_workers,
            log=context.log.info,
        )
    if frame.empty:
        storage.write_parquet(dataset_path, frame)
    summary = summarize(frame)
    storage.write_json(
        layout.metadata_for(dataset_path),
        {
            **summary,
            "partition": task_range.key,
            "temperature": temperature,
            "samples_per_task": samples,
            "seed": study_design.seed,
            "layers": layers,
            "device": device,
            "sandbox_isolation": sandbox.isolation_level,
            "model": {"weights": language_model.weights(layout), **model_fingerprint(model)},
            "generation": {**language_model.model_dump(), **study_design.generation_fields()},
            "generation_settings": settings.describe(),  # the batch size actually used
        },
    )
    return dg.MaterializeResult(
        metadata={
            "dataset": dg.MetadataValue.path(str(dataset_path)),
            "records": summary["records"],
            "correct": summary["correct"],
            "incorrect": summary["incorrect"],
            "pass_rate": summary["pass_rate"],
            "device": device,
            "sandbox_isolation": sandbox.isolation_level,
        }
    )


@dg.asset(
    group_name=GROUP_GENERATION,
    partitions_def=PHASE1_0_PARTITIONS,
    deps=[language_model_weights],
    op_tags=GPU_STEP_TAGS,
)
def phase1_0_solutions(
    context: dg.AssetExecutionContext,
    mbpp_problems: pd.DataFrame,
    language_model: LanguageModel,
    study_design: StudyDesign,
    data_store: DataStore,
    sandbox: Sandbox,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """Phase 1.0: one greedy solution per problem of the task range, labelled, with its prompt residuals."""
    task_range = TaskRange.parse(context.partition_key)
    layout = data_store.layout
    return _generate_and_label(
        context,
        mbpp_problems,
        task_range,
        temperature=0.0,
        samples=1,
        dataset_path=layout.phase1_0_dataset(task_range.key),
        activation_path=lambda label, task_id, _sample, layer: layout.phase1_0_activation(label, task_id, layer),
        language_model=language_model,
        study_design=study_design,
        data_store=data_store,
        sandbox=sandbox,
        device_pool=device_pool,
    )


@dg.asset(
    group_name=GROUP_GENERATION,
    partitions_def=PHASE1_2_PARTITIONS,
    deps=[language_model_weights],
    op_tags=GPU_STEP_TAGS,
)
def phase1_2_solutions(
    context: dg.AssetExecutionContext,
    mbpp_problems: pd.DataFrame,
    problem_splits: pd.DataFrame,
    language_model: LanguageModel,
    study_design: StudyDesign,
    data_store: DataStore,
    sandbox: Sandbox,
    device_pool: DevicePool,
) -> dg.MaterializeResult:
    """Phase 1.2: the validation split again at one temperature, several seeded samples per task."""
    keys = context.partition_key.keys_by_dimension
    task_range, temperature = TaskRange.parse(keys[TASK_RANGE_DIM]), float(keys[TEMPERATURE_DIM])
    validation = problem_splits.task_id[problem_splits.split == "validation"]
    layout = data_store.layout
    return _generate_and_label(
        context,
        mbpp_problems[mbpp_problems.task_id.isin(validation)],
        task_range,
        temperature=temperature,
        samples=study_design.samples_per_temperature,
        dataset_path=layout.phase1_2_dataset(temperature, task_range.key),
        activation_path=lambda label, task_id, sample, layer: layout.phase1_2_activation(
            temperature, label, task_id, sample, layer
        ),
        language_model=language_model,
        study_design=study_design,
        data_store=data_store,
        sandbox=sandbox,
        device_pool=device_pool,
    )
