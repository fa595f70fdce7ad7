"""Running past one machine: dagster-dask's executor over a Dask cluster, chosen by one environment setting.

``PVA_DASK_SCHEDULER=tcp://host:8786`` runs every job (and ``dagster asset materialize``) on an existing Dask
scheduler; ``PVA_DASK_CONFIG=cluster.yaml`` takes the executor's whole config from a file instead, e.g. a SLURM or
PBS cluster that dagster-dask starts through dask-jobqueue. With either, each step claims the device of the worker
it lands on (``WorkerDevice``) instead of a lock on the orchestrator's disk; without them nothing changes (the
in-process / multiprocess executor with the lock-file ``DevicePool``).

Why not ``dagster_dask.dask_executor`` as it is: its ``execute`` lays out the plan's steps once, before any step
has run, and never resolves dynamic outputs: a fan-out's mapped steps are silently left out and the run still
reports success (dagster-dask 0.29.27). :class:`DynamicDaskExecutor` keeps dagster-dask's config, its
``dagster-dask/resource_requirements`` tag and its worker-side step function, and walks the plan with Dagster's
``ActiveExecution`` (as the multiprocess executor does), so mapped steps are submitted once their upstream ran.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import dask.distributed
import yaml
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements, query_on_dask_worker
from dagster_dask.executor import dask_executor as upstream_dask_executor

from pva_dagster.constants import DASK_CONFIG_ENV, DASK_SCHEDULER_ENV

DEVICE_RESOURCE = "device_pool"

# The cluster classes dagster-dask's config names (dask-jobqueue for the batch schedulers), by import path.
CLUSTER_CLASSES = {
    "local": "dask.distributed.LocalCluster",
    "ssh": "dask.distributed.SSHCluster",
    "yarn": "dask_yarn.YarnCluster",
    "pbs": "dask_jobqueue.PBSCluster",
    "moab": "dask_jobqueue.MoabCluster",
    "sge": "dask_jobqueue.SGECluster",
    "lsf": "dask_jobqueue.LSFCluster",
    "slurm": "dask_jobqueue.SLURMCluster",
    "oar": "dask_jobqueue.OARCluster",
    "kube": "dask_kubernetes.KubeCluster",
}
POLL_SECONDS = 0.5


class DynamicDaskExecutor(DaskExecutor):
    """dagster-dask's executor, with steps submitted as Dagster's ``ActiveExecution`` makes them ready."""

    def _cluster(self, job_name: str) -> Any:
        """What ``dask.distributed.Client`` connects to: the scheduler's address, or a cluster started here."""
        if self.cluster_type == "existing":
            return self.cluster_configuration["address"]
        module, _, name = CLUSTER_CLASSES[self.cluster_type].rpartition(".")
        return getattr(importlib.import_module(module), name)(**self.build_dict(job_name))

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError("Dask execution needs a persistent Dagster instance (DAGSTER_HOME)")
        instance_ref = plan_context.instance.get_ref()
        with (
            dask.distributed.Client(self._cluster(plan_context.job_name)) as client,
            ActiveExecution(execution_plan, retry_mode=self.retries) as active,
        ):
            yield DagsterEvent.engine_event(
                plan_context, f"Submitting steps to the Dask scheduler {client.scheduler.address}", EngineEventData()
            )
            running: dict[str, dask.distributed.Future] = {}
            while not active.is_complete or running:
                if active.check_for_interrupts():
                    active.mark_interrupted()
                    for future in running.values():
                        future.cancel()
                    raise DagsterExecutionInterruptedError()
                for step in active.get_steps_to_execute():
                    running[step.key] = client.submit(
                        query_on_dask_worker, [], plan_context.reconstructable_job, plan_context.dagster_run,
                        plan_context.run_config, [step.key], instance_ref, active.get_known_state(),
                        key=f"{plan_context.job_name}.{plan_context.run_id}.{step.key}", pure=False,
                        resources=get_dask_resource_requirements(step.tags),
                    )
                if running:
                    try:
                        dask.distributed.wait(
                            list(running.values()), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED"
                        )
                    except dask.distributed.TimeoutError:
                        pass  # nothing finished yet: look for interrupts and newly ready steps again
                for key in [key for key, future in running.items() if future.done()]:
                    yield from self._finish(plan_context, active, key, running.pop(key))
                yield from active.plan_events_iterator(plan_context)

    def _finish(
        self, plan_context: PlanOrchestrationContext, active: ActiveExecution, key: str, future: Any
    ) -> Iterator[DagsterEvent]:
        """The step's events as its worker recorded them; a step Dask lost (e.g. KilledWorker) fails here."""
        try:
            events = future.result()
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            step_context = plan_context.for_step(active.get_step_by_key(key))
            events = [self.log_failure_or_retry_event_after_error(step_context, error, active.get_known_state())]
        for event in events:
            yield event
            active.handle_event(event)
        active.verify_complete(plan_context, key)


@dg.executor(
    name="dask",
    requirements=dg.multiple_process_executor_requirements(),
    config_schema=upstream_dask_executor.config_schema.as_field(),
)
def dask_executor(init_context: dg.InitExecutorContext) -> DynamicDaskExecutor:
    """dagster-dask's ``dask`` executor (same config: ``cluster: {existing: {address: ...}}``, ``slurm``, ...)
    that also runs dynamic fan-outs such as the steering sweep's units."""
    cluster: Mapping[str, Any] = init_context.executor_config["cluster"]  # type: ignore[assignment]
    ((cluster_type, cluster_configuration),) = cluster.items()
    return DynamicDaskExecutor(cluster_type, cluster_configuration)


def dask_config_from_environment(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The Dask executor's config that the environment asks for, or None to keep the default executor."""
    address, config_file = environ.get(DASK_SCHEDULER_ENV), environ.get(DASK_CONFIG_ENV)
    if address and config_file:
        raise ValueError(f"set {DASK_SCHEDULER_ENV} or {DASK_CONFIG_ENV}, not both")
    if address:
        return {"cluster": {"existing": {"address": address}}}
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"{DASK_CONFIG_ENV}={config_file}: no such file")
        config = yaml.safe_load(path.read_text())
        if not isinstance(config, dict) or set(config) != {"cluster"}:
            raise ValueError(f"{config_file} must hold the Dask executor's config, one key 'cluster:' (README)")
        return config
    return None


def for_cluster(
    resources: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> tuple[dg.ExecutorDefinition | None, dict[str, Any]]:
    """The executor and resources for the Definitions: Dask and the worker's device when the environment asks."""
    from pva_dagster.resources import WorkerDevice  # here: the executor alone stays light for Dask workers

    config = dask_config_from_environment(environ)
    if config is None:
        return None, dict(resources)
    return dask_executor.configured(config), {**resources, DEVICE_RESOURCE: WorkerDevice()}
