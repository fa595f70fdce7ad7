"""Data versions: a hash of what an asset produced, so that Dagster marks downstream assets stale exactly when
an upstream value changed (a re-materialization that produced the same value leaves them fresh)."""

import hashlib
import json
import warnings
from collections.abc import Mapping

import dagster as dg
import numpy as np
import pandas as pd

from pva_dagster.study.domain import TIMING_COLUMNS

# Every asset returns a data version on purpose (staleness is this module's job): Dagster's beta notice about the
# `data_version` parameter would otherwise print once per step of every run. Only that notice is silenced.
warnings.filterwarnings("ignore", message=r".*`data_version`.*beta", category=dg.BetaWarning)



def _update(digest: "hashlib._Hash", value: object) -> None:
    if isinstance(value, Mapping):
        for key in sorted(value):
            digest.update(str(key).encode())
            _update(digest, value[key])
    elif isinstance(value, pd.DataFrame):
        frame = value.drop(columns=list(TIMING_COLUMNS), errors="ignore")
        lists = [
            c for c in frame.columns
            if frame[c].dtype == object and frame[c].map(lambda x: isinstance(x, (list, tuple, np.ndarray))).any()
        ]
        frame = frame.assign(**{c: frame[c].map(lambda x: json.dumps(np.asarray(x).tolist())) for c in lists})
        digest.update(json.dumps([str(c) for c in frame.columns]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())  # exact bytes of floats
    else:
        digest.update(str(value).encode())


def data_version(value: object) -> dg.DataVersion:
    """Of a DataFrame (timing columns left out), a dict of them, or text; floats hashed at full precision."""
    digest = hashlib.sha256()
    _update(digest, value)
    return dg.DataVersion(digest.hexdigest()[:16])
