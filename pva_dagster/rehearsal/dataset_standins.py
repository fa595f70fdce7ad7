"""The ``datasets`` caches the study's problem sources read offline: MBPP (``full``) and MBPP+, from MBPP records.

A hub download leaves ``{HF_HOME}/datasets/<owner>___<name>/<config>/0.0.0/<hash>``; ``load_dataset`` with
``HF_DATASETS_OFFLINE=1`` reads whatever it finds there. The MBPP+ stand-in keeps MBPP+'s record format: the
sanitized fields and a ``test`` program of ``inputs`` / ``results`` literals checked by an ``assertion`` function
(made here from each record's own asserts; a record whose asserts are not ``f(literals) == literal`` gets none).
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pva_dagster.study.problems.mbpp import HF_MBPP_ID
from pva_dagster.study.problems.mbpp_plus import MBPP_PLUS_CONFIG, MBPP_PLUS_ID

MBPP_CONFIG = "full"
# MBPP's splits by task id; MBPP+ ships one split, "test".
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
PLUS_TEST_PROGRAM = """\
import numpy as np
from math import inf


def assertion(out, exp, atol):
    exact_match = out == exp
    if not exact_match and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact_match, f"out: {{out}}, exp: {{exp}}"


inputs = {inputs}
results = {results}
for i, (inp, exp) in enumerate(zip(inputs, results)):
    assertion({entry_point}(*inp), exp, 0)
"""


def _write_cache(
    hf_home: Path, dataset_id: str, config: str, features: Any, splits: Mapping[str, list[dict[str, Any]]]
) -> Path:
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    rows = sorted(row["task_id"] for split in splits.values() for row in split)
    digest = hashlib.sha1(json.dumps(rows).encode()).hexdigest()
    target = Path(hf_home) / "datasets" / dataset_id.replace("/", "___") / config / "0.0.0" / digest
    with tempfile.TemporaryDirectory() as staging:
        data_files = {}
        for split, records in splits.items():
            if records:
                data_files[split] = str(Path(staging) / f"{split}.parquet")
                datasets.Dataset.from_list(records, features=features).to_parquet(data_files[split])
        builder = Parquet(
            cache_dir=str(Path(staging) / "cache"), dataset_name=dataset_id.split("/")[1], config_name=config,
            data_files=data_files, features=features, hash=digest,
        )
        builder.download_and_prepare()
        # The builder names its folder after the config *and* its features (full-<id>); a hub download is
        # stored under the bare config name, which is where the offline loader looks.
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(builder.cache_dir, target)
    return target


def build_mbpp_standin(hf_home: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """The ``datasets`` cache of google-research-datasets/mbpp ``full`` after a download, holding ``records``."""
    import datasets

    features = datasets.Features({
        "task_id": datasets.Value("int32"), "text": datasets.Value("string"), "code": datasets.Value("string"),
        "test_list": datasets.List(datasets.Value("string")), "test_setup_code": datasets.Value("string"),
        "challenge_test_list": datasets.List(datasets.Value("string")),
    })
    splits = {
        split: [{k: r[k] for k in features} for r in records if first <= r["task_id"] <= last]
        for split, (first, last) in MBPP_SPLITS.items()
    }
    return _write_cache(hf_home, HF_MBPP_ID, MBPP_CONFIG, features, splits)


def plus_test_program(test_list: Sequence[str]) -> str:
    """An MBPP+ ``test`` program checking the inputs and results of ``test_list``'s ``f(literals) == literal``
    asserts ("" where one is not of that form)."""
    inputs, results, entry = [], [], None
    for test in test_list:
        node = ast.parse(test).body[0]
        compare = node.test if isinstance(node, ast.Assert) else None
        if not (isinstance(compare, ast.Compare) and isinstance(compare.ops[0], ast.Eq)
                and isinstance(compare.left, ast.Call) and isinstance(compare.left.func, ast.Name)):
            return ""
        try:
            inputs.append([ast.literal_eval(arg) for arg in compare.left.args])
            results.append(ast.literal_eval(compare.comparators[0]))
        except ValueError:
            return ""
        entry = compare.left.func.id
    return PLUS_TEST_PROGRAM.format(inputs=inputs, results=results, entry_point=entry)


def build_mbpp_plus_standin(hf_home: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """The ``datasets`` cache of evalplus/mbppplus after a download, holding ``records`` in MBPP+'s format."""
    import datasets

    features = datasets.Features({
        "task_id": datasets.Value("int32"), "code": datasets.Value("string"), "prompt": datasets.Value("string"),
        "source_file": datasets.Value("string"), "test_imports": datasets.List(datasets.Value("string")),
        "test_list": datasets.List(datasets.Value("string")), "test": datasets.Value("string"),
    })
    rows = [
        {
            "task_id": r["task_id"], "code": r["code"], "prompt": r["text"], "source_file": "",
            "test_imports": [line for line in (r.get("test_setup_code") or "").splitlines() if line.strip()],
            "test_list": r["test_list"], "test": plus_test_program(r["test_list"]),
        }
        for r in records
    ]
    return _write_cache(hf_home, MBPP_PLUS_ID, MBPP_PLUS_CONFIG, features, {"test": rows})
