"""``privadx diagnose --heatmaps DIR --report FILE``: figures and a report a clinician can read.

The report is opened in headless Chromium: its DOM must hold a row per input and the page is
drawn to a screenshot.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.chromium import dump_dom, screenshot
from tests.conftest import run_cli

PAD, SIDE = 8, 224  # edge/heatmap.figure_png's layout


@pytest.fixture(scope="module")
def signed_model(
    sim_run: Path, breast_npz: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    from privadx.common.trust.federation import init_federation

    folder = tmp_path_factory.mktemp("signed")
    pki = init_federation(folder / "pki", federation="f", hosts=["h"], port=8883)
    model = folder / "model.onnx"
    proc = run_cli(
        "export", str(sim_run / "weights.npz"), "--out", str(model), "--verify-data",
        str(breast_npz), "--identity", str(pki.gateway),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return model, pki.gateway / "ca.pem"


@pytest.fixture(scope="module")
def inputs(breast_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six test images, a DICOM and a file that is no image."""
    folder = tmp_path_factory.mktemp("inputs")
    for i, image in enumerate(np.load(breast_npz)["test_images"][:6]):
        Image.fromarray(image).save(folder / f"case <{i}>.png")
    shutil.copyfile(get_testdata_file("CT_small.dcm", download=False), folder / "ct.dcm")
    (folder / "broken.png").write_bytes(b"not a png at all")
    return folder


@pytest.mark.slow
def test_heatmaps_show_the_input_the_map_and_the_verdict(
    signed_model: tuple[Path, Path], inputs: Path, breast_npz: Path, tmp_path: Path
) -> None:
    model, ca = signed_model
    maps = tmp_path / "maps"
    proc = run_cli(
        "diagnose", str(model), str(inputs), "--ca", str(ca), "--heatmaps", str(maps), "--json"
    )
    assert proc.returncode == 7, proc.stderr  # the broken file fails, the others are diagnosed
    out = json.loads(proc.stdout)
    assert out["class_maps"] is True and out["heatmaps"] == str(maps)
    done = [r for r in out["results"] if "error" not in r]
    assert len(done) == 7 and len(out["results"]) == 8
    assert sorted(p.name for p in maps.iterdir()) == sorted(Path(r["heatmap"]).name for r in done)
    images = np.load(breast_npz)["test_images"]
    coloured = 0
    for r in done:
        figure = np.asarray(Image.open(r["heatmap"]).convert("RGB")).astype(int)
        seen = figure[PAD : PAD + SIDE, PAD : PAD + SIDE]
        overlay = figure[PAD : PAD + SIDE, 2 * PAD + SIDE : 2 * PAD + 2 * SIDE]
        coloured += int(np.abs(overlay - seen).max() > 40)
        assert figure[PAD + SIDE :].min() < 100  # the caption is written under the panels
        match = re.search(r"case <(\d)>\.png$", r["source"])
        if match:  # a 28x28 PNG is shown exactly as the model saw it, each pixel 8x8
            want = np.kron(images[int(match.group(1))], np.ones((8, 8), int))
            assert np.array_equal(seen[..., 0], want)
    assert coloured >= 5, "the evidence map should colour most overlays"


@pytest.mark.slow
def test_the_report_renders_a_row_per_image_in_chromium(
    signed_model: tuple[Path, Path], inputs: Path, tmp_path: Path
) -> None:
    model, ca = signed_model
    report = tmp_path / "report.html"
    proc = run_cli("diagnose", str(model), str(inputs), "--ca", str(ca), "--report", str(report))
    assert proc.returncode == 7, proc.stderr
    assert f"report: {report}" in proc.stdout and "Traceback" not in proc.stderr
    dom = dump_dom(report)
    rows = re.findall(r'<tr class="(result[^"]*)"', dom)
    assert len(rows) == 8 and rows.count("result failed") == 1
    # A CT slice is nothing like the breast ultrasound the model learned: no class for it.
    assert rows.count("result unusual") == 1 and re.search(r"ct\.dcm</td>.*?no class", dom)
    pictures = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', dom)
    assert len(pictures) == 2 * 6 + 1  # input and heat map per classified image, input only
    assert "signed by the federation gateway, checked against the federation CA" in dom
    assert re.search(r"<th>round</th><td>2</td>", dom)
    assert "&lt;3&gt;" in dom and "<3>" not in dom  # file names are shown, never run as HTML
    assert not re.search(r'(src|href)="(?!data:)', dom)  # nothing loaded from elsewhere
    shot = np.asarray(Image.open(screenshot(report, tmp_path / "report.png")).convert("RGB"))
    assert shot.shape == (1600, 1400, 3)
    colours = len(np.unique(shot.reshape(-1, 3) // 16, axis=0))
    assert colours > 50, f"the screenshot looks blank ({colours} colour bins)"
    assert not (tmp_path / "report.html.part").exists()


@pytest.mark.slow
def test_a_model_without_class_maps_still_gets_figures(
    sim_run: Path, breast_npz: Path, inputs: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.onnx"
    made = run_cli(
        "export", str(sim_run / "weights.npz"), "--out", str(plain), "--verify-data",
        str(breast_npz), "--no-class-maps",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    proc = run_cli(
        "diagnose", str(plain), str(inputs / "ct.dcm"), "--allow-unsigned", "--heatmaps",
        str(tmp_path / "maps"), "--report", str(tmp_path / "r.html"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["class_maps"] is False and "no class activation maps" in proc.stderr
    (result,) = out["results"]
    figure = np.asarray(Image.open(result["heatmap"]).convert("RGB")).astype(int)
    seen = figure[PAD : PAD + SIDE, PAD : PAD + SIDE]
    overlay = figure[PAD : PAD + SIDE, 2 * PAD + SIDE : 2 * PAD + 2 * SIDE]
    assert np.array_equal(seen, overlay)  # no map: the image is shown unchanged
    assert "exported without class activation maps" in (tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_images_unlike_the_training_images_get_no_class(
    sim_run: Path, breast_npz: Path, pneumonia_npz: Path, tmp_path: Path
) -> None:
    import skimage.data

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, image in enumerate(np.load(breast_npz)["test_images"][:20]):
        Image.fromarray(image).save(folder / f"breast-{i:02d}.png")
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(folder / "z-white.png")
    stripes = np.tile(np.array([0, 255], np.uint8).repeat(2), (28, 7))
    Image.fromarray(stripes).save(folder / "z-stripes.png")
    Image.fromarray(skimage.data.astronaut()).save(folder / "z-astronaut.jpg")
    proc = run_cli(
        "diagnose", str(sim_run / "model.onnx"), str(folder), "--allow-unsigned", "--json",
        "--report", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    results = {Path(r["source"]).name: r for r in out["results"]}
    assert out["ood_threshold"] > 0
    odd = [results[n] for n in ("z-white.png", "z-stripes.png", "z-astronaut.jpg")]
    print({n: r["ood_distance"] for n, r in results.items()})
    assert all(r["unusual"] and r["prediction"] is None for r in odd)
    assert all("probabilities" not in r for r in odd)  # no confident class, no numbers
    breast = [r for n, r in results.items() if n.startswith("breast-")]
    assert sum(r["unusual"] for r in breast) <= 2  # its own kind of image is answered
    assert all(r["ood_distance"] < out["ood_threshold"] for r in breast if not r["unusual"])
    assert out["unusual"] == sum(r["unusual"] for r in results.values())
    human = run_cli("diagnose", str(sim_run / "model.onnx"), str(folder / "z-white.png"),
                    "--allow-unsigned")  # fmt: skip
    assert "NO CLASS: this image does not look like the images the model was trained on" in (
        human.stdout
    )
    assert "out-of-distribution check: inputs farther than" in human.stdout
    page = (tmp_path / "r.html").read_text()
    assert page.count('<tr class="result unusual"') == out["unusual"]
