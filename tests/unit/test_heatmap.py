"""Evidence maps and heat-map figures from class activation maps (no TensorFlow)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from edge.heatmap import colourise, evidence_map, figure_png, panels


def test_evidence_is_the_predicted_class_against_the_others() -> None:
    maps = np.zeros((2, 3, 3))
    maps[0, 0, 0] = 5.0  # where class 0 responds
    maps[1, 2, 2] = 2.0  # where class 1 responds
    maps[:, 1, 1] = 9.0  # where both respond equally: no evidence for either
    heat = evidence_map(maps, 1)
    assert heat.shape == (3, 3) and heat.dtype == np.float32
    assert heat[2, 2] == 1.0 and heat[1, 1] == 0.0 and heat[0, 0] == 0.0
    assert evidence_map(maps, 0)[0, 0] == 1.0


def test_no_positive_evidence_gives_an_empty_map() -> None:
    maps = np.stack([np.ones((4, 4)), np.full((4, 4), 3.0)])
    assert not evidence_map(maps, 0).any()
    assert not evidence_map(np.full((2, 2, 2), np.nan), 0).any()


def test_multiclass_evidence_subtracts_the_mean_of_the_others() -> None:
    maps = np.zeros((3, 1, 2))
    maps[0] = [[4.0, 1.0]]
    maps[1] = [[2.0, 0.0]]
    maps[2] = [[2.0, 0.0]]
    np.testing.assert_allclose(evidence_map(maps, 0), [[1.0, 0.5]])


def test_colour_scale_runs_from_blue_to_red() -> None:
    rgb = colourise(np.array([[0.0, 1.0]]))
    (cold, hot) = rgb[0]
    assert cold[2] > cold[0] and hot[0] > hot[2]
    assert rgb.dtype == np.uint8


def test_overlay_leaves_the_image_where_there_is_no_evidence() -> None:
    image = np.full((28, 28, 1), 100, np.uint8)
    heat = np.zeros((7, 7), np.float32)
    heat[0, 0] = 1.0
    base, overlay = panels(image, heat, 112)
    b, o = np.asarray(base), np.asarray(overlay)
    assert b.shape == o.shape == (112, 112, 3)
    assert np.array_equal(b[-1, -1], o[-1, -1])  # far from the evidence: unchanged
    assert not np.array_equal(b[0, 0], o[0, 0])  # at it: coloured
    _, same = panels(image, None, 112)
    assert np.array_equal(np.asarray(same), b)


def test_figure_is_a_png_with_both_panels_and_the_text() -> None:
    image = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    heat = evidence_map(np.random.default_rng(1).normal(size=(2, 7, 7)), 1)
    png = figure_png(image, heat, ["pneumonia  P = 0.9312 (calibrated)", "model: signed"])
    figure = Image.open(io.BytesIO(png))
    assert figure.format == "PNG"
    assert figure.size == (2 * 224 + 24, 224 + 16 + 2 * 16 + 8)
    text_band = np.asarray(figure.convert("L"))[224 + 16 :, :]
    assert text_band.min() < 128  # something is written below the panels
