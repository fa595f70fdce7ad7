"""Names shared by the Dagster layer: asset groups, run tags, environment settings."""

from __future__ import annotations

# Asset groups, one per stage of the study, as they appear in the web UI.
GROUP_PROBLEMS = "phase0_problems"
GROUP_MODELS = "models"
GROUP_GENERATION = "phase1_generation"
GROUP_SEPARATION = "phase2_separation"
GROUP_VALIDATION = "phase3_validation"

# A run tagged gpu=<index> runs on that device of the pool; dagster.yaml limits each value to one run.
GPU_TAG = "gpu"

# One setting picks the run profile (see pva_dagster/profiles.py).
PROFILE_ENV = "PVA_PROFILE"
DEFAULT_PROFILE = "embedded"
# The problem set, replacing the profile's: embedded, mbpp, mbppplus, humaneval or a path to an MBPP-format .jsonl
# (resources/problem_source.py, problem_source_named).
PROBLEMS_ENV = "PVA_PROBLEMS"
# The devices of the gemma profile's pool, e.g. "cuda:0,cuda:1,cuda:2" (the data folder's setting,
# PVA_DATA_DIR, is study.layout.DATA_DIR_ENV).
DEVICES_ENV = "PVA_DEVICES"
# The language model's dtype, overriding the profile's ("auto" in the embedded profile, "bfloat16" in the study's):
# float32, float16, bfloat16 or auto (resources/language_model.py).
MODEL_DTYPE_ENV = "PVA_MODEL_DTYPE"
# Run the steps on a Dask cluster: a scheduler's address, or a file with the Dask executor's config (cluster.py).
# A Dask worker's one device is its own PVA_DEVICES (resources/devices.py, WorkerDevice).
DASK_SCHEDULER_ENV = "PVA_DASK_SCHEDULER"
DASK_CONFIG_ENV = "PVA_DASK_CONFIG"

# Executors that spread runs over machines read these tags: dagster-dask asks the Dask scheduler for one unit of
# the workers' GPU resource (`dask worker --resources GPU=1`, so one GPU step per worker at a time); dagster-k8s
# asks the scheduler for one GPU per step; dagster-celery routes the step to the queue that GPU workers listen on.
GPU_STEP_TAGS = {
    "dagster-dask/resource_requirements": {"GPU": 1},
    "dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}},
    "dagster-celery/queue": "gpu",
}
