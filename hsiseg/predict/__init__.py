"""Prediction: one cube (:mod:`hsiseg.predict.inference`) and whole recordings (:mod:`hsiseg.predict.batch`)."""

from hsiseg.predict.batch import FrameResult, plan_frames, predict_batch
from hsiseg.predict.inference import Prediction, Predictor, Prepared, confident_nodes, level_labels
from hsiseg.predict.options import (
    ExistingOutputs,
    FrameFileOptions,
    InferenceOptions,
    PredictOptions,
    RunOptions,
)

__all__ = [
    "ExistingOutputs",
    "FrameFileOptions",
    "FrameResult",
    "InferenceOptions",
    "PredictOptions",
    "Prediction",
    "Predictor",
    "Prepared",
    "confident_nodes",
    "level_labels",
    "plan_frames",
    "predict_batch",
    "RunOptions",
]
