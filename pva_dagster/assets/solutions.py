"""Phase 1.0 (temperature 0, every problem) and Phase 1.2 (validation split, sampled): solutions, pass@1
labels from the sandbox, and the residual stream at the last prompt token, one task range per partition.

The partitions come from the profile's study design, so the two assets are made by ``phase1_assets(design)``
(``definitions.build_definitions`` calls it once per Definitions)."""

import warnings
from collections.abc import Mapping

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
    dimension_keys,
    task_range_partitions,
    temperature_by_task_range,
)
from pva_dagster.resources import DataStore, DevicePool, LanguageModel, Sandbox, StudyDesign
from pva_dagster.study.domain import GREEDY_TEMPERATURE, VALIDATION_SPLIT
from pva_dagster.study.generation.activation_store import PerRecordActivations, SharedTaskActivations
from pva_dagster.study.generation.labelled_generation import Partition, generate_and_label, write_metadata
from pva_dagster.study.plots import markdown_table
from pva_dagster.study.problems.splits import split_task_ids

# Phase 1.2's backfill policy is chosen on purpose (one run, one model load): Dagster's beta notice about the
# parameter would print each time the Definitions are built. Only that notice is silenced.
warnings.filterwarnings("ignore", message=r".*`backfill_policy`.*beta", category=dg.BetaWarning)

# Bump when a change of this module's logic changes what the assets produce (the web UI then marks them stale).
CODE_VERSION = "3"
# Phase 1.2's own: its residuals are stored once per task and layer, shared by samples and temperatures.
PHASE1_2_CODE_VERSION = "4"
# What each partition's summary in the asset metadata shows.
PARTITION_SUMMARY = ("records", "correct", "incorrect", "pass_rate", "label_flips")


def _run(
    context: dg.AssetExecutionContext, problems: pd.DataFrame, extended: pd.DataFrame,
    partitions: Mapping[str, Partition], resources: GenerationResources,
) -> dg.Output[dict[str, pd.DataFrame]]:
    """Shared body of both Phase 1 assets: claim a device and load the model once, generate and label each of the
    run's partitions (one, or a backfill's range), report. The value maps partition key -> records."""
    study_design, sandbox, language_model = resources.study_design, resources.sandbox, resources.language_model
    prompt_format = study_design.prompt_format()
    generation = {**language_model.model_dump(), **study_design.generation_fields()}
    frames, summaries = {}, []
    with generator_on_device(context, resources) as (device, generator):
        extra = {"device": device, "sandbox_isolation": sandbox.isolation_level}
        for number, (key, partition) in enumerate(partitions.items(), start=1):
            context.log.info(f"partition {key} ({number} of {len(partitions)}): generating on {device}")
            frames[key], metadata = generate_and_label(
                problems, partition, extended, generator, prompt_format, study_design.layers, study_design.seed,
                context.log.info,
            )
            write_metadata(partition.dataset_path, {**metadata, **extra, "generation": generation})
            summaries.append({"partition": key, **{k: metadata[k] for k in PARTITION_SUMMARY}})
    table = pd.DataFrame(summaries)
    return dg.Output(frames, data_version=data_version(frames), metadata={
        **(summaries[0] if len(summaries) == 1 else {"partitions": dg.MetadataValue.md(markdown_table(table))}),
        "label_rule": metadata["label_rule"], **extra,
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
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        """Phase 1.0: one greedy solution per problem of the task range, labelled, with its prompt residuals."""
        layout = data_store.layout
        activations = PerRecordActivations(
            lambda label, task_id, _sample, layer: layout.phase1_0_activation(label, task_id, layer)
        )
        partitions = {}
        for key in context.partition_keys:
            task_range = TaskRange.parse(key)
            partitions[key] = Partition(
                task_range, temperature=GREEDY_TEMPERATURE, samples=1,
                dataset_path=layout.phase1_0_dataset(task_range.key), activations=activations,
            )
        return _run(
            context, mbpp_problems, extended_tests, partitions,
            GenerationResources(language_model, study_design, data_store, sandbox, device_pool),
        )

    @dg.asset(
        group_name=GROUP_GENERATION, deps=[language_model_weights], op_tags=GPU_STEP_TAGS,
        partitions_def=temperature_by_task_range(design.temperatures, design.max_task_id, design.task_range_size),
        code_version=PHASE1_2_CODE_VERSION,
        # A backfill of Phase 1.2 is one run: the model loads once for every temperature and task range.
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def phase1_2_solutions(
        context: dg.AssetExecutionContext, mbpp_problems: pd.DataFrame, problem_splits: pd.DataFrame,
        extended_tests: pd.DataFrame, language_model: LanguageModel, study_design: StudyDesign,
        data_store: DataStore, sandbox: Sandbox, device_pool: DevicePool,
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        """Phase 1.2: the validation split again at each temperature of the run, several seeded samples per task."""
        layout = data_store.layout
        # The prompt residual is the same for every sample and temperature: stored once per task and layer.
        activations = SharedTaskActivations(layout.phase1_2_activation)
        partitions = {}
        for key in context.partition_keys:
            dims = dimension_keys(context.assets_def.partitions_def, key)
            task_range, temperature = TaskRange.parse(dims[TASK_RANGE_DIM]), float(dims[TEMPERATURE_DIM])
            partitions[str(key)] = Partition(
                task_range, temperature, samples=study_design.samples_per_temperature,
                dataset_path=layout.phase1_2_dataset(temperature, task_range.key), activations=activations,
            )
        validation = mbpp_problems.task_id.isin(split_task_ids(problem_splits, VALIDATION_SPLIT))
        return _run(
            context, mbpp_problems[validation], extended_tests, partitions,
            GenerationResources(language_model, study_design, data_store, sandbox, device_pool),
        )

    return [phase1_0_solutions, phase1_2_solutions]
