"""SAEs through SAELens: load GemmaScope (or any SAELens release), load a local SAELens folder, train TopK SAEs
on recorded residuals with SAELens's own trainer, and encode residuals into latents.

Every SAE here reads the output of decoder block L, recorded in its config metadata as the TransformerLens hook
``blocks.{L}.hook_resid_post`` (what GemmaScope's ``layer_{L}`` residual SAEs were trained on).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sae_lens import SAE
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.constants import SAE_CFG_FILENAME
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

from pva_dagster.study.generation.residual import hook_name

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def load_pretrained_sae(release: str, sae_id: str, device: str) -> SAE:
    """A released SAE by SAELens name, e.g. ``("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")``."""
    return SAE.from_pretrained(release, sae_id, device=device)


def load_local_sae(path: str | Path, device: str) -> SAE:
    """An SAE saved in SAELens's folder format (``cfg.json`` + weights) by :func:`save_sae` or SAELens itself."""
    path = Path(path)
    if not (path / SAE_CFG_FILENAME).is_file():
        raise FileNotFoundError(f"no SAELens SAE at {path} (missing {SAE_CFG_FILENAME})")
    return SAE.load_from_disk(path, device=device)


def sae_hook_layer(sae: SAE) -> int:
    """The block L of the SAE's hook ``blocks.{L}.hook_resid_post``; raises naming any other hook."""
    name = sae.cfg.metadata.hook_name
    match = _RESID_POST.match(name or "")
    if match is None:
        raise ValueError(f"the SAE reads hook {name!r}, not a residual-stream hook blocks.{{L}}.hook_resid_post")
    return int(match.group(1))


def _batches(activations: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled batches: a fresh seeded permutation of all rows per epoch (SAELens's DataProvider)."""
    while True:
        order = torch.randperm(len(activations), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield activations[order[start : start + batch_size]]


def train_topk_sae(
    activations: torch.Tensor,  # [n, d_model]
    layer: int,
    d_sae: int,
    k: int,
    training_tokens: int,
    batch_size: int,
    lr: float,
    seed: int,
    decoder_bias: torch.Tensor | None = None,  # [d_model], raw residual space; None: the rows' mean
    train_decoder_bias: bool = True,
    autocast: bool = False,
) -> tuple[SAE, dict[str, Any]]:
    """Train a TopK SAE on ``activations`` with SAELens's ``SAETrainer``; return the inference SAE and a summary.

    ``training_tokens`` rows are drawn in shuffled batches, cycling over the rows when there are fewer. SAELens
    normalises inputs to norm sqrt(d_model) during training and folds that scale into the weights at the end, so
    the returned SAE reads raw residuals. No W&B logging, no checkpoints; the seed fixes the initial weights and
    the batch order. The decoder bias ``b_dec`` (the point the latents encode departures from) starts at
    ``decoder_bias`` and is learnt unless ``train_decoder_bias`` is False, which holds it there.
    """
    n, d_model = activations.shape
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} activation rows")
    if training_tokens < batch_size:
        raise ValueError(f"training_tokens {training_tokens} is less than one batch of {batch_size}")
    if not 0 < k <= d_sae:
        raise ValueError(f"k must be in 1..d_sae={d_sae}, got {k}")
    steps = training_tokens // batch_size
    torch.manual_seed(seed)
    metadata = SAEMetadata(
        hook_name=hook_name(layer), seed=seed, training_tokens=steps * batch_size, lr=lr, batch_size=batch_size,
    )
    cfg = TopKTrainingSAEConfig(
        d_in=d_model, d_sae=d_sae, k=k, dtype="float32", device="cpu",
        normalize_activations="expected_average_only_in", metadata=metadata,
    )
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=lr,
        lr_end=lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=steps // 20,  # none for a run too short to warm up (the cosine needs >= 1 step)
        device="cpu",
        # A latent silent for a tenth of the run counts as dead and joins TopK's auxiliary loss; SAELens's
        # default of 1000 steps is longer than a run of a few hundred steps, which would disable that loss.
        dead_feature_window=max(10, steps // 10),
        feature_sampling_window=max(10, steps // 10),
        logger=LoggingConfig(log_to_wandb=False),
        autocast=autocast,
    )
    activations = activations.to(torch.float32)
    sae = TopKTrainingSAE(cfg)
    generator = torch.Generator().manual_seed(seed)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_batches(activations, batch_size, generator))
    # SAELens would estimate the scale sqrt(d_model) / mean norm from sampled batches; all rows are at hand, so
    # set it exactly (fit() keeps a preset scale). Starting b_dec at the scaled mean saves the first steps of a
    # short run from learning the offset.
    scale = d_model**0.5 / float(activations.norm(dim=1).mean())
    trainer.activation_scaler.scaling_factor = scale
    centre = activations.mean(0) if decoder_bias is None else decoder_bias.to(torch.float32)
    if centre.shape != (d_model,):
        raise ValueError(f"decoder_bias of shape {tuple(centre.shape)} does not fit d_model={d_model}")
    with torch.no_grad():
        sae.b_dec.copy_(centre * scale)
    sae.b_dec.requires_grad_(train_decoder_bias)  # Adam skips a parameter that never gets a gradient
    trained = trainer.fit()
    summary = {
        "steps": steps,
        "training_tokens": steps * batch_size,
        "dead_latents_at_end": int(trained.cfg.metadata.num_dead_features or 0),
        "train_l0": float(trained.cfg.metadata.l0 or 0.0),
    }
    return _inference_sae(trained), summary


def _inference_sae(trained: TopKTrainingSAE) -> SAE:
    """The inference TopK SAE SAELens would save for ``trained`` (decoder norms folded into the weights)."""
    state = {name: tensor.clone() for name, tensor in trained.state_dict().items()}
    trained.process_state_dict_for_saving_inference(state)
    sae = SAE.from_dict(trained.cfg.get_inference_sae_cfg_dict())
    sae.load_state_dict(state)
    return sae.eval()


MADE_BY_FILE = "made_by.txt"  # beside SAELens's files: a fingerprint of what the SAE was trained from


def save_sae(sae: SAE, out_dir: Path, made_by: str | None = None) -> Path:
    """Save in SAELens's folder format, atomically: written beside ``out_dir`` and renamed into place (with
    ``made_by`` in ``MADE_BY_FILE``, so that the SAE and its fingerprint appear together)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        sae.save_model(staging)
        if made_by is not None:
            (staging / MADE_BY_FILE).write_text(made_by)
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


@torch.no_grad()
def _encode_batches(sae: SAE, activations: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    for start in range(0, len(activations), batch_size):
        x = activations[start : start + batch_size].to(sae.device, sae.dtype)
        latents = sae.encode(x)
        yield x, latents, sae.decode(latents)


def reconstruction_report(sae: SAE, activations: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """FVU (residual variance / total variance), mean L0 (active latents per token), fraction never active."""
    activations = torch.as_tensor(activations, dtype=torch.float32)
    mean = activations.mean(0).to(sae.device)
    error = total = active_count = 0.0
    ever_active = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=sae.device)
    for x, latents, recon in _encode_batches(sae, activations, batch_size):
        error += float((x - recon).pow(2).sum())
        total += float((x - mean).pow(2).sum())
        active = latents > 0
        active_count += float(active.sum())
        ever_active |= active.any(0)
    return {
        "fvu": error / total,
        "l0": active_count / len(activations),
        "dead_fraction": float((~ever_active).float().mean()),
    }


def _input_tensor(sae: SAE, activations: np.ndarray) -> torch.Tensor:
    """Residuals ``[n, d_model]`` as a float32 tensor; raises when their width is not the SAE's ``d_in``."""
    if activations.ndim != 2 or activations.shape[1] != sae.cfg.d_in:
        raise ValueError(f"activations of shape {activations.shape} do not fit an SAE with d_in={sae.cfg.d_in}")
    return torch.from_numpy(np.ascontiguousarray(activations, dtype=np.float32))


def encode_and_reconstruct(sae: SAE, activations: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """SAE latents ``float32 [n, d_sae]`` and reconstructions ``float32 [n, d_model]`` (``decode(encode(x))``,
    SAELens's forward pass) of residuals ``[n, d_model]``, in batches without gradients."""
    tensor = _input_tensor(sae, activations)
    latents = np.empty((len(tensor), sae.cfg.d_sae), dtype=np.float32)
    recons = np.empty((len(tensor), sae.cfg.d_in), dtype=np.float32)
    start = 0
    for _, batch_latents, batch_recons in _encode_batches(sae, tensor, batch_size):
        latents[start : start + len(batch_latents)] = batch_latents.float().cpu().numpy()
        recons[start : start + len(batch_recons)] = batch_recons.float().cpu().numpy()
        start += len(batch_latents)
    return latents, recons


def encode(sae: SAE, activations: np.ndarray, batch_size: int) -> np.ndarray:
    """SAE latents ``float32 [n, d_sae]`` of residuals ``[n, d_model]``, encoded in batches without gradients."""
    tensor = _input_tensor(sae, activations)
    out = np.empty((len(tensor), sae.cfg.d_sae), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(tensor), batch_size):
            x = tensor[start : start + batch_size].to(sae.device, sae.dtype)
            out[start : start + len(x)] = sae.encode(x).float().cpu().numpy()
    return out
