"""Prediction: one cube (:mod:`hsiseg.predict.inference`) and whole recordings (:mod:`hsiseg.predict.batch`)."""

from hsiseg.predict.batch import FrameResult, PredictOptions, plan_frames, predict_batch
from hsiseg.predict.inference import Prediction, Predictor, Prepared, confident_nodes, level_labels

__all__ = [
    "FrameResult",
    "PredictOptions",
    "Prediction",
    "Predictor",
    "Prepared",
    "confident_nodes",
    "level_labels",
    "plan_frames",
    "predict_batch",
]
