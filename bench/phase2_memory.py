"""Phase 2's memory on the embedded model: the process's resident set (RSS) while the ``phase2`` asset runs,
overall and once scoring has begun (after the general-text residuals, the only step that needs the model).

    .venv/bin/python bench/phase2_memory.py prepare --data /tmp/phase2-memory   # once: Phases 0-1.2, minutes
    .venv/bin/python bench/phase2_memory.py measure --data /tmp/phase2-memory   # Phase 2 alone, this process

``prepare`` materializes Phases 0 to 1.2 on 24 embedded problems (one task range, 64 new tokens) with embedded-size SAEs
(2,048 latents, k 32; trained briefly: their quality does not matter here) on the embedded profile's four SAE
layers. ``measure`` runs ``phase2`` in-process (300 general-text documents) while a thread samples VmRSS every
10 ms, and marks the first call of ``score_split``. It prints the process's peak RSS (``ru_maxrss``), the RSS
when scoring starts, the peak during scoring, and the RSS before Phase 2 started. ``measure`` uses only what
every version of the package has, so ``PYTHONPATH=<other checkout>`` compares versions on the same data.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path

from pva_dagster.study.runtime import apply_offline_defaults

apply_offline_defaults()

import dagster as dg  # noqa: E402

SOURCE_IDS = [*range(1, 13), *range(60, 72)]  # mostly right and mostly wrong embedded problems (test_pipeline's)
DESIGN = {"max_task_id": 24, "task_range_size": 25, "sae_layers": [6, 12, 18, 24], "temperatures": [0.3],
          "samples_per_temperature": 2}  # fmt: skip
SAE_TRAINING = {"d_sae": 2048, "k": 32, "corpus_tokens": 3000, "training_tokens": 6000, "corpus_files": 8}
GENERAL_DOCUMENTS = 300


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def base_profile(data: Path, **changes: object):
    from pva_dagster.profiles import load_profile
    from pva_dagster.resources import DataStore, DevicePool

    return load_profile("embedded").with_design(**DESIGN, **changes).with_resources(
        data_store=DataStore(root=str(data / "data")),
        device_pool=DevicePool(devices=["cpu"], lock_dir=str(data / "locks"), poll_seconds=0.2),
    )


def definitions(profile):
    from pva_dagster.definitions import build_definitions

    defs = build_definitions(profile, environ={})
    return [*defs.assets, *(defs.asset_checks or [])], defs.resources


def prepare(data: Path) -> None:
    from pva_dagster.resources import EmbeddedModel, LocalProblems
    from pva_dagster.study.problems.embedded import embedded_records

    data.mkdir(parents=True, exist_ok=True)
    by_id = {record["task_id"]: record for record in embedded_records()}
    problems = data / "problems.jsonl"
    problems.write_text("".join(json.dumps({**by_id[i], "task_id": n}) + "\n" for n, i in enumerate(SOURCE_IDS, 1)))
    profile = base_profile(data, max_new_tokens=64).with_resources(
        problem_source=LocalProblems(path=str(problems)), language_model=EmbeddedModel(batch_size=8)
    )
    assets, resources = definitions(profile)
    partitions = {name: assets_def.partitions_def for assets_def in assets for name in [assets_def.key.path[-1]]}
    runs = [
        (["mbpp_problems", "difficulty_mapping", "extended_tests", "problem_splits", "language_model_weights",
          "sae_weights"], None,
         {"ops": {"sae_weights": {"config": SAE_TRAINING}}}),
        *((["phase1_0_solutions"], key, None) for key in partitions["phase1_0_solutions"].get_partition_keys()),
        *((["phase1_2_solutions"], key, None) for key in partitions["phase1_2_solutions"].get_partition_keys()),
    ]
    for selection, partition, run_config in runs:
        started = time.perf_counter()
        result = dg.materialize(assets, selection=selection, partition_key=partition, resources=resources,
                                run_config=run_config)  # fmt: skip
        print(f"{selection} {partition or ''}: {result.success} in {time.perf_counter() - started:.0f} s")


def measure(data: Path) -> dict:
    import pva_dagster.assets.latents as phase2_module

    assets_list, resources = definitions(base_profile(data))
    marks: dict[str, float] = {}
    samples: list[tuple[float, float]] = []
    original = phase2_module.score_split

    def marked_score_split(*args, **kwargs):
        marks.setdefault("scoring", time.perf_counter())
        marks.setdefault("rss_at_scoring", rss_mib())
        return original(*args, **kwargs)

    phase2_module.score_split = marked_score_split
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), rss_mib()))
            time.sleep(0.01)

    before = rss_mib()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = dg.materialize(
        assets_list, selection=["phase2"], resources=resources,
        run_config={"ops": {"phase2": {"config": {"general_documents": GENERAL_DOCUMENTS}}}},
    )
    done.set()
    sampler.join()
    scoring = [rss for t, rss in samples if t >= marks["scoring"]]
    return {
        "success": result.success,
        "package": str(Path(phase2_module.__file__).parents[2]),
        "seconds": round(time.perf_counter() - started, 1),
        "rss_before_phase2_mib": round(before, 1),
        "peak_rss_process_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_sampled_mib": round(max(rss for _, rss in samples), 1),
        "rss_at_scoring_start_mib": round(marks["rss_at_scoring"], 1),
        "peak_rss_during_scoring_mib": round(max(scoring), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "measure"])
    parser.add_argument("--data", type=Path, required=True, help="work folder (data/ and problems.jsonl inside)")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.data)
    else:
        print(json.dumps(measure(args.data), indent=2))


if __name__ == "__main__":
    main()
