"""Federated evaluation: each site scores its held-out images, only sums leave the site.

A site turns the model's logits on its held-out images into an
:class:`~privadx.common.evaluation.report.EvaluationReport` (counts, fixed-bin score histograms, the
confusion matrix, summed losses); the gateway and the simulation add the reports up and
derive the federated metrics from the sums (:mod:`privadx.common.evaluation.federated`). One
definition serves the edge, the gateway and the simulation, and none of it needs TensorFlow.
"""
