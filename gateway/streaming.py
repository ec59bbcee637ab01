"""Streaming weighted mean of model deltas: memory independent of the number of sites.

Each accepted update is folded into a running ``sum_i w_i * (base - trained_i)`` as it
arrives and can then be dropped (the checkpoint keeps it on disk for crash recovery), so the
gateway holds one accumulator and one scratch buffer whatever the number of sites. The sum is
kept in float64: a thousand float32 additions would otherwise lose about three digits.
Every step works in place on preallocated buffers (``np.subtract``/``np.multiply`` with
``out=``), so the cost per update is a few passes over its bytes.
"""

from __future__ import annotations

import numpy as np

from common.errors import InputError


class StreamingMean:
    """Running example-weighted mean of client deltas against one base model."""

    def __init__(self, base: dict[str, np.ndarray]) -> None:
        self.base = base
        self._sum = {n: np.zeros(v.shape, np.float64) for n, v in base.items()}
        self._scratch = {n: np.empty(v.shape, np.float32) for n, v in base.items()}
        self.weight = 0.0
        self.count = 0

    def add(self, trained: dict[str, np.ndarray], weight: float) -> None:
        """Fold in one site's trained weights with its weight (example count).

        Raises:
            InputError: Tensors missing or misshapen, or a weight that is not positive.
        """
        if not weight > 0:
            raise InputError(f"update weight must be positive, got {weight}")
        if trained.keys() != self.base.keys():
            raise InputError("update does not have the global model's tensors")
        for name, acc in self._sum.items():
            t = trained[name]
            if t.shape != acc.shape:
                raise InputError(f"tensor {name}: shape {t.shape}, expected {acc.shape}")
            scratch = self._scratch[name]
            np.subtract(self.base[name], t, out=scratch)
            np.multiply(scratch, np.float32(weight), out=scratch)
            np.add(acc, scratch, out=acc)
        self.weight += float(weight)
        self.count += 1

    def mean_delta(self) -> dict[str, np.ndarray]:
        """The weighted mean delta so far (float32)."""
        if self.count == 0:
            raise InputError("no update to average")
        return {n: (acc / self.weight).astype(np.float32) for n, acc in self._sum.items()}

    def as_single_update(self) -> dict[str, np.ndarray]:
        """Trained weights whose delta is the mean: ``base - mean_delta``, for the server step."""
        return {n: self.base[n] - d for n, d in self.mean_delta().items()}
