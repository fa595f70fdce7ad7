"""``pva-rehearse``: the ``study`` profile end to end, offline, on stand-ins for the hub's files (minutes, CPU).

Builds a Gemma-2 with google/gemma-2-2b's interface, GemmaScope-format SAEs and the MBPP ``datasets`` cache
(``rehearsal/standins.py``) in ``<workdir>/hf_home``, then materializes every asset, Phase 0 to the report,
through Definitions built from the ``study`` profile with only what a user would change for a small run: a
slice of the real MBPP, two SAE layers, one Phase 1.2 temperature with two samples, a short steering sweep,
32 new tokens, device ``cpu`` (``--device cuda:0`` on a GPU machine). The model is loaded as the profile says
(bfloat16), on the CPU too. Outputs go to ``<workdir>/data``; ``<workdir>/rehearsal.json`` summarises the runs.

Run it before the first GPU run: whatever fails here would fail there, after the downloads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pva_dagster.constants import DEVICES_ENV
from pva_dagster.study.layout import DATA_DIR_ENV, PROJECT_ROOT
from pva_dagster.study.runtime import OFFLINE_DEFAULTS

if TYPE_CHECKING:
    from pva_dagster.profiles import Profile

DEFAULT_MBPP = PROJECT_ROOT.parent / "shared" / "mbpp" / "mbpp.jsonl"
# MBPP's first test-split problems: one task range, both labels once the stand-in's program is planted.
TASK_IDS = list(range(11, 35))
SAE_LAYERS = [6, 18]
PROBLEM_SOURCES = ("mbpp", "mbppplus")  # the hub data sets the gemma profile can read (both stood in)
TEMPERATURE = 0.3
# Modules that read HF_HOME / the offline switches once, at import: they must see the stand-ins' cache.
_HUB_AWARE = ("huggingface_hub", "transformers", "datasets", "sae_lens", "pva_dagster.definitions")


def rehearsal_environment(workdir: Path, device: str = "cpu") -> dict[str, str]:
    """The settings of a rehearsal: the gemma profile, the stand-ins' cache, offline, one device, its own data."""
    return {
        DEVICES_ENV: device,
        DATA_DIR_ENV: str(workdir / "data"),
        "HF_HOME": str(workdir / "hf_home"),
        **OFFLINE_DEFAULTS,  # set, not defaulted: a rehearsal never reaches the hub
        "TOKENIZERS_PARALLELISM": "false",
    }


def small_run_profile(profile: Profile, workdir: Path, problems: str = "mbpp") -> Profile:
    """The gemma profile with what a user changes for a small run, and nothing else; ``problems="mbppplus"``
    reads EvalPlus's MBPP+ (its own extended tests) instead of MBPP."""
    from pva_dagster.resources import DevicePool, HubMBPPPlus

    if problems not in PROBLEM_SOURCES:
        raise ValueError(f"unknown problem source {problems!r}; expected one of {PROBLEM_SOURCES}")
    if problems == "mbppplus":
        profile = profile.with_resources(problem_source=HubMBPPPlus())

    from pva_dagster.rehearsal.small_runs import SMALL_RUN

    pool = profile.resources["device_pool"]
    return profile.with_design(
        max_new_tokens=32, max_task_id=max(TASK_IDS), sae_layers=SAE_LAYERS, temperatures=[TEMPERATURE], **SMALL_RUN
    ).with_resources(
        # Its own lock folder: a rehearsal neither waits for nor blocks other runs on this machine's CPU.
        device_pool=DevicePool(**{**pool.model_dump(), "lock_dir": str(workdir / "locks"), "poll_seconds": 0.5})
    )


def _partition_keys(defs: Any, asset: str) -> list[str]:
    return defs.get_assets_def(asset).partitions_def.get_partition_keys()


def run_rehearsal(
    workdir: Path, mbpp: Path, device: str = "cpu", log=print, problems: str = "mbpp"
) -> dict[str, Any]:
    """Build the stand-ins and materialize the whole study in ``workdir``; returns a summary (also saved)."""
    stale = [name for name in _HUB_AWARE if name in sys.modules]
    if stale:
        raise RuntimeError(f"run the rehearsal in a fresh process: {stale} were imported before HF_HOME was set")
    os.environ.update(rehearsal_environment(workdir, device))

    import dagster as dg

    from pva_dagster.definitions import build_definitions
    from pva_dagster.profiles import load_profile
    from pva_dagster.rehearsal.small_runs import PREPARE, materialize_in_process
    from pva_dagster.rehearsal.standins import build_study_standins

    started = time.perf_counter()
    profile = small_run_profile(load_profile("gemma"), workdir, problems)
    variants = [variant.resolved() for variant in profile.resources["sae_source"].variants]
    standins = build_study_standins(workdir / "hf_home", mbpp, TASK_IDS, SAE_LAYERS, sae_variants=variants)
    log(f"[rehearse] stand-ins built in {time.perf_counter() - started:.0f} s under {standins.hf_home}; "
        f"the model's program holds the solutions of tasks {standins.planted_task_ids}")
    defs = build_definitions(profile, environ={})
    steps: list[tuple[str, Any, Any, Any]] = [
        # Phase 2's general-text filter reads 100 documents instead of 2,000 (what a user shortens too).
        ("prepare", PREPARE, None, {"ops": {"general_text_frequency": {"config": {"general_documents": 100}}}}),
        *((f"phase1_0 {key}", "phase1_0_solutions", key, None)
          for key in _partition_keys(defs, "phase1_0_solutions")),
        *((f"phase1_2 {key}", "phase1_2_solutions", key, None)
          for key in _partition_keys(defs, "phase1_2_solutions")),
        ("analysis", "phase2*", None, None),
    ]
    summary: dict[str, Any] = {
        "workdir": str(workdir), "hf_home": str(standins.hf_home), "task_ids": standins.task_ids,
        "planted_task_ids": standins.planted_task_ids,
        "sae_files": {str(k): str(v) for k, v in standins.sae_files.items()},
        "variant_files": {sae_id: str(path) for sae_id, path in standins.variant_files.items()},
        "sae_layers": SAE_LAYERS, "problems": problems, "steps": {},
    }
    instance = dg.DagsterInstance.ephemeral()  # one run history: Phase 2 reads the Phase 1 partitions it records
    for name, selection, partition, run_config in steps:
        step_started = time.perf_counter()
        log(f"[rehearse] {name} ...")
        result = materialize_in_process(defs, selection, partition, run_config, instance, raise_on_error=False)
        summary["steps"][name] = {"success": result.success, "seconds": round(time.perf_counter() - step_started, 1)}
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            summary["steps"][name]["error"] = str(failure.step_failure_data.error) if failure else "run failed"
            log(f"[rehearse] {name} FAILED: {summary['steps'][name]['error']}")
            break
    summary["success"] = (
        all(step["success"] for step in summary["steps"].values()) and len(summary["steps"]) == len(steps)
    )
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (workdir / "rehearsal.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pva-rehearse", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to build and run (default: a new temp folder)"
    )
    parser.add_argument("--mbpp", type=Path, default=DEFAULT_MBPP, help=f"MBPP .jsonl (default {DEFAULT_MBPP})")
    parser.add_argument("--device", default="cpu", help="the one device of the pool: cpu (default) or cuda:0")
    parser.add_argument(
        "--problems", choices=PROBLEM_SOURCES, default="mbpp",
        help="the study's problem source: MBPP (default) or MBPP+ (its stand-in carries MBPP+'s own tests)",
    )
    args = parser.parse_args(argv)
    if not args.mbpp.is_file():
        print(f"--mbpp {args.mbpp}: no such file (the rehearsal runs on a slice of the real MBPP)", file=sys.stderr)
        return 2
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="pva-rehearsal-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    summary = run_rehearsal(workdir, args.mbpp, args.device, problems=args.problems)
    verdict = "passed" if summary["success"] else "FAILED"
    print(f"[rehearse] {verdict} in {summary['seconds']:.0f} s; outputs under {workdir / 'data'}, "
          f"report {workdir / 'data' / 'phase3' / 'report.md'}")
    return 0 if summary["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
