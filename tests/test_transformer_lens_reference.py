"""TransformerLens as the reference for the hook point: what Phase 1 stores and what steering adds are
``blocks.L.hook_resid_post`` as TransformerLens's bridge computes it, for the embedded model (Llama) and a
Gemma 2 of the study model's architecture, on a real forward pass each."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge

from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.generation.residual import add_to_block_output, hook_name, record_first_call_last_position

PROMPTS = ["def add_numbers(a, b):\n    return", "# Reverse a list\ndef reverse(xs):"]
# The bridge runs attention eagerly; the pipeline's model may use SDPA: kernel-level reordering, ~1e-3 in fp32.
TOLERANCE = {"rtol": 2e-3, "atol": 2e-3}


def _models(path: str):
    ours, tokenizer = load_causal_lm(path, dtype="float32")
    theirs, _ = load_causal_lm(path, dtype="float32")  # the bridge wraps its own copy
    bridge = TransformerBridge.boot_transformers(path, hf_model=theirs, tokenizer=tokenizer, device="cpu")
    return ours.eval(), tokenizer, bridge


@pytest.fixture(scope="module", params=["embedded", "gemma2"])
def models(request, embedded_model_dir, tiny_gemma2_dir):
    return _models(str(embedded_model_dir if request.param == "embedded" else tiny_gemma2_dir))


def test_the_stored_residual_is_transformer_lens_hook_resid_post(models):
    ours, tokenizer, bridge = models
    layers = list(range(ours.config.num_hidden_layers))
    for prompt in PROMPTS:
        ids = tokenizer([prompt], return_tensors="pt")
        with torch.no_grad(), record_first_call_last_position(ours, layers) as recorded:
            ours(**ids)
        _, cache = bridge.run_with_cache(ids["input_ids"])
        for layer in layers:
            reference = cache[hook_name(layer)][0, -1]
            torch.testing.assert_close(recorded[layer][0].float(), reference.float(), **TOLERANCE)


def test_steering_adds_at_transformer_lens_hook_resid_post(models):
    ours, tokenizer, bridge = models
    layer = ours.config.num_hidden_layers // 2
    vector = 8.0 * torch.randn(ours.config.hidden_size, generator=torch.Generator().manual_seed(0))
    ids = tokenizer([PROMPTS[0]], return_tensors="pt")
    with torch.no_grad(), add_to_block_output(ours, layer, vector):
        steered = ours(**ids).logits[0, -1]
    with torch.no_grad():
        plain = ours(**ids).logits[0, -1]
    reference = bridge.run_with_hooks(
        ids["input_ids"], fwd_hooks=[(hook_name(layer), lambda resid, hook: resid + vector)]
    )[0, -1]
    assert not torch.allclose(steered, plain, atol=1e-2), "the vector must change the logits for the test to mean it"
    torch.testing.assert_close(steered.float(), reference.float(), **TOLERANCE)
