"""The study's findings as one markdown page, from the Phase 2 and Phase 3 output files."""

from __future__ import annotations

import pandas as pd

from pva_dagster.study import storage
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.plots import markdown_table


def render_report(layout: DataLayout) -> str:
    phase3 = layout.phase3_dir()
    sections = ["# Does the model know when its code is correct?"]
    for split in ("sae", "validation"):
        top_file = layout.phase2_dir(split) / "top_latents.json"
        if top_file.exists():
            top = storage.read_json(top_file)
            sections.append(f"## Phase 2: top latents on the {split} split")
            sections.append(f"Samples per group: {top['counts']}")
            sections.append(markdown_table(pd.DataFrame(top["top"]).head(10)))
    tables = [
        ("Phase 3: classification on the validation split (thresholds from hyperparams)", "classification.parquet"),
        ("Phase 3: by temperature and difficulty", "classification_by_group.parquet"),
        ("Phase 3: steering, target vs random control (one-sided binomial)", "steering_tests.parquet"),
        ("Phase 3: steering effects per unit", "steering_effects.parquet"),
    ]
    for title, name in tables:
        if (phase3 / name).exists():
            sections += [f"## {title}", markdown_table(pd.read_parquet(phase3 / name))]
    return "\n\n".join(sections) + "\n"
