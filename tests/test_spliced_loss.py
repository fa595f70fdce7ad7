"""The next-token loss with an SAE spliced into the residual stream, on the embedded model's real forward pass:
an SAE that reconstructs exactly recovers all the loss; one that reconstructs nothing useful recovers little;
the splice leaves the model as it was."""

from __future__ import annotations

import pytest
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

from pva_dagster.study.analysis.spliced_loss import SPLICED_LOSS_COLUMNS, spliced_loss_table
from pva_dagster.study.generation.model_loading import load_causal_lm

LAYER = 6
PROMPTS = (
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n",
    "Write a function to find the largest element of a list.\n",
    "import math\n\ndef circle_area(r):\n    return math.pi * r ** 2\n",
)


def _standard_sae(w_enc: torch.Tensor, w_dec: torch.Tensor) -> StandardSAE:
    d_in, d_sae = w_enc.shape
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu"))
    with torch.no_grad():
        sae.W_enc.copy_(w_enc)
        sae.W_dec.copy_(w_dec)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.fixture(scope="module")
def model_and_tokenizer(embedded_model_dir):
    return load_causal_lm(str(embedded_model_dir), "float32", "cpu")


def test_an_exact_reconstruction_recovers_all_the_loss_and_a_wrong_one_little(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    d = model.config.hidden_size
    eye = torch.eye(d)
    # ReLU(x) - ReLU(-x) = x: latents [x+, x-] decoded by [I; -I] give back every residual exactly.
    exact = _standard_sae(torch.cat([eye, -eye], dim=1), torch.cat([eye, -eye], dim=0))
    # The same latents decoded along random directions: the residual's norm survives, its content does not.
    scrambled = _standard_sae(torch.cat([eye, -eye], dim=1), torch.randn(2 * d, d, generator=torch.Generator()
                                                                           .manual_seed(0)) / d**0.5)  # fmt: skip
    (exact_row,) = spliced_loss_table(model, tokenizer, {LAYER: exact}, PROMPTS, max_prompt_tokens=256)
    (wrong_row,) = spliced_loss_table(model, tokenizer, {LAYER: scrambled}, PROMPTS, max_prompt_tokens=256)
    assert set(exact_row) == set(SPLICED_LOSS_COLUMNS) and exact_row["loss_prompts"] == len(PROMPTS)
    assert exact_row["loss_spliced"] == pytest.approx(exact_row["loss_clean"], rel=1e-4)
    assert exact_row["loss_recovered"] == pytest.approx(1.0, abs=1e-3)
    assert exact_row["loss_zero_ablated"] > exact_row["loss_clean"] + 0.5
    assert wrong_row["loss_clean"] == exact_row["loss_clean"]  # the hooks are gone after each measurement
    assert wrong_row["loss_spliced"] > exact_row["loss_spliced"] + 0.5 and wrong_row["loss_recovered"] < 0.8


def test_no_prompts_and_a_missing_layer_are_refused(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="no prompts"):
        spliced_loss_table(model, tokenizer, {LAYER: None}, [], max_prompt_tokens=256)
    with pytest.raises(ValueError, match="do not exist"):
        spliced_loss_table(model, tokenizer, {999: None}, PROMPTS, max_prompt_tokens=256)
