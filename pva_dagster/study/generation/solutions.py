"""Generate a solution per (task, sample), label it in the sandbox, and store its prompt activations.

This is the body of Phases 1.0 and 1.2 (and of each steering unit in Phase 3, without activations): they
differ only in the tasks, the temperature, the number of samples and where files go. What they share, the
loaded model and how it writes and is judged, is one :class:`Generator`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pva_dagster.study.domain import label_of
from pva_dagster.study.generation.activation_store import ActivationStore, residual_source
from pva_dagster.study.generation.batched import Generation, generate, longest_prompt_tokens
from pva_dagster.study.generation.decoding import SAMPLER
from pva_dagster.study.generation.model_loading import model_fingerprint, stop_token_ids
from pva_dagster.study.generation.prompts import extract_code
from pva_dagster.study.generation.residual import RESID_POST, HookPoint
from pva_dagster.study.generation.settings import GenerationSettings
from pva_dagster.study.generation.weights_identity import weights_identity
from pva_dagster.study.problems.labels import BASE_LABEL, EXTENDED_LABEL, LABEL_COLUMNS, judge_both
from pva_dagster.study.records import RecordTable, fingerprint
from pva_dagster.study.sandbox.execution import SandboxJob, SandboxLimits
from pva_dagster.study.sandbox.version import judge_version

RECORD_KEY = ("task_id", "sample")
RELABELLED = "relabelled"  # the label was judged again from the stored code, the model not called
PASSED_BEFORE_RELABEL = "passed_before_relabel"  # ``passed`` before that (None where never judged again)


@dataclass(frozen=True)
class Generator:
    """A loaded model and how it writes and is judged: the same for every partition and steering unit of a run."""

    model: Any
    tokenizer: Any
    weights: str  # what from_pretrained loaded (a folder or a hub id); fingerprints name its content
    writing: GenerationSettings  # the design's, greedy; a run's temperature, samples and batch size replace theirs
    limits: SandboxLimits
    max_workers: int | None = None  # sandbox runs at once (None: one per CPU)
    label_rule: str = EXTENDED_LABEL  # which asserts decide ``passed`` (both labels are recorded)
    # tokens per row (longest prompt + new tokens) -> rows per batch on this machine; None keeps writing's
    batch_size_for: Callable[[int], int] | None = None

    def identity(self) -> dict[str, Any]:
        """The model's identity in every fingerprint and in metadata: the weights' content, architecture, sizes,
        dtype (not where the weights lie: a moved data folder resumes)."""
        return {"weights": weights_identity(self.weights, self.model), **model_fingerprint(self.model)}

    def judge(self) -> dict[str, Any]:
        """What every label depends on besides the solution and its tests: how the sandbox runs it, which tests
        decide, and the judge's version."""
        return {"limits": self.limits, "label_rule": self.label_rule, "judge": judge_version()}

    def settings(self, temperature: float, samples: int, prompts: Sequence[str]) -> GenerationSettings:
        """The design's settings at ``temperature`` and ``samples``, in batches sized for ``prompts``."""
        batch_size = self.writing.batch_size
        if self.batch_size_for is not None:
            longest = longest_prompt_tokens(self.tokenizer, list(prompts)) or self.writing.max_prompt_tokens
            batch_size = self.batch_size_for(min(longest, self.writing.max_prompt_tokens) + self.writing.max_new_tokens)
        return replace(self.writing, temperature=temperature, num_samples=samples, batch_size=batch_size)


@dataclass(frozen=True)
class Task:
    task_id: int
    prompt: str
    test_list: tuple[str, ...]  # the base asserts (MBPP's, shown in the prompt)
    setup_code: str = ""
    extended_tests: tuple[str, ...] = ()  # never shown to the model (problems/extended_tests.py)


def tasks_from_problems(
    problems: pd.DataFrame, prompts: Mapping[int, str], extended: pd.DataFrame | None = None
) -> list[Task]:
    """One task per problem (in the frame's order): its prompt from ``prompts[task_id]``, its asserts and setup,
    and its extended tests from ``extended`` (the Phase 0 ``extended_tests`` table; None: none)."""
    tests = {} if extended is None else dict(zip(extended.task_id, extended.tests, strict=True))
    return [
        Task(
            task_id=int(row.task_id), prompt=prompts[int(row.task_id)], test_list=tuple(row.test_list),
            setup_code=row.test_setup_code or "", extended_tests=tuple(tests.get(row.task_id, ())),
        )
        for row in problems.itertuples()
    ]


def task_fingerprint(task: Task, producer: Mapping[str, Any]) -> str:
    """What a task's generated records depend on: its prompt and what ran it (model, settings, seed, ...)."""
    return fingerprint(task.task_id, task.prompt, producer)


def label_fingerprint(task: Task, judge: Mapping[str, Any]) -> str:
    """What a record's label depends on: the task's asserts, setup and extended tests, and the judge
    (:meth:`Generator.judge`). A change here judges the stored code again; it does not generate anew."""
    return fingerprint(task.task_id, list(task.test_list), task.setup_code, list(task.extended_tests), judge)


def sample_seed(seed: int, temperature: float, task_id: int) -> int:
    """A task's sampling seed: fixed by (study seed, temperature, task) so a resumed run redraws the same."""
    return (seed * 1_000_003 + round(temperature * 1000) * 10_007 + task_id) % (2**31 - 1)


def judged(tasks: Sequence[Task], codes: Sequence[str], generator: Generator) -> list[dict[str, Any]]:
    """The label columns of each code run against its task's base asserts and, where it passes, its extended
    ones: both labels, and ``passed`` by the generator's label rule."""
    jobs = [SandboxJob(code, task.test_list, task.setup_code) for code, task in zip(codes, tasks, strict=True)]
    verdicts = judge_both(jobs, [task.extended_tests for task in tasks], generator.limits, generator.max_workers)
    labels = []
    for verdict in verdicts:
        result = verdict.label(generator.label_rule)
        labels.append({
            "passed": result.passed, "label": label_of(result.passed),
            LABEL_COLUMNS[BASE_LABEL]: verdict.passed_base, LABEL_COLUMNS[EXTENDED_LABEL]: verdict.passed_extended,
            "outcome": result.outcome.value, "error_type": result.error_type, "error_message": result.message,
            "sandbox_seconds": verdict.base.duration_s + (verdict.extended.duration_s if verdict.extended else 0),
        })
    return labels


def label_generations(
    tasks: Sequence[Task], generations: Sequence[Generation], generator: Generator
) -> list[dict[str, Any]]:
    """One record per generation: its task, prompt, completion and code, and its labels (:func:`judged`)."""
    codes = [extract_code(g.completion) for g in generations]
    owners = [tasks[g.prompt_index] for g in generations]
    return [
        {
            "task_id": task.task_id, "sample": generation.sample, "prompt": task.prompt,
            "completion": generation.completion, "generated_code": code, **label,
            "n_prompt_tokens": generation.n_prompt_tokens, "n_new_tokens": generation.n_new_tokens,
            "generation_seconds": generation.seconds, RELABELLED: False, PASSED_BEFORE_RELABEL: None,
        }
        for generation, code, task, label in zip(
            generations, codes, owners, judged(owners, codes, generator), strict=True
        )
    ]


def relabel(table: RecordTable, tasks: Sequence[Task], generator: Generator) -> tuple[int, int]:
    """Judge the stored code of ``table.stale_labels`` again (the tests or the judge changed since they were
    labelled) and add them back: the model is not called. Returns (records judged again, labels changed)."""
    rows = table.stale_labels
    if not rows:
        return 0, 0
    by_id = {task.task_id: task for task in tasks}
    owners = [by_id[int(row["task_id"])] for row in rows]
    labels = judged(owners, [str(row["generated_code"]) for row in rows], generator)
    table.add({**row, **label, RELABELLED: True, PASSED_BEFORE_RELABEL: bool(row["passed"])}
              for row, label in zip(rows, labels, strict=True))  # fmt: skip
    table.stale_labels = []
    table.flush()
    return len(rows), sum(bool(row["passed"]) != label["passed"] for row, label in zip(rows, labels, strict=True))


@dataclass(frozen=True)
class SolutionGroup:
    """Tasks whose records go to one resumable file, generated with one steering vector (or none)."""

    records_path: Path
    tasks: Sequence[Task]
    producer: Mapping[str, Any] = field(default_factory=dict)  # what else this group's records depend on
    extra_columns: Mapping[str, Any] = field(default_factory=dict)
    # (layer, torch.Tensor[d_model]) added at that block's residual, at the hook point of the run_groups call
    steering: tuple[int, Any] | None = None


@dataclass(frozen=True)
class GenerationRun:
    """How one call generates: its settings and seed, the residuals it stores, the steering point, its log."""

    settings: GenerationSettings
    seed: int
    layers: Sequence[int] = ()  # residuals stored at these blocks (with ``activations``)
    activations: ActivationStore | None = None  # where they go (None: none stored)
    # Where each row's steering vector is added (TransformerLens's ``blocks.L.hook_{point}``), one for the call
    steering_point: HookPoint = RESID_POST
    log: Callable[[str], None] = print


def run_solutions(group: SolutionGroup, generator: Generator, run: GenerationRun) -> pd.DataFrame:
    """Resumably generate ``run.settings.num_samples`` solutions per task of ``group``, label them, persist
    after each batch.

    Records are kept in ``group.records_path`` (rewritten atomically after each batch). Tasks whose samples are
    all there already, made from the same task by the same producer (the generator's model, the settings, the
    seed, and ``group.producer``: anything else the caller's records depend on), are skipped, so a re-run after
    a crash ends with exactly one record per (task, sample); a task or producer that changed is generated again,
    a task no longer asked for is dropped from the file, and a record whose tests or judge changed is judged
    again from its stored code. ``run.activations`` stores each record's prompt residuals; its layout enters the
    records' fingerprint, and the model's identity the fingerprint of the residual files.
    """
    return run_groups([group], generator, run)[0]


def run_groups(groups: Sequence[SolutionGroup], generator: Generator, run: GenerationRun) -> list[pd.DataFrame]:
    """:func:`run_solutions` for several groups at once, their rows sharing batches; one frame per group.

    A task's rows of every group (the same problem steered several ways) run in one batch, next to each
    other, so they share its padding; each row carries its group's steering vector (zero for a group without),
    added at ``run.steering_point``. The point is not in the records' fingerprint here: groups whose records
    depend on it name it in their ``producer`` (:func:`pva_dagster.study.steering.sweep.run_units`).
    """
    opened = [_open(group, generator, run) for group in groups]
    tables = [table for table, _ in opened]
    rows = _rows([left for _, left in opened])
    if rows:
        _generate_rows(rows, groups, tables, generator, run)
    return [table.frame() for table in tables]


def _open(group: SolutionGroup, generator: Generator, run: GenerationRun) -> tuple[RecordTable, list[Task]]:
    """The group's record table, resumed (stale labels judged again, residual files found), and its tasks left."""
    settings, activations, log, samples = run.settings, run.activations, run.log, range(run.settings.num_samples)
    # The batch size is left out: it may follow free memory, and no output depends on it (decoding).
    producer = {
        "model": generator.identity(), **group.producer,
        "settings": {**settings.describe(), "batch_size": None}, "seed": run.seed,
        **(activations.producer() if activations else {}),
        # Sampled records depend on the sampling scheme; greedy ones do not.
        **({"sampler": SAMPLER} if settings.temperature > 0 else {}),
    }
    expected = {(t.task_id, s): task_fingerprint(t, producer) for t in group.tasks for s in samples}
    judge = generator.judge()
    labels = {(t.task_id, s): label_fingerprint(t, judge) for t in group.tasks for s in samples}
    table = RecordTable(group.records_path, RECORD_KEY, expected, labels)
    judged_again, changed = relabel(table, group.tasks, generator)
    if judged_again:
        log(f"{judged_again} stored records of {group.records_path.name} judged again from their code (the tests "
            f"or the judge changed); {changed} labels changed")
    moved = table.revise(activations.relocated) if activations else 0
    if moved:
        log(f"{moved} stored records of {group.records_path.name} pointed at their residual files here")
        table.flush()
    left = [t for t in group.tasks if not all((t.task_id, s) in table for s in samples)]
    log(
        f"{len(group.tasks) - len(left)} of {len(group.tasks)} tasks already done in "
        f"{group.records_path.name}; {len(left)} to go"
        + (f"; {table.dropped} stored records made from other inputs dropped" if table.dropped else "")
    )
    if table.dropped and not left:
        table.flush()
    return table, left


def _rows(todo: Sequence[Sequence[Task]]) -> list[tuple[int, Task]]:
    """(group, task) rows, the rows of one task next to each other, tasks in the order they first appear."""
    order = {t.task_id: i for i, t in reversed(list(enumerate(t for tasks in todo for t in tasks)))}
    rows = [(g, t) for g, tasks in enumerate(todo) for t in tasks]
    return sorted(rows, key=lambda row: (order[row[1].task_id], row[0]))


def _row_vectors(rows: Sequence[tuple[int, Task]], groups: Sequence[SolutionGroup]) -> dict[int, Any] | None:
    """Per layer, ``[rows, d_model]``: each row's group vector at its layer, zero elsewhere (None: no steering)."""
    steered = {g.steering[0]: g.steering[1] for g in groups if g.steering is not None}
    if not steered:
        return None
    vectors = {
        layer: torch.zeros(len(rows), v.shape[-1], dtype=v.dtype, device=v.device) for layer, v in steered.items()
    }
    for row, (g, _task) in enumerate(rows):
        steering = groups[g].steering
        if steering is not None:
            vectors[steering[0]][row] = steering[1]
    return vectors


def _generate_rows(
    rows: Sequence[tuple[int, Task]], groups: Sequence[SolutionGroup], tables: Sequence[RecordTable],
    generator: Generator, run: GenerationRun,
) -> None:
    settings, seed, layers, activations, log = run.settings, run.seed, list(run.layers), run.activations, run.log
    model, identity = generator.model, generator.identity()
    tasks = [task for _, task in rows]
    # The residuals depend on the model (weights, sizes), not on the sampling.
    dtype = str(next(model.parameters()).dtype)
    sources = {
        t.task_id: residual_source(t.prompt, identity, settings.max_prompt_tokens, dtype) for t in tasks
    } if activations else {}
    seeds = [sample_seed(seed, settings.temperature, t.task_id) for t in tasks]
    blocks = [t.task_id for t in tasks]
    started, done, new_tokens = time.perf_counter(), 0, 0
    batches = generate(
        model, generator.tokenizer, [t.prompt for t in tasks], layers, settings,
        stop_token_ids(model, generator.tokenizer), seeds=seeds, row_vectors=_row_vectors(rows, groups),
        blocks=blocks, steering_point=run.steering_point,
    )
    for batch in batches:
        records = label_generations(tasks, batch, generator)
        touched = set()
        for record, generation in zip(records, batch, strict=True):
            g = rows[generation.prompt_index][0]
            record.update(groups[g].extra_columns)
            record["layers"] = layers
            record["activation_files"] = (
                activations.save(record, generation.residuals, layers, sources[record["task_id"]])
                if activations
                else []
            )
            tables[g].add([record])
            touched.add(g)
        for g in sorted(touched):
            tables[g].flush()
        done += len({g.prompt_index for g in batch})
        new_tokens += sum(g.n_new_tokens for g in batch)
        elapsed = time.perf_counter() - started
        passed = sum(r["passed"] for r in records)
        log(
            f"row {done}/{len(rows)}: batch of {len(batch)} labelled ({passed} correct), "
            f"{new_tokens / elapsed:.1f} new tokens/s, {sum(len(t) for t in tables)} records saved, "
            f"{_eta(elapsed, done, len(rows))}"
        )


def _eta(elapsed: float, done: int, total: int) -> str:
    """Time left in the partition at the mean pace so far; rough, as batches differ in prompt length."""
    left = elapsed / done * (total - done)
    return f"ETA {int(left // 60)} min {int(left % 60):02d} s" if done < total else "partition done"


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts and pass rate of a Phase 1 record table, for metadata and the ``*_metadata.json`` files."""
    if frame.empty:
        return {"records": 0, "tasks": 0, "correct": 0, "incorrect": 0, "pass_rate": float("nan"), "label_flips": 0}
    outcomes = frame.outcome.value_counts().to_dict()
    return {
        "records": len(frame),
        "tasks": int(frame.task_id.nunique()),
        "correct": int(frame.passed.sum()),
        "incorrect": int((~frame.passed).sum()),
        "pass_rate": float(frame.passed.mean()),
        # Solutions that pass the base asserts but fail the extended tests (the labels the extended tests flip).
        "label_flips": int((frame.passed_base & ~frame.passed_extended).sum()),
        "outcomes": {str(k): int(v) for k, v in outcomes.items()},
        "new_tokens": int(frame.n_new_tokens.sum()),
        "generation_seconds": float(frame.generation_seconds.sum()),
        **relabel_counts(frame),
    }


def relabel_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many records were judged again from their stored code, and how many of those changed label."""
    if RELABELLED not in frame.columns:
        return {"judged again": 0, "labels changed when judged again": 0}
    again = frame[frame[RELABELLED].astype(bool)]
    return {"judged again": len(again),
            "labels changed when judged again": int((again.passed != again[PASSED_BEFORE_RELABEL]).sum())}
