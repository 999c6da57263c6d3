"""Active annotation: where to scribble next (:mod:`~hsiseg.active.suggest`), the suggestions written for a
data spec (:mod:`~hsiseg.active.files`), and a simulated annotator for budget experiments
(:mod:`~hsiseg.active.simulated_annotator`)."""

from hsiseg.active.suggest import STRATEGIES, Suggestion, regions, suggest

__all__ = ["STRATEGIES", "Suggestion", "regions", "suggest"]
