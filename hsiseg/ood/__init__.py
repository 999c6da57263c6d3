"""Unknown-tissue (out-of-distribution) scores, by name: one registry for calibration and prediction alike.

Every score maps a pixel's network output to a number, **higher = more like the trained classes**; a pixel
is *unknown* when its score is below the threshold calibrated for that score on held-out annotated pixels
(:mod:`hsiseg.ood.calibration`), or on every annotated pixel's out-of-fold value (:mod:`hsiseg.ood.cross_fitting`).

========================  ==========================================================  =========================
name                      score (z: logits, f: penultimate features, x: input)          paper
========================  ==========================================================  =========================
``max_softmax``           max_c softmax(z)_c                                            Hendrycks & Gimpel, 2017
``max_logit``             max_c z_c                                                     Hendrycks et al., 2022
``energy``                T logsumexp(z / T), negative free energy (``temperature``)    Liu et al., 2020
``mahalanobis``           -min_c (f - mu_c)^T S^-1 (f - mu_c), class means and one      Lee et al., 2018
                          shared covariance S of the annotated training pixels
``knn``                   -|| u - u_(k) ||: distance of the unit-normalised feature u   Sun et al., 2022
                          to its k-th nearest unit-normalised training feature (``k``)
``spectral_mahalanobis``  ``mahalanobis`` on the network's input spectra x (after the   Lee et al., 2018
                          card's preprocessing) instead of its features
``spectral_knn``          -|| z - z_(k) ||: distance of the standardised input spectrum   Sun et al., 2022, in
                          z to its k-th nearest standardised training spectrum (``k``)  the input space
``combined``              min over parts (``mahalanobis``, ``spectral_knn``) of each    this project
                          part scaled by its spread on the training pixels: flags what
                          either space finds unusual (:mod:`hsiseg.ood.combined`)
========================  ==========================================================  =========================

The fitted scores learn from the annotated training pixels (:meth:`OodScore.fit`); what they learn is a few
tensors stored with the network's weights (``ood.<name>.<tensor>`` in the safetensors file). A network with
a parameter-free spatial context (the default ``spectral-spatial`` network) averages score maps with the same
context it applies to its class probabilities (:func:`hsiseg.models.smooth_maps`), so calibration and
prediction see the same maps. A new score is one module with a class decorated ``@OOD_SCORES.register()``
(:mod:`hsiseg.ood.base`): a name, the ``space`` it reads,
``__call__`` and, if it learns something, ``fit``/``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

from hsiseg.ood import combined, feature_scores, logit_scores  # noqa: F401 - registering is importing
from hsiseg.ood.base import OOD_SCORES, OodScore, PixelOutputs, Space, build_score

DEFAULT_SCORE = "mahalanobis"  # best measured (docs/unknown-tissue.md)
# Calibrated by every training run; ``combined`` (measured no better than its parts, README) is opt-in.
DEFAULT_SCORES = ("max_softmax", "max_logit", "energy", "mahalanobis", "knn", "spectral_mahalanobis", "spectral_knn")
__all__ = ["DEFAULT_SCORE", "DEFAULT_SCORES", "OOD_SCORES", "OodScore", "PixelOutputs", "Space", "build_score"]
