"""Phase 1.0 (temperature 0, every problem) and Phase 1.2 (validation split, sampled): solutions, pass@1
labels from the sandbox, and the residual stream at the last prompt token, one task range per partition.

The partitions come from the profile's study design, so the two assets are made by ``phase1_assets(design)``
(``definitions.build_definitions`` calls it once per Definitions)."""

import dagster as dg
import pandas as pd

from pva_dagster.assets.loading import GenerationResources, generator_on_device
from pva_dagster.assets.provenance import data_version
from pva_dagster.assets.weights import language_model_weights
from pva_dagster.constants import GPU_STEP_TAGS, GROUP_GENERATION
from pva_dagster.partitions import (
    TASK_RANGE_DIM,
    TEMPERATURE_DIM,
    TaskRange,
    task_range_partitions,
    temperature_by_task_range,
)
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, Sandbox, StudyDesign
from pva_dagster.study.domain import GREEDY_TEMPERATURE, VALIDATION_SPLIT
from pva_dagster.study.generation.activation_store import PerRecordActivations, SharedTaskActivations
from pva_dagster.study.generation.labelled_generation import Partition, generate_and_label, write_metadata
from pva_dagster.study.problems.splits import split_task_ids

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "3"
# Phase 1.2's own: its residuals are stored once per task and layer, shared by samples and temperatures.
PHASE1_2_CODE_VERSION = "4"


def _run(
    context: dg.AssetExecutionContext, problems: pd.DataFrame, extended: pd.DataFrame, partition: Partition,
    resources: GenerationResources,
) -> dg.Output[pd.DataFrame]:
    """Shared body of both Phase 1 assets: claim a device, load the model, generate and label, report."""
    study_design, sandbox, language_model = resources.study_design, resources.sandbox, resources.language_model
    prompt_format = study_design.prompt_format()
    with generator_on_device(context, resources) as (device, generator):
        context.log.info(f"generating on {device}")
        frame, metadata = generate_and_label(
            problems, partition, extended, generator, prompt_format, study_design.layers, study_design.seed,
            context.log.info,
        )
    extra = {"device": device, "sandbox_isolation": sandbox.isolation_level}
    generation = {**language_model.model_dump(), **study_design.generation_fields()}
    write_metadata(partition.dataset_path, {**metadata, **extra, "generation": generation})
    return dg.Output(frame, data_version=data_version(frame), metadata={
        **{k: metadata[k] for k in ("records", "correct", "incorrect", "pass_rate", "label_rule", "label_flips")},
        **extra,
    })


def phase1_assets(design: StudyDesign) -> list[dg.AssetsDefinition]:
    """Phase 1.0 and 1.2, partitioned by the design's task ranges (and 1.2 by its temperatures)."""

    @dg.asset(
        group_name=GROUP_GENERATION, deps=[language_model_weights], op_tags=GPU_STEP_TAGS,
        partitions_def=task_range_partitions(design.max_task_id, design.task_range_size), code_version=CODE_VERSION,
    )
    def phase1_0_solutions(
        context: dg.AssetExecutionContext, mbpp_problems: pd.DataFrame, extended_tests: pd.DataFrame,
        language_model: LanguageModel, study_design: StudyDesign, data_store: DataStore, sandbox: Sandbox,
        device_pool: DevicePool,
    ) -> dg.Output[pd.DataFrame]:
        """Phase 1.0: one greedy solution per problem of the task range, labelled, with its prompt residuals."""
        task_range, layout = TaskRange.parse(context.partition_key), data_store.layout
        partition = Partition(
            task_range, temperature=GREEDY_TEMPERATURE, samples=1,
            dataset_path=layout.phase1_0_dataset(task_range.key),
            activations=PerRecordActivations(
                lambda label, task_id, _sample, layer: layout.phase1_0_activation(label, task_id, layer)
            ),
        )
        return _run(
            context, mbpp_problems, extended_tests, partition,
            GenerationResources(language_model, study_design, data_store, sandbox, device_pool),
        )

    @dg.asset(
        group_name=GROUP_GENERATION, deps=[language_model_weights], op_tags=GPU_STEP_TAGS,
        partitions_def=temperature_by_task_range(design.temperatures, design.max_task_id, design.task_range_size),
        code_version=PHASE1_2_CODE_VERSION,
    )
    def phase1_2_solutions(
        context: dg.AssetExecutionContext, mbpp_problems: pd.DataFrame, problem_splits: pd.DataFrame,
        extended_tests: pd.DataFrame, language_model: LanguageModel, study_design: StudyDesign,
        data_store: DataStore, sandbox: Sandbox, device_pool: DevicePool,
    ) -> dg.Output[pd.DataFrame]:
        """Phase 1.2: the validation split again at one temperature, several seeded samples per task."""
        keys = context.partition_key.keys_by_dimension
        task_range, temperature = TaskRange.parse(keys[TASK_RANGE_DIM]), float(keys[TEMPERATURE_DIM])
        layout = data_store.layout
        partition = Partition(
            task_range, temperature, samples=study_design.samples_per_temperature,
            dataset_path=layout.phase1_2_dataset(temperature, task_range.key),
            # The prompt residual is the same for every sample and temperature: stored once per task and layer.
            activations=SharedTaskActivations(layout.phase1_2_activation),
        )
        validation = mbpp_problems.task_id.isin(split_task_ids(problem_splits, VALIDATION_SPLIT))
        return _run(
            context, mbpp_problems[validation], extended_tests, partition,
            GenerationResources(language_model, study_design, data_store, sandbox, device_pool),
        )

    return [phase1_0_solutions, phase1_2_solutions]
