"""Streaming weighted mean of model updates: memory independent of the number of sites.

Each accepted update (``trained - base``) is folded into the running weighted sum as it
arrives and can then be dropped (the checkpoint keeps it on disk for crash recovery), so the
gateway holds the same few buffers whatever the number of sites: a float64 total and a
float32 partial sum of the current group of updates.

Speed and precision: BLAS ``saxpy`` adds an update, weighted, to the partial sum in one pass
per block of :data:`BLOCK` values, and every ``GROUP`` updates the float32 partial is added to
the float64 total. A float32 sum of at most 64 weighted updates is as precise as TFF's own
float32 mean, and the float64 total keeps a thousand updates from losing digits to each other.
"""

from __future__ import annotations

import numpy as np

from privadx.common.errors import InputError

BLOCK = 1 << 20
"""Values per ``saxpy`` call (4 MiB of float32, within the last-level cache).

Measured (100 updates of 2M values, 2-core AMD EPYC VM, 32 MiB L3, one BLAS thread; fold time
over one ``np.copyto`` of the same bytes, three runs): 3.02-3.21x with 64 Ki-value blocks,
which fit the L2 cache but cost more in per-block calls than the cache saves; 2.46-2.60x
with 256 Ki; 2.42-2.47x with 512 Ki; 2.45-2.52x with 1 Mi."""
GROUP = 64
"""Updates summed in float32 before their sum joins the float64 total."""


def one_blas_thread() -> None:
    """Run the BLAS that :func:`_axpy` uses on one thread in this process.

    The fold is bound by memory, and OpenBLAS's second thread costs more than it brings: on
    the 2-core benchmark machine 10 updates of 2M values took a median 30.1 ms with OpenBLAS's
    default two threads against 10.0 ms with one (1,130 and 1,990 folds in 30 s each). SciPy's
    BLAS is loaded first: ``threadpoolctl`` limits only libraries already loaded. No-op
    without SciPy or ``threadpoolctl``.
    """
    try:
        import scipy.linalg.blas  # noqa: F401  (loads the library to limit)
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")


def _axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += a * x`` in place, in one pass (BLAS saxpy when SciPy is there)."""
    try:
        from scipy.linalg.blas import saxpy
    except ImportError:  # the gateway's TensorFlow pulls SciPy in; this keeps numpy-only use
        y += np.float32(a) * x
        return
    saxpy(x, y, a=a)


class StreamingMean:
    """Running example-weighted mean of sites' updates (``trained - base``)."""

    def __init__(self, reference: dict[str, np.ndarray]) -> None:
        """Buffers for updates shaped like ``reference``'s tensors; BLAS on one thread."""
        one_blas_thread()
        self.shapes = {n: v.shape for n, v in reference.items()}
        size = {n: int(np.prod(s, dtype=np.int64)) for n, s in self.shapes.items()}
        self._sum = {n: np.empty(k, np.float64) for n, k in size.items()}
        self._partial = {n: np.empty(k, np.float32) for n, k in size.items()}
        self._out = {n: np.empty(k, np.float32) for n, k in size.items()}
        self.reset()

    @property
    def buffer_bytes(self) -> int:
        """Bytes of the buffers this accumulator holds (independent of the updates)."""
        arrays: list[np.ndarray] = [
            *self._sum.values(),
            *self._partial.values(),
            *self._out.values(),
        ]
        return sum(a.nbytes for a in arrays)

    def reset(self) -> None:
        """Start a new round, reusing the buffers.

        Reuse matters: fresh buffers cost a page fault per 4 KiB on first touch, which on this
        machine took longer than folding in ten 2M-value updates. Nothing is zeroed: the first
        update of a group and the first fold overwrite their buffer instead of adding to it.
        """
        self._in_group = 0
        self._total_live = False
        self.weight = 0.0
        self.count = 0

    def add(self, update: dict[str, np.ndarray], weight: float) -> None:
        """Fold in one site's update with its weight (example count).

        Raises:
            InputError: Tensors missing or misshapen, or a weight that is not positive.
        """
        if not weight > 0:
            raise InputError(f"update weight must be positive, got {weight}")
        if update.keys() != self.shapes.keys():
            raise InputError("update does not have the global model's tensors")
        for name, shape in self.shapes.items():
            if update[name].shape != shape:
                raise InputError(f"tensor {name}: shape {update[name].shape}, expected {shape}")
        w = float(weight)
        first = self._in_group == 0
        for name, partial in self._partial.items():
            values = np.asarray(update[name], np.float32).reshape(-1)
            for start in range(0, values.size, BLOCK):
                stop = start + BLOCK
                if first:  # the group's first update initialises the partial sum
                    np.multiply(values[start:stop], np.float32(w), out=partial[start:stop])
                else:
                    _axpy(w, values[start:stop], partial[start:stop])
        self.weight += w
        self.count += 1
        self._in_group += 1
        if self._in_group == GROUP:
            self._fold()

    def _fold(self) -> None:
        if self._in_group == 0:
            return
        for name, partial in self._partial.items():
            total = self._sum[name]
            if self._total_live:
                np.add(total, partial, out=total)
            else:
                np.copyto(total, partial)
        self._total_live = True
        self._in_group = 0

    def mean_update(self) -> dict[str, np.ndarray]:
        """The weighted mean update so far (float32 views of buffers reused by :meth:`reset`)."""
        if self.count == 0:
            raise InputError("no update to average")
        scale = 1.0 / self.weight
        if not self._total_live:  # one group so far: its float32 partial sum is the sum
            for name, partial in self._partial.items():
                np.multiply(partial, np.float32(scale), out=self._out[name])
        else:
            self._fold()
            for name, total in self._sum.items():
                np.multiply(total, scale, out=self._out[name], casting="same_kind")
        return {n: out.reshape(self.shapes[n]) for n, out in self._out.items()}
