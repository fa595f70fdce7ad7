"""Task-range partitions and the data layout's names."""

from __future__ import annotations

import pytest

from pva_dagster.partitions import task_range_partitions, temperature_by_task_range
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.problems.task_ranges import TaskRange, task_ranges


def test_task_ranges_cover_every_task_once():
    ranges = task_ranges(max_task_id=974, range_size=50)
    assert ranges[0].key == "0000-0049" and ranges[-1].key == "0950-0999"
    covered = [t for t in range(975) if sum(r.first <= t <= r.last for r in ranges) == 1]
    assert covered == list(range(975))


def test_task_range_key_round_trips_and_rejects_nonsense():
    assert TaskRange.parse("0050-0099") == TaskRange(50, 99)
    with pytest.raises(ValueError, match="0000-0049"):
        TaskRange.parse("fifty")
    with pytest.raises(ValueError, match="starts after it ends"):
        TaskRange.parse("0010-0001")


def test_phase1_2_partitions_are_temperature_by_range():
    multi = temperature_by_task_range([0.3, 0.6, 0.9, 1.2], max_task_id=99, range_size=50)
    keys = multi.get_partition_keys()
    assert len(keys) == 8
    assert {k.keys_by_dimension["temperature"] for k in keys} == {"0.3", "0.6", "0.9", "1.2"}
    assert len(task_range_partitions(99, 50).get_partition_keys()) == 2


def test_layout_names_follow_the_seed_study(tmp_path):
    layout = DataLayout(tmp_path)
    assert layout.phase1_0_activation("correct", 12, 3) == tmp_path / "phase1_0/activations/correct/12_layer_3.npz"
    # Phase 1.2: one file per task and layer, shared by every sample and temperature.
    assert layout.phase1_2_activation(5, 7) == tmp_path / "phase1_2/activations/task_0005_layer_7.npz"
    assert layout.metadata_for(layout.phase1_0_dataset("0000-0049")).name == "dataset_0000-0049_metadata.json"
    with pytest.raises(ValueError, match="unknown label"):
        layout.phase1_0_activation("maybe", 1, 1)
