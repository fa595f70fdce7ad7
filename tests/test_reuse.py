"""An asset whose code version, inputs and settings are those of its latest materialization hands on its stored
value: real Dagster runs on one instance, the project's IO manager, a value counted each time it is computed."""


from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pva_dagster.assets.provenance import data_version
from pva_dagster.assets.reuse import INPUTS_FINGERPRINT, RECOMPUTE_TAG, inputs_fingerprint, stored_if_unchanged
from pva_dagster.resources import DataStore
from pva_dagster.resources.parquet_io import ParquetIOManager
from pva_dagster.study.outputs import PROBLEM_SPLITS, SEPARATION_SCORES

COMPUTED: list[int] = []


class Scale(dg.Config):
    factor: int = 2


class Upstream(dg.Config):
    value: int = 1


@dg.asset(name=PROBLEM_SPLITS)
def splits(config: Upstream) -> dg.Output[pd.DataFrame]:
    frame = pd.DataFrame({"task_id": [1, 2], "split": ["sae", "validation"], "value": [config.value] * 2})
    return dg.Output(frame, data_version=data_version(frame))


@dg.asset(name=SEPARATION_SCORES, ins={"splits": dg.AssetIn(PROBLEM_SPLITS)}, code_version="1")
def scores(context: dg.AssetExecutionContext, config: Scale, splits: pd.DataFrame, data_store: DataStore):
    made_from = inputs_fingerprint(context, config)
    if (unchanged := stored_if_unchanged(context, made_from, data_store.layout)) is not None:
        return unchanged
    COMPUTED.append(1)
    value = {"sae": splits.assign(value=splits.value * config.factor)}
    return dg.Output(value, data_version=data_version(value), metadata={INPUTS_FINGERPRINT: made_from})


@pytest.fixture
def run(tmp_path: Path):
    store = DataStore(root=str(tmp_path / "data"))
    resources = {"data_store": store, "io_manager": ParquetIOManager(store=store)}
    COMPUTED.clear()
    with dg.instance_for_test() as instance:
        def materialize(selection, upstream: int = 1, factor: int = 2, tags=None):
            config = {"ops": {PROBLEM_SPLITS: {"config": {"value": upstream}},
                              SEPARATION_SCORES: {"config": {"factor": factor}}}}
            result = dg.materialize(
                [splits, scores], selection=selection, resources=resources, instance=instance, tags=tags,
                run_config={"ops": {k: v for k, v in config["ops"].items() if k in selection}},
            )
            assert result.success
            return result, store.layout

        yield materialize


def _handed_on(result) -> bool:
    [materialization] = result.asset_materializations_for_node(SEPARATION_SCORES)
    return "handed on from run" in materialization.metadata


def test_nothing_changed_hands_on_the_stored_value_and_its_data_version(run):
    first, layout = run([PROBLEM_SPLITS, SEPARATION_SCORES])
    second, _ = run([SEPARATION_SCORES])
    assert len(COMPUTED) == 1 and _handed_on(second) and not _handed_on(first)
    [a], [b] = (r.asset_materializations_for_node(SEPARATION_SCORES) for r in (first, second))
    assert a.tags["dagster/data_version"] == b.tags["dagster/data_version"]
    assert pd.read_parquet(layout.phase2_table("sae", "separation_scores")).value.tolist() == [2, 2]
    # The upstream made again with the same value: its data version is unchanged, so nothing is recomputed.
    again, _ = run([PROBLEM_SPLITS, SEPARATION_SCORES])
    assert len(COMPUTED) == 1 and _handed_on(again)


@pytest.mark.parametrize("change", ["upstream value", "config", "files gone", "recompute tag"])
def test_a_change_or_a_missing_file_computes_again(run, change):
    _, layout = run([PROBLEM_SPLITS, SEPARATION_SCORES])
    if change == "upstream value":
        result, _ = run([PROBLEM_SPLITS, SEPARATION_SCORES], upstream=5)
        expected = [10, 10]
    elif change == "config":
        result, _ = run([SEPARATION_SCORES], factor=3)
        expected = [3, 3]
    elif change == "files gone":
        layout.phase2_table("sae", "separation_scores").unlink()
        result, _ = run([SEPARATION_SCORES])
        expected = [2, 2]
    else:
        result, _ = run([SEPARATION_SCORES], tags={RECOMPUTE_TAG: "true"})
        expected = [2, 2]
    assert len(COMPUTED) == 2 and not _handed_on(result)
    assert pd.read_parquet(layout.phase2_table("sae", "separation_scores")).value.tolist() == expected
