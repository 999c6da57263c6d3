"""Data sets as hsiseg reads them, in the order a run uses them.

- :mod:`~hsiseg.dataset.spec`: the data spec (one YAML file: cubes, annotations, label tree, splits);
  :mod:`~hsiseg.dataset.spec_check` checks everything it points at (``hsiseg check``).
- :mod:`~hsiseg.dataset.splits`: patient-level train / validation / test splits.
- :mod:`~hsiseg.dataset.strokes`: held-out scribble strokes when the splits share images.
- :mod:`~hsiseg.dataset.torch_datasets` and :mod:`~hsiseg.dataset.pixel_batches`: what a training step sees
  (annotated-biased crops, or batches of annotated pixels).
- :mod:`~hsiseg.dataset.indian_pines` and :mod:`~hsiseg.dataset.scenes`: the shipped real data sets with
  simulated scribbles.

Nothing is re-exported here, so reading a spec does not import torch.
"""
