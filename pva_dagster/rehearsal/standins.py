"""Stand-ins for the gemma profile's hub files, built offline and seeded, in a Hugging Face cache.

The ``study`` profile loads ``google/gemma-2-2b`` with ``from_pretrained``, GemmaScope through SAELens's
``SAE.from_pretrained("gemma-scope-2b-pt-res-canonical", "layer_{L}/width_16k/canonical")`` and MBPP through
``datasets.load_dataset("google-research-datasets/mbpp", "full")``. Here each is replaced by a small stand-in
written where those calls look with ``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1`` and ``HF_HOME`` pointing at
the stand-in's folder, so the study runs through exactly its own code:

* **model**: a Gemma-2 with google/gemma-2-2b's interface (hidden size 2304, 26 decoder blocks: GemmaScope's
  shapes and layer indices) but one attention head, a 64-wide MLP and a ~1k-token BPE vocabulary trained here;
  random weights, except that its greedy continuation of *every* prompt is planted: a fixed program made of the
  reference solutions of about half of the problems (one added token per solution, then ``<eos>``). A random
  model writes no passing code, and the study needs both labels; with the planted program the problems whose
  solution it holds pass in the sandbox and the others fail. Each block adds a small random update to the
  residual stream (its post-norms scaled down), so block outputs differ from layer to layer while the planted
  path still wins by a wide logit margin.
* **SAEs**: GemmaScope ``params.npz`` files (``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``, ``threshold``; JumpReLU,
  d_in 2304, d_sae 16384) at the repo and path SAELens's own release table resolves each id to.
* **problems**: the prepared ``datasets`` caches of ``google-research-datasets/mbpp`` (config ``full``) and of
  ``evalplus/mbppplus``, holding the given MBPP records, which is what ``load_dataset`` reads offline
  (``dataset_standins.py``).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken
from transformers import GenerationConfig

from pva_dagster.rehearsal.dataset_standins import build_mbpp_plus_standin, build_mbpp_standin
from pva_dagster.rehearsal.hub_cache import write_snapshot, write_snapshot_folder
from pva_dagster.rehearsal.random_models import random_gemma2, train_gemma_tokenizer
from pva_dagster.study.analysis.release_variants import ReleaseVariant, release_location

GEMMA2_2B_ID = "google/gemma-2-2b"
GEMMASCOPE_RELEASE = "gemma-scope-2b-pt-res-canonical"
GEMMASCOPE_SAE_ID = "layer_{layer}/width_16k/canonical"
# google/gemma-2-2b's interface, cheap inside (the real model: 8 heads of 256, MLP 9216, vocabulary 256,000).
GEMMA2_2B_INTERFACE = {
    "hidden_size": 2304, "num_hidden_layers": 26, "intermediate_size": 64, "num_attention_heads": 1,
    "num_key_value_heads": 1, "head_dim": 32, "max_position_embeddings": 8192, "sliding_window": 4096,
    "query_pre_attn_scalar": 256, "tie_word_embeddings": False,
}
# Scale (1 + weight) of each block's two post-norms: every attention / MLP update has RMS 0.1 per coordinate
# against the embedding's 1, so 26 blocks move the residual stream by ~0.7 of its size, never off its token.
BLOCK_UPDATE_SCALE = 0.1
PLANTED_LOGIT_SCALE = 2.0  # unembedding norm of the planted rows: logits ~60-80 before Gemma's soft cap of 30
OTHER_LOGIT_STD = 0.02  # the other unembedding rows: logits of about +-1
SAE_THRESHOLD = 2.5  # JumpReLU threshold of every stand-in latent (pre-activations are ~N(0, 1.3) here)
_TOP_LEVEL_OK = re.compile(r"^(?:def\s|import\s|from\s|#)")
_DEF_NAME = re.compile(r"^def\s+(\w+)", flags=re.MULTILINE)


@dataclass(frozen=True)
class StudyStandins:
    hf_home: Path
    model_snapshot: Path
    sae_files: dict[int, Path]  # layer -> params.npz in the hub cache
    variant_files: dict[str, Path]  # a variant's SAE id at a layer -> params.npz in the hub cache
    planted_task_ids: list[int]  # problems whose reference solution the model's program holds
    task_ids: list[int]  # every problem in the MBPP stand-in


def _normalized_code(code: str) -> str:
    return code.replace("\r\n", "\n").rstrip() + "\n\n"


def plantable(code: str) -> bool:
    """A reference solution that can follow others in one program: only defs, imports and comments at the top
    level (an assignment there would end the solution under the study's stop rule), at least one def."""
    lines = [line for line in _normalized_code(code).split("\n") if line.strip()]
    top = [line for line in lines if line[0] not in " \t"]
    return any(line.startswith("def ") for line in top) and all(_TOP_LEVEL_OK.match(line) for line in top)


def choose_planted(records: Sequence[Mapping[str, Any]], seed: int) -> list[Mapping[str, Any]]:
    """About half of the plantable problems (seeded), none defining a function another one defines."""
    rng = np.random.default_rng(seed)
    chosen: list[Mapping[str, Any]] = []
    names: set[str] = set()
    for record in sorted(records, key=lambda r: r["task_id"]):
        defined = set(_DEF_NAME.findall(_normalized_code(record["code"])))
        if plantable(record["code"]) and not defined & names and rng.random() < 0.5:
            chosen.append(record)
            names |= defined
    return chosen


def standin_tokenizer(pieces: Sequence[str]) -> Any:
    """A small ``GemmaTokenizer`` (``random_models``) with one added token per planted piece."""
    tokenizer = train_gemma_tokenizer()
    tokenizer.add_tokens([AddedToken(piece, normalized=False, special=False) for piece in pieces])
    return tokenizer


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True)


@torch.no_grad()
def plant_program(model: Any, planted_ids: Sequence[int], eos_id: int, seed: int) -> None:
    """Make greedy decoding write ``planted_ids`` then ``eos_id`` after any other token (weights in place).

    Ordinary tokens' embeddings share a direction ``u``; planted token i has its own direction ``e_i``
    (orthogonal to ``u``). The unembedding maps ``u`` to the first planted token, ``e_i`` to the next one and the
    last one's to ``<eos>``; all other rows are small. The blocks' post-norms are scaled down so their random
    updates perturb, but do not replace, the token's direction.
    """
    generator = torch.Generator().manual_seed(seed)
    embed = model.get_input_embeddings().weight  # [vocab, d]
    unembed = model.get_output_embeddings().weight  # [vocab, d]
    vocab, d = embed.shape
    u = _unit(torch.randn(d, generator=generator))
    ordinary = torch.ones(vocab, dtype=torch.bool)
    ordinary[list(planted_ids)] = False
    embed[ordinary] = _unit(u + _unit(torch.randn(int(ordinary.sum()), d, generator=generator))).to(embed.dtype)
    directions = torch.randn(len(planted_ids), d, generator=generator)
    directions = _unit(directions - (directions @ u)[:, None] * u)
    embed[list(planted_ids)] = directions.to(embed.dtype)
    unembed.copy_(torch.randn(vocab, d, generator=generator) * OTHER_LOGIT_STD)
    targets = [*planted_ids, eos_id]
    unembed[targets[0]] = PLANTED_LOGIT_SCALE * u
    for direction, target in zip(directions, targets[1:], strict=True):
        unembed[target] = PLANTED_LOGIT_SCALE * direction
    for block in model.model.layers:
        block.post_attention_layernorm.weight.fill_(BLOCK_UPDATE_SCALE - 1.0)  # Gemma scales by (1 + weight)
        block.post_feedforward_layernorm.weight.fill_(BLOCK_UPDATE_SCALE - 1.0)


def as_released_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config.json written by this transformers, in the older form google/gemma-2-2b's file has (saved by
    transformers 4.42): ``torch_dtype``, ``rope_theta``, ``hidden_act``, no ``layer_types``; loading it takes the
    same compatibility path as the real file."""
    released = {k: v for k, v in config.items() if k not in ("dtype", "rope_parameters", "layer_types")}
    released.update(
        torch_dtype=config["dtype"], rope_theta=config["rope_parameters"]["rope_theta"],
        hidden_act=config["hidden_activation"], transformers_version="4.42.4",
    )
    return dict(sorted(released.items()))


def build_gemma2_2b_standin(hf_home: Path, planted_code: Sequence[str], seed: int = 0) -> Path:
    """Save the model and tokenizer as a hub-cache snapshot of google/gemma-2-2b; returns the snapshot."""
    pieces = [_normalized_code(code) for code in planted_code]
    tokenizer = standin_tokenizer(pieces)
    model = random_gemma2(
        tokenizer, GEMMA2_2B_INTERFACE, seed, architectures=["Gemma2ForCausalLM"], cache_implementation="hybrid"
    )
    plant_program(model, tokenizer.convert_tokens_to_ids(pieces), tokenizer.eos_token_id, seed)
    # As in google/gemma-2-2b's generation_config.json.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, cache_implementation="hybrid",
    )
    with tempfile.TemporaryDirectory() as staging:
        model.save_pretrained(staging, max_shard_size="40MB")  # sharded with an index, as the real model is
        tokenizer.save_pretrained(staging)
        config_file = Path(staging) / "config.json"
        config_file.write_text(json.dumps(as_released_config(json.loads(config_file.read_text())), indent=2))
        return write_snapshot_folder(hf_home, "model", GEMMA2_2B_ID, Path(staging))


def gemmascope_location(layer: int) -> tuple[str, str]:
    """(hub repo, folder) that SAELens's own release table gives the canonical 16k residual SAE of ``layer``."""
    return release_location(GEMMASCOPE_RELEASE, GEMMASCOPE_SAE_ID.format(layer=layer))


def gemmascope_params(d_in: int, d_sae: int, seed: int) -> dict[str, np.ndarray]:
    """Random JumpReLU weights in GemmaScope's ``params.npz`` layout (float32, decoder rows of unit norm)."""
    rng = np.random.default_rng(seed)
    w_dec = rng.standard_normal((d_sae, d_in), dtype=np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    return {
        # Encoder = decoder transposed: a residual of norm ~55 (RMS ~1.15) gives pre-activations ~N(0, 1.3).
        "W_enc": np.ascontiguousarray(w_dec.T),
        "W_dec": w_dec,
        "b_enc": np.zeros(d_sae, dtype=np.float32),
        "b_dec": (0.01 * rng.standard_normal(d_in)).astype(np.float32),
        "threshold": np.full(d_sae, SAE_THRESHOLD, dtype=np.float32),
    }


def build_gemmascope_standins(
    hf_home: Path, layers: Sequence[int], seed: int = 0, variants: Sequence[ReleaseVariant] = ()
) -> tuple[dict[int, Path], dict[str, Path]]:
    """``params.npz`` for each layer where SAELens downloads GemmaScope's, and for each of ``variants`` at each
    layer (other widths / L0 levels, resolved through SAELens's table as the run resolves them); returns layer ->
    cached file and variant SAE id -> cached file. Every file goes into one snapshot, as the hub serves one."""
    primaries = {layer: gemmascope_location(layer) for layer in layers}
    others = {
        sae_id: release_location(variant.release, sae_id)
        for variant in variants for sae_id in (variant.sae_id_at(layer) for layer in layers)
    }
    repos = {repo for repo, _ in [*primaries.values(), *others.values()]}
    if len(repos) != 1:
        raise ValueError(f"the SAEs live in several repos {sorted(repos)}; expected one")
    d_in = GEMMA2_2B_INTERFACE["hidden_size"]
    # The primaries draw from seed + layer; each variant file from its own seed past any layer's.
    folders = {folder: seed + layer for layer, (_, folder) in primaries.items()} | {
        folder: seed + 1000 + number for number, (_, folder) in enumerate(others.values())
    }
    with tempfile.TemporaryDirectory() as staging:
        files = {}
        for folder, draw in folders.items():
            path = Path(staging) / f"{draw}.npz"
            d_sae = width_of(folder)
            # numpy's stub lets the ** arrays fill savez's allow_pickle: bool (hence the ignore)
            np.savez(path, **gemmascope_params(d_in, d_sae, draw))  # type: ignore[arg-type]
            files[f"{folder}/params.npz"] = path
        snapshot = write_snapshot(hf_home, "model", repos.pop(), files)
    return (
        {layer: snapshot / folder / "params.npz" for layer, (_, folder) in primaries.items()},
        {sae_id: snapshot / folder / "params.npz" for sae_id, (_, folder) in others.items()},
    )


def width_of(folder: str) -> int:
    """The latents of a GemmaScope SAE, from the ``width_16k`` / ``width_1m`` part of its folder: GemmaScope's
    widths are powers of two named in rounded thousands (65k is 65,536, 1m is 1,048,576), as SAELens reads them."""
    match = re.search(r"width_(\d+)([km])", folder)
    if match is None:
        raise ValueError(f"no width_<n>k / width_<n>m in the GemmaScope folder {folder!r}")
    return 2 ** round(math.log2(int(match.group(1)) * {"k": 1e3, "m": 1e6}[match.group(2)]))


def read_mbpp_slice(path: Path, task_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The records of ``task_ids`` from an MBPP ``.jsonl``; raises naming any id it lacks."""
    wanted = set(task_ids)
    with Path(path).open(encoding="utf-8") as handle:
        records = [r for r in map(json.loads, handle) if r["task_id"] in wanted]
    missing = sorted(wanted - {r["task_id"] for r in records})
    if missing:
        raise ValueError(f"{path} lacks task ids {missing}")
    return sorted(records, key=lambda r: r["task_id"])


def build_study_standins(
    hf_home: Path, mbpp_path: Path, task_ids: Sequence[int], sae_layers: Sequence[int], seed: int = 0,
    sae_variants: Sequence[ReleaseVariant] = (),
) -> StudyStandins:
    """Every hub file the gemma profile reads, for the problems ``task_ids`` of the MBPP at ``mbpp_path`` and the
    SAE variants ``sae_variants``."""
    hf_home = Path(hf_home)
    records = read_mbpp_slice(mbpp_path, task_ids)
    planted = choose_planted(records, seed)
    snapshot = build_gemma2_2b_standin(hf_home, [r["code"] for r in planted], seed)
    sae_files, variant_files = build_gemmascope_standins(hf_home, sae_layers, seed, sae_variants)
    build_mbpp_standin(hf_home, records)
    build_mbpp_plus_standin(hf_home, records)
    return StudyStandins(
        hf_home=hf_home, model_snapshot=snapshot, sae_files=sae_files, variant_files=variant_files,
        planted_task_ids=[r["task_id"] for r in planted], task_ids=[r["task_id"] for r in records],
    )
