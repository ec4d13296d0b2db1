"""A kept trial's model as MLflow's `python_function` flavor, saved as code ("models from code").

MLflow copies this file into the model folder and runs it on load; `load_context` then reads the
network from its checkpoint (`model.checkpoint`: JSON and `.npz`, no pickle) and the
preprocessing (feature order, standardization, classes) from JSON. Nothing of ours is pickled.

    model = mlflow.pyfunc.load_model(uri)
    model.predict(df)                                   # the data's own labels, one per row
    model.predict(df, params={"probabilities": True})   # one column per class
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa

from model.checkpoint import Checkpoint
from sweeper.data.datasets import Preprocessing
from sweeper.tracking.models import NETWORK, PREPROCESSING


class SweepModel(mlflow.pyfunc.PythonModel):
    """Raw feature columns in, the data's own labels (or class probabilities) out."""

    # predict's input is checked by our own Preprocessing (column names and types, in messages
    # that name the column); MLflow's type-hint validation would only warn on every load
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.network = Checkpoint.load(Path(context.artifacts[NETWORK])).network()
        stored = json.loads(Path(context.artifacts[PREPROCESSING]).read_text())
        self.preprocessing = Preprocessing.from_json(stored)

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        X = self.preprocessing.inputs(pa.Table.from_pandas(frame, preserve_index=False), "input")
        Yhat = self.network.predict(X)  # (C, m) softmax, or (1, m) P(class 1)
        classes = self.preprocessing.classes
        if (params or {}).get("probabilities"):
            P = np.vstack([1 - Yhat, Yhat]) if Yhat.shape[0] == 1 else Yhat
            return pd.DataFrame(P.T.astype(np.float64), columns=[str(c) for c in classes])
        index = self.network.loss.predict_classes(np, Yhat)
        return np.asarray(classes, dtype=object)[index]  # served as a plain JSON list


mlflow.models.set_model(SweepModel())
