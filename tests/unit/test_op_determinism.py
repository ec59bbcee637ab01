"""TensorFlow's process-wide op determinism is scoped to the run that asks for it."""

from __future__ import annotations

import pytest

from tff_core.runtime import op_determinism

pytest.importorskip("tensorflow")


def _enabled() -> bool:
    from tensorflow.python.framework import config

    return bool(config.is_op_determinism_enabled())


@pytest.mark.parametrize("before", [False, True])
@pytest.mark.parametrize("inside", [False, True])
def test_the_switch_is_set_inside_and_restored_after(before: bool, inside: bool) -> None:
    with op_determinism(before):
        with op_determinism(inside):
            assert _enabled() is inside
        assert _enabled() is before
    with pytest.raises(ValueError), op_determinism(not before):
        raise ValueError("a run that fails still restores the switch")
    assert _enabled() is False  # the outermost scope started from TensorFlow's default (off)


def test_unseeded_random_ops_run_after_a_deterministic_scope() -> None:
    import tensorflow as tf

    def noise() -> object:
        with tf.Graph().as_default():  # a graph without a seed, as TFF traces its DP noise
            return tf.random.normal([2])

    with op_determinism(True), pytest.raises(RuntimeError, match="require a seed"):
        noise()
    assert noise() is not None
