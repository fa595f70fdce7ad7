"""The embedded SAEs' training recipe against the corpus-only one, judged on held-out readout residuals.

    .venv/bin/python bench/readout_sae_recipe.py MODEL_DIR [--layers 12 18] [--d-sae 512] [--training-tokens 24000]

The embedded problems are split as Phase 0.1 splits them; the SAEs train on standard-library residuals plus (per
recipe) the readout residuals of the ``sae`` and ``hyperparams`` prompts. Printed per layer and recipe: the
corpus FVU, and ``fvu_between_tasks`` / L0 / latents fired (``sae_quality.layer_quality``) on the last-token
residuals of the validation prompts, which no recipe trains on, and of the training prompts. Run it with the
project root on the path (``PYTHONPATH=.``) from a worktree.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd

from pva_dagster.study.analysis.corpus import collect_readout_residuals, collect_residuals, stdlib_code_corpus
from pva_dagster.study.analysis.embedded_saes import (
    READOUT_BATCH,
    SAETrainingPlan,
    readout_training_prompts,
    train_layer_sae,
)
from pva_dagster.study.analysis.sae import reconstruction_report
from pva_dagster.study.analysis.sae_quality import layer_quality
from pva_dagster.study.domain import DEFAULT_SEED, VALIDATION_SPLIT
from pva_dagster.study.generation.labelled_generation import PromptFormat
from pva_dagster.study.generation.model_loading import load_causal_lm
from pva_dagster.study.generation.prompts import DEFAULT_TEMPLATE
from pva_dagster.study.plots import markdown_table
from pva_dagster.study.problems.difficulty import difficulty_frame
from pva_dagster.study.problems.embedded import load_embedded
from pva_dagster.study.problems.mbpp import problems_to_frame
from pva_dagster.study.problems.splits import SPLIT_RATIOS, split_problems

MAX_PROMPT_TOKENS = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--layers", type=int, nargs="+", default=[12, 18])
    parser.add_argument("--d-sae", type=int, default=512)
    parser.add_argument("--corpus-tokens", type=int, default=8000)
    parser.add_argument("--training-tokens", type=int, default=24_000)
    parser.add_argument("--corpus-files", type=int, default=20)
    args = parser.parse_args()
    base = SAETrainingPlan(
        d_sae=args.d_sae, corpus_tokens=args.corpus_tokens, training_tokens=args.training_tokens,
        corpus_files=args.corpus_files,
    )
    recipes = {
        "corpus only": dataclasses.replace(base, readout_share=0.0, centre_on_readout=False),
        "centred only": dataclasses.replace(base, readout_share=0.0, centre_on_readout=True),
        "mixed 0.5, b_dec learnt": dataclasses.replace(base, readout_share=0.5, centre_on_readout=False),
        "mixed 0.25, centred": dataclasses.replace(base, readout_share=0.25, centre_on_readout=True),
        "mixed 0.5, centred": dataclasses.replace(base, readout_share=0.5, centre_on_readout=True),
        "mixed 0.5, last 4 tokens, centred": dataclasses.replace(
            base, readout_share=0.5, readout_positions=4, centre_on_readout=True
        ),
    }
    model, tokenizer = load_causal_lm(args.model_dir)
    problems = load_embedded()
    frame = problems_to_frame(problems)
    splits = split_problems(difficulty_frame(problems), SPLIT_RATIOS, seed=DEFAULT_SEED)
    prompt_format = PromptFormat(DEFAULT_TEMPLATE, use_chat_template=False)
    training_prompts = readout_training_prompts(frame, splits, prompt_format, tokenizer)
    held_out = frame[frame.task_id.isin(splits.task_id[splits.split == VALIDATION_SPLIT])]
    validation_prompts = list(prompt_format.prompts(held_out, tokenizer).values())
    started = time.perf_counter()
    texts = stdlib_code_corpus(args.corpus_files, DEFAULT_SEED)
    corpus = collect_residuals(model, tokenizer, texts, args.layers, base.context_len, args.corpus_tokens, 16)

    def readouts(prompts: list[str] | tuple[str, ...], positions: int):
        return collect_readout_residuals(
            model, tokenizer, prompts, args.layers, positions, MAX_PROMPT_TOKENS, READOUT_BATCH
        )

    training = {positions: readouts(training_prompts, positions) for positions in (1, 4)}
    validation = readouts(validation_prompts, 1)
    print(f"{len(training_prompts)} training and {len(validation_prompts)} validation prompts, "
          f"residuals collected in {time.perf_counter() - started:.0f} s")
    rows = []
    for layer in args.layers:
        for name, plan in recipes.items():
            started = time.perf_counter()
            sae, _ = train_layer_sae(corpus[layer], training[plan.readout_positions][layer], layer, plan)
            held = layer_quality(validation[layer].numpy(), sae, layer)
            seen = layer_quality(training[1][layer].numpy(), sae, layer)
            rows.append({
                "layer": layer, "recipe": name, "corpus fvu": reconstruction_report(sae, corpus[layer])["fvu"],
                "validation fvu_between_tasks": held["fvu_between_tasks"],
                "validation L0": held["mean_l0"], "validation latents fired": held["latents_fired"],
                "training-prompt fvu_between_tasks": seen["fvu_between_tasks"],
                "between_task_share": held["between_task_share"], "seconds": time.perf_counter() - started,
            })
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format="%.3f"))
    print(markdown_table(pd.DataFrame(rows).round(3)))


if __name__ == "__main__":
    main()
