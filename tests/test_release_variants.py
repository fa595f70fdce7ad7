"""A release's other widths and L0 levels as SAE variants: resolved per layer through SAELens's own release table,
and loaded through ``SAE.from_pretrained`` from a hub cache holding stand-in files (a real SAELens load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pva_dagster.profiles import load_profile
from pva_dagster.rehearsal.standins import build_gemmascope_standins, width_of
from pva_dagster.resources import PretrainedSAEs, PretrainedVariant
from pva_dagster.study.analysis.release_variants import ReleaseVariant, release_ids
from pva_dagster.study.layout import DataLayout

ALL_LEVELS = "gemma-scope-2b-pt-res"
LEVELS_16K = "layer_{layer}/width_16k/average_l0_{l0}"


def _levels_at(layer: int) -> dict[str, float]:
    """The 16k SAEs of ``layer`` in SAELens's table and their expected L0, read without the module under test's
    matching."""
    prefix = f"layer_{layer}/width_16k/average_l0_"
    return {sae_id: l0 for sae_id, l0 in release_ids(ALL_LEVELS).items() if sae_id.startswith(prefix)}


@pytest.mark.parametrize("layer", [0, 6, 12, 25])
def test_lowest_and_highest_l0_are_the_tables_extremes_at_each_layer(layer):
    levels = _levels_at(layer)
    assert len(levels) >= 3  # GemmaScope publishes several L0 levels per layer at 16k
    lowest = ReleaseVariant(ALL_LEVELS, LEVELS_16K, "lowest").sae_id_at(layer)
    highest = ReleaseVariant(ALL_LEVELS, LEVELS_16K, "highest").sae_id_at(layer)
    assert levels[lowest] == min(levels.values()) and levels[highest] == max(levels.values())
    assert lowest != highest


def test_the_levels_differ_between_layers_so_one_template_names_other_ids():
    chosen = {ReleaseVariant(ALL_LEVELS, LEVELS_16K, "lowest").sae_id_at(layer) for layer in (0, 6, 12, 25)}
    assert len({sae_id.rsplit("_", 1)[1] for sae_id in chosen}) > 1


def test_a_fixed_id_resolves_and_a_missing_one_is_named():
    assert ReleaseVariant("gemma-scope-2b-pt-res-canonical", "layer_{layer}/width_65k/canonical").sae_id_at(
        3) == "layer_3/width_65k/canonical"  # fmt: skip
    with pytest.raises(ValueError, match="'layer_3/width_3k/canonical'"):
        ReleaseVariant("gemma-scope-2b-pt-res-canonical", "layer_{layer}/width_3k/canonical").sae_id_at(3)
    with pytest.raises(ValueError, match="no SAE matching 'layer_{layer}/width_3k/average_l0_{l0}' at layer 3"):
        ReleaseVariant(ALL_LEVELS, "layer_{layer}/width_3k/average_l0_{l0}", "lowest").sae_id_at(3)
    with pytest.raises(ValueError, match="no release 'gemma-scope-99b'"):
        ReleaseVariant("gemma-scope-99b", LEVELS_16K, "lowest").sae_id_at(3)


@pytest.mark.parametrize(
    ("sae_id", "l0", "message"),
    [
        ("width_16k/canonical", None, "must contain {layer}"),
        (LEVELS_16K, None, "needs l0"),
        ("layer_{layer}/width_16k/canonical", "lowest", "needs l0"),
        (LEVELS_16K, "middle", "must be one of"),
    ],
)
def test_a_variant_that_cannot_be_resolved_is_refused_when_made(sae_id, l0, message):
    with pytest.raises(ValueError, match=message):
        ReleaseVariant(ALL_LEVELS, sae_id, l0)


def test_the_gemma_profile_redoes_the_selection_on_the_sparsest_and_densest_l0():
    source = load_profile("gemma").resources["sae_source"]
    layout = DataLayout("unused")
    assert source.variant_seeds(layout) == (-1, -2)  # negative: never the study's seed
    labels = source.variant_labels(layout)
    assert "(lowest L0)" in labels[-1] and "(highest L0)" in labels[-2]
    log: list[str] = []
    source.prepare(None, None, [6, 12], layout, None, None, log.append)  # type: ignore[arg-type]
    assert len(log) == 2 and "layer_12/width_16k/average_l0_" in log[0]


def test_a_variant_the_release_lacks_fails_when_the_saes_are_prepared():
    source = PretrainedSAEs(
        release="gemma-scope-2b-pt-res-canonical", sae_id="layer_{layer}/width_16k/canonical",
        variants=[PretrainedVariant(release=ALL_LEVELS, sae_id="layer_{layer}/width_3k/average_l0_{l0}", l0="lowest")],
    )
    with pytest.raises(ValueError, match="width_3k"):
        source.prepare(None, None, [6], DataLayout("unused"), None, None, print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no variant -3"):
        source.load_variant(6, -3, DataLayout("unused"), "cpu")
    with pytest.raises(ValueError, match="must be one of"):
        PretrainedVariant(release=ALL_LEVELS, sae_id=LEVELS_16K, l0="median").resolved()


def test_width_of_reads_the_folder():
    assert width_of("layer_3/width_16k/average_l0_19") == 16384 and width_of("layer_3/width_1m/x") == 1 << 20
    assert width_of("layer_3/width_65k/canonical") == 65536 and width_of("layer_3/width_131k/x") == 131072
    with pytest.raises(ValueError, match="no width"):
        width_of("layer_3/average_l0_19")


LOAD = """
import json, sys
import numpy as np
from pva_dagster.profiles import load_profile
from pva_dagster.study.layout import DataLayout
source = load_profile("gemma").resources["sae_source"]
sae = source.load_variant(6, -1, DataLayout(sys.argv[1]), "cpu")
np.save(sys.argv[2], sae.W_dec.detach().numpy())
print(json.dumps({"class": type(sae).__name__, "hook": sae.cfg.metadata.hook_name, "d_sae": sae.cfg.d_sae}))
"""


def test_a_variant_loads_through_saelens_from_the_hub_cache(tmp_path):
    variant = load_profile("gemma").resources["sae_source"].variants[0].resolved()
    _, files = build_gemmascope_standins(tmp_path / "hf_home", [6], seed=0, variants=[variant])
    assert list(files) == [variant.sae_id_at(6)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PVA_"))}
    env |= {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "PVA_PROFILE": "gemma"}
    run = subprocess.run(
        [sys.executable, "-c", LOAD, str(tmp_path / "data"), str(tmp_path / "W_dec.npy")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {
        "class": "JumpReLUSAE", "hook": "blocks.6.hook_resid_post", "d_sae": 16384
    }
    with np.load(files[variant.sae_id_at(6)]) as npz:
        assert np.array_equal(np.load(tmp_path / "W_dec.npy"), npz["W_dec"])
