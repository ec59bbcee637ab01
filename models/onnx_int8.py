"""Static int8 quantization of an exported model with ONNX Runtime's tools.

The fp32 graph is first shape-inferred and optimized (ORT's ``quant_pre_process``), then
quantized in QDQ format (QuantizeLinear/DequantizeLinear pairs around each operator), weights
int8 per output channel, activations uint8 per tensor (the U8S8 pair ONNX Runtime's x86
kernels run), ranges calibrated with min/max on real images fitted to the model's input:
on a site, its own images. The quantized file keeps the ``privadx.*`` metadata of the fp32
model (so ``privadx diagnose`` reads it the same way) plus ``privadx.quantization``.

Needs only ``onnx`` and ``onnxruntime``: no TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from privadx.common.deps import require
from privadx.common.errors import ModelError
from privadx.common.fileio import write_atomic
from privadx.common.preprocess import PreprocessSpec, to_model_input

log = logging.getLogger(__name__)

QUANT_KEY = "privadx.quantization"
CALIBRATION_BATCH = 32


def quantize_int8(
    fp32: Path, out: Path, calibration: np.ndarray, preprocess: PreprocessSpec
) -> dict[str, Any]:
    """Write the int8 form of ``fp32`` to ``out``; return what was done.

    Args:
        fp32: The exported float32 model (with its ``privadx.*`` metadata).
        out: Where to write the int8 model (and ``out.sha256``).
        calibration: uint8 images already at the model's input size ``(N, H, W, C)``.
        preprocess: How images become the model's input (as in the metadata).

    Raises:
        ModelError: No calibration images, or ONNX Runtime cannot quantize the model.
    """
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ModelError("int8 quantization needs calibration images; none were given")
    source = onnx.load(str(fp32))
    input_name = source.graph.input[0].name

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                to_model_input(calibration[i : i + CALIBRATION_BATCH], preprocess)
                for i in range(0, len(calibration), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared, raw = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        try:
            # ONNX shape inference and graph optimization first, as ORT's tools recommend
            # (the symbolic shape pass needs sympy and this model's shapes are static).
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(raw),
                Batches(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as exc:  # onnxruntime raises untyped errors
            raise ModelError(f"ONNX Runtime could not quantize {fp32.name}: {exc}") from exc
        quantized = onnx.load(str(raw))
    _compact(quantized.graph)
    record = {
        "format": "QDQ",
        "weights": "int8, per channel",
        "activations": "uint8, per tensor",
        "calibration": "min/max",
        "calibration_images": len(calibration),
    }
    del quantized.metadata_props[:]
    for prop in source.metadata_props:
        if prop.key != QUANT_KEY:
            quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key=QUANT_KEY, value=json.dumps(record, sort_keys=True))
    data = quantized.SerializeToString()
    write_atomic(out, data)
    digest = hashlib.sha256(data).hexdigest()
    write_atomic(out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n".encode())
    record["sha256"] = digest
    log.info("wrote %s (%d bytes; fp32 %d bytes)", out, out.stat().st_size, fp32.stat().st_size)
    return record


def _compact(graph: Any) -> None:
    """Short names for the quantizer's nodes and intermediate tensors; no value_info.

    The quantizer names each of its hundreds of QuantizeLinear/DequantizeLinear nodes and
    tensors after the fp32 tensors they wrap, which made the names a third of the file. The
    graph's inputs and outputs keep their names; nothing else refers to these names.
    """
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for i, node in enumerate(graph.node):
        node.name = f"n{i}"
        node.doc_string = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]
