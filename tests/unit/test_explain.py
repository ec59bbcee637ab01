"""What a diagnosis tells a clinician: provenance, captions, heat-map files, the HTML report."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.diagnose import Diagnosis
from edge.explain import Explanation, HeatmapFolder, figure_stem
from edge.provenance import Provenance
from edge.report import HtmlReport
from privadx.common.errors import InputError
from privadx.common.model_info import ModelInfo
from privadx.common.task import task_from_dataset

GATEWAY_MANIFEST = {
    "run": "ward-7",
    "round": 12,
    "contributors": 5,
    "metrics": {"auc": 0.9412, "sensitivity": 0.9, "specificity": 0.8, "sites_reported": 5},
}


def _info(**change: object) -> ModelInfo:
    base = replace(task_from_dataset("pneumoniamnist").model_info(), threshold=0.42)
    return replace(base, **change)  # type: ignore[arg-type]


def _explanation(**change: object) -> Explanation:
    info = _info(temperature=1.5)
    return Explanation(info=info, provenance=Provenance.of(GATEWAY_MANIFEST, info), **change)  # type: ignore[arg-type]


def test_provenance_of_a_gateway_model_with_dp_and_secure_aggregation() -> None:
    privacy = {
        "secure_aggregation": {"threshold": 3},
        "differential_privacy": {"epsilon": 7.531, "delta": 1e-5},
    }
    p = Provenance.of(GATEWAY_MANIFEST, _info(provenance={"privacy": privacy}))
    assert p.line() == (
        "model: signed by the federation gateway; run ward-7, round 12, 5 contributing sites, "
        "federated AUC 0.9412 on 5 sites' held-out images"
    )
    banner = dict(p.banner())
    assert banner["privacy"] == (
        "differential privacy, epsilon 7.53 at delta 1e-05; secure aggregation (the gateway "
        "saw only sums)"
    )
    assert banner["federated evaluation"].startswith("AUC 0.9412, sensitivity 0.9000")


def test_provenance_of_a_simulated_model_and_of_an_unsigned_or_odd_one() -> None:
    sim = Provenance.of({"run": 3}, _info(provenance={"privacy": {"epsilon": 2.0}}))
    assert dict(sim.banner())["privacy"] == "differential privacy, epsilon 2.00"
    unsigned = Provenance.of(None, _info())
    assert unsigned.line() == "model: UNSIGNED (origin and integrity not checked)"
    assert dict(unsigned.banner())["signature"].startswith("UNSIGNED")
    simulated = {
        "trained_by": "privadx simulate",
        "rounds": 3,
        "sites": 4,
        "federated_metrics": {"auc": 0.9, "sites_reported": 4},
    }
    own = dict(Provenance.of(None, _info(provenance=simulated)).banner())
    assert own["trained by"] == "privadx simulate" and own["round"] == "3"
    assert own["contributing sites"] == "4"
    assert own["federated evaluation"] == "AUC 0.9000 (held-out images of 4 sites)"
    odd = Provenance.of({"round": "12", "contributors": True, "metrics": [1]}, _info())
    assert odd.round is None and odd.contributors is None and odd.federated is None
    assert dict(odd.banner())["round"] == "not recorded"


def test_caption_says_class_probability_rule_and_origin() -> None:
    ex = _explanation()
    result = Diagnosis("a.png", "pneumonia", {"normal": 0.1, "pneumonia": 0.9})
    lines = ex.caption(result)
    assert lines[0] == "prediction: pneumonia, P(pneumonia) 0.9000 (calibrated)"
    assert " ".join(lines[1:]).startswith(
        "decision: pneumonia when P(pneumonia) >= 0.4200 (federation threshold); "
        "probabilities calibrated (temperature 1.500"
    )
    assert all(len(line) <= 76 for line in lines)
    site = _explanation(site_threshold=0.7)
    assert "(site threshold)" in site.decision_rule() and site.threshold == 0.7
    plain = replace(ex, info=_info(temperature=None))
    assert plain.verdict(result).endswith("(not calibrated)")
    assert "not calibrated" in plain.decision_rule()


def test_heatmap_folder_writes_one_figure_per_diagnosed_image(tmp_path: Path) -> None:
    folder = HeatmapFolder(tmp_path / "maps", _explanation())
    image = np.zeros((28, 28, 1), np.uint8)
    heat = np.eye(7, dtype=np.float32)
    ok = folder(
        0, Diagnosis("/x/scan 1.png", "normal", {"normal": 0.6, "pneumonia": 0.4}), image, heat
    )
    failed = folder(1, Diagnosis("b.png", error="unreadable"), None, None)
    assert failed.heatmap is None
    assert ok.heatmap == str(tmp_path / "maps" / "0001-scan_1.png")
    assert Image.open(ok.heatmap).format == "PNG"
    assert ok.to_dict()["heatmap"] == ok.heatmap
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        HeatmapFolder(tmp_path / "file", _explanation())


def test_figure_names_are_safe_and_short() -> None:
    assert figure_stem("few.npz[3]") == "few_3"
    assert figure_stem("/data/../<script>.dcm") == "script"
    assert figure_stem("..") == "image"
    assert len(figure_stem("x" * 500 + ".png")) == 60


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.images: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "result" in (a.get("class") or ""):
            self.rows.append(a["class"] or "")
        if tag == "img":
            self.images.append(a["src"] or "")
        self.refs += [v or "" for k, v in attrs if k in ("src", "href")]


def test_report_is_self_contained_escaped_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    report = HtmlReport(path, _explanation(), model_name="model.onnx")
    image = np.full((28, 28, 1), 90, np.uint8)
    heat = np.zeros((7, 7), np.float32)
    heat[3, 3] = 1.0
    for i in range(3):
        report(
            i,
            Diagnosis(f"<b>{i}</b>.png", "normal", {"normal": 0.7, "pneumonia": 0.3}),
            image,
            heat,
        )
    report(3, Diagnosis("bad.png", error="not an image <x>"), None, None)
    assert not path.exists()  # only the finished report carries the name
    assert report.close() == path and not (tmp_path / "report.html.part").exists()
    text = path.read_text()
    parsed = _Rows()
    parsed.feed(text)
    assert len(parsed.rows) == 4 and parsed.rows[-1] == "result failed"
    assert len(parsed.images) == 6 and all(
        s.startswith("data:image/png;base64,") for s in parsed.refs
    )
    for src in parsed.images:
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert png.size == (160, 160)
    assert "<b>0</b>" not in text and "&lt;b&gt;0&lt;/b&gt;.png" in text
    assert "not an image &lt;x&gt;" in text
    assert "default-src 'none'" in text and "<script" not in text
    assert re.search(r"run</th><td>ward-7", text) and "0.4200 (federation)" in text
    assert "4 images (normal: 3, not diagnosed: 1)" in text


def test_report_aborted_leaves_nothing(tmp_path: Path) -> None:
    report = HtmlReport(tmp_path / "r.html", _explanation(), model_name="m.onnx")
    report.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="cannot write it"):
        HtmlReport(tmp_path / "no" / "r.html", _explanation(), model_name="m.onnx")
