"""A self-contained HTML report of a diagnosis run: one row per image, the model's origin above.

The file needs nothing but itself: styles are inline, images are ``data:`` PNGs, there is no
script, and a Content-Security-Policy forbids the page any request, so it opens the same on a
ward computer without a network. Rows are written as images are diagnosed (an
:data:`edge.diagnose.Explainer`), so a folder of thousands of images is never held in memory;
the file appears under its name only once it is complete.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from edge.diagnose import Diagnosis
from edge.explain import Explanation
from edge.heatmap import panels
from privadx.common.errors import InputError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

THUMBNAIL = 160
"""Side of the thumbnails in pixels."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:22px;margin:0 0 12px}
.banner{border:1px solid #889;background:#f4f6fa;padding:12px 16px;margin-bottom:16px}
.banner th{text-align:left;padding:2px 16px 2px 0;font-weight:600;vertical-align:top}
.banner td{padding:2px 0}
.unsigned{background:#fde8e8;border-color:#c33}
table.results{border-collapse:collapse}
table.results th,table.results td{border-bottom:1px solid #ccd;padding:6px 10px;text-align:left;
vertical-align:middle}
table.results img{width:160px;height:160px;image-rendering:pixelated;display:block}
.failed td{background:#fff4e0}
.unusual td{background:#fdeaea}
.note{color:#444;font-size:13px;max-width:900px}
.scale{display:inline-block;width:160px;height:10px;vertical-align:middle;
background:linear-gradient(90deg,#000060,#0040ff,#00e0e0,#fff000,#ff4000,#a00000)}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class HtmlReport:
    """Streams the report to ``<path>.part`` and renames it to ``path`` on :meth:`close`."""

    def __init__(self, path: Path, explanation: Explanation, *, model_name: str) -> None:
        """Open the file and write the banner.

        Raises:
            InputError: The report cannot be written there.
        """
        self.path = path
        self.explanation = explanation
        self.counts: Counter[str] = Counter()
        self._part = path.with_name(path.name + ".part")
        try:
            self._out: TextIO = self._part.open("w", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--report {path}: cannot write it ({exc.strerror})") from exc
        self._write(self._head(model_name))

    def __call__(
        self, index: int, result: Diagnosis, image: np.ndarray | None, heat: np.ndarray | None
    ) -> Diagnosis:
        """Add one row (an Explainer); the result is returned unchanged."""
        names = self.explanation.info.class_names
        source = html.escape(result.source)
        if result.unusual and image is not None:
            self.counts["unlike the training images"] += 1
            seen, _ = panels(image, None, THUMBNAIL)
            self._write(
                f'<tr class="result unusual"><td>{index + 1}</td><td>{source}</td>'
                f"<td>{_img(seen, 'input as the model saw it')}</td><td></td>"
                f'<td colspan="{2 + len(names)}">no class: '
                f"{html.escape(self.explanation.unusual_note(result))}</td></tr>\n"
            )
            return result
        if image is None or not result.classified or result.probabilities is None:
            self.counts["not diagnosed"] += 1
            self._write(
                f'<tr class="result failed"><td>{index + 1}</td><td>{source}</td>'
                f'<td colspan="{3 + len(names)}">no diagnosis: {html.escape(str(result.error))}'
                "</td></tr>\n"
            )
            return result
        self.counts[str(result.predicted)] += 1
        seen, overlay = panels(image, heat if self.explanation.has_maps else None, THUMBNAIL)
        probs = "".join(f"<td>{result.probabilities[n]:.4f}</td>" for n in names)
        self._write(
            f'<tr class="result"><td>{index + 1}</td><td>{source}</td>'
            f"<td>{_img(seen, 'input as the model saw it')}</td>"
            f"<td>{_img(overlay, 'heat map')}</td>"
            f"<td><b>{html.escape(str(result.predicted))}</b></td>{probs}"
            f"<td>{self._threshold_cell()}</td></tr>\n"
        )
        return result

    def close(self) -> Path:
        """Write the totals and move the finished file into place."""
        totals = ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(self.counts.items()))
        self._write(
            f"</tbody></table>\n<p>{sum(self.counts.values())} images ({totals or 'none'}).</p>"
            "\n</body></html>\n"
        )
        self._out.close()
        os.replace(self._part, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file (the run failed before its end)."""
        self._out.close()
        self._part.unlink(missing_ok=True)

    def _write(self, text: str) -> None:
        try:
            self._out.write(text)
        except OSError as exc:
            self.abort()
            raise InputError(f"--report {self.path}: cannot write it ({exc.strerror})") from exc

    def _threshold_cell(self) -> str:
        cut = self.explanation.threshold
        if cut is None or len(self.explanation.info.class_names) != 2:
            return "most probable class"
        source = "site" if self.explanation.site_threshold is not None else "federation"
        return f"{cut:.4f} ({source})"

    def _head(self, model_name: str) -> str:
        ex = self.explanation
        names = ex.info.class_names
        banner = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in [("model", model_name), *ex.provenance.banner()]
        )
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        header = "".join(f"<th>P({html.escape(n)})</th>" for n in names)
        unsigned = "" if ex.provenance.signed else " unsigned"
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            "<title>PrivaDx diagnosis report</title>"
            f"<style>{_STYLE}</style></head><body>\n"
            "<h1>PrivaDx diagnosis report</h1>\n"
            f'<div class="banner{unsigned}"><table>{banner}'
            f"<tr><th>decision</th><td>{html.escape(ex.rule())}</td></tr>"
            f"<tr><th>unusual inputs</th><td>{html.escape(ex.ood_check())}</td></tr>"
            f"<tr><th>written</th><td>{created}</td></tr></table></div>\n"
            f'<p class="note">{html.escape(ex.map_note())}. Colour scale from no evidence to '
            'the most: <span class="scale"></span>. The map is a class activation map of '
            "the model's last convolutional features: it shows what drove this model's output, "
            "not where a finding is, and it is no substitute for reading the image.</p>\n"
            '<table class="results"><thead><tr><th>#</th><th>image</th>'
            "<th>as the model saw it</th><th>heat map</th><th>prediction</th>"
            f"{header}<th>threshold</th></tr></thead><tbody>\n"
        )


def _img(picture: PILImage, alt: str) -> str:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    data = base64.b64encode(out.getvalue()).decode("ascii")
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'
