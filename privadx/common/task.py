"""The task a federation learns, as a small TOML file: classes, input size, model. No images.

The coordinating centre's gateway learns everything it needs from this file, so it never
holds a patient image::

    [task]
    name = "pneumoniamnist"
    class_names = ["normal", "pneumonia"]
    positive_class = 1          # binary tasks: index of the finding (sensitivity is its recall)

    [input]
    height = 28
    width = 28
    channels = 1

    [model]
    arch = "cnn"                # cnn | mobilenet
    width_multiplier = 1.0
    dropout = 0.3

:func:`task_from_dataset` writes one from a dataset's metadata (catalog entry, array headers,
folder names), reading no pixel data.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.spec import Architecture, ModelSpec
from privadx.common.compat import tomllib
from privadx.common.errors import DataError, InputError
from privadx.common.model_info import ModelInfo
from privadx.common.preprocess import PreprocessSpec


class TaskError(InputError):
    """A task file is unreadable, or a field is missing or wrong."""


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What the federation learns: see the module docstring for the file format."""

    name: str
    class_names: tuple[str, ...]
    positive_class: int = 1
    height: int = 28
    width: int = 28
    channels: int = 1
    arch: Architecture = Architecture.CNN
    width_multiplier: float = 1.0
    dropout: float = 0.3

    def __post_init__(self) -> None:
        _require(bool(self.name) and len(self.name) <= 128, "task.name", "a name", self.name)
        _require(
            len(self.class_names) >= 2
            and all(isinstance(c, str) and c for c in self.class_names)
            and len(set(self.class_names)) == len(self.class_names),
            "task.class_names",
            "at least 2 distinct non-empty class names",
            list(self.class_names),
        )
        _require(
            _is_int(self.positive_class) and 0 <= self.positive_class < len(self.class_names),
            "task.positive_class",
            f"an index into class_names (0 to {len(self.class_names) - 1})",
            self.positive_class,
        )
        for field_name in ("height", "width"):
            value = getattr(self, field_name)
            _require(
                _is_int(value) and 16 <= value <= 1024,
                f"input.{field_name}",
                "a whole number of pixels from 16 to 1024",
                value,
            )
        _require(self.channels in (1, 3), "input.channels", "1 (gray) or 3 (RGB)", self.channels)
        _require(
            isinstance(self.width_multiplier, float) and 0 < self.width_multiplier <= 4,
            "model.width_multiplier",
            "a number in (0, 4]",
            self.width_multiplier,
        )
        _require(
            isinstance(self.dropout, float) and 0 <= self.dropout < 1,
            "model.dropout",
            "a number in [0, 1)",
            self.dropout,
        )

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def model_spec(self) -> ModelSpec:
        """The model every site trains."""
        return ModelSpec(
            arch=self.arch,
            height=self.height,
            width=self.width,
            channels=self.channels,
            num_classes=self.num_classes,
            width_multiplier=self.width_multiplier,
            dropout=self.dropout,
        )

    def model_info(self) -> ModelInfo:
        """The description every global model of this task travels with."""
        return ModelInfo(
            model_spec=self.model_spec(),
            preprocess=self.preprocess(),
            class_names=self.class_names,
            positive_class=self.positive_class,
        )

    def preprocess(self) -> PreprocessSpec:
        """How images are brought to the model's input."""
        return PreprocessSpec(height=self.height, width=self.width, channels=self.channels)

    def to_dict(self) -> dict[str, Any]:
        """The file's tables."""
        return {
            "task": {
                "name": self.name,
                "class_names": list(self.class_names),
                "positive_class": self.positive_class,
            },
            "input": {"height": self.height, "width": self.width, "channels": self.channels},
            "model": {
                "arch": str(self.arch),
                "width_multiplier": self.width_multiplier,
                "dropout": self.dropout,
            },
        }

    def to_toml(self) -> str:
        """The task file's text."""
        lines = ["# PrivaDx task: what the federation learns (no image data)."]
        for table, values in self.to_dict().items():
            lines.append(f"\n[{table}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        """Read the tables of a task file; raises :class:`TaskError` naming the field."""
        unknown = sorted(set(data) - {"task", "input", "model"})
        if unknown:
            raise TaskError(f"unknown table [{unknown[0]}] (expected task, input, model)")
        task, inp, model = (_table(data, t) for t in ("task", "input", "model"))
        for table, allowed, values in (
            ("task", {"name", "class_names", "positive_class"}, task),
            ("input", {"height", "width", "channels"}, inp),
            ("model", {"arch", "width_multiplier", "dropout"}, model),
        ):
            extra = sorted(set(values) - allowed)
            if extra:
                raise TaskError(f"{table}.{extra[0]}: unknown field")
        for required in ("name", "class_names"):
            if required not in task:
                raise TaskError(f"task.{required}: missing")
        names = task["class_names"]
        _require(isinstance(names, list), "task.class_names", "a list of names", names)
        arch = model.get("arch", "cnn")
        try:
            architecture = Architecture(arch)
        except ValueError:
            raise TaskError(
                f"model.arch: expected one of {[str(a) for a in Architecture]}, got {arch!r}"
            ) from None
        positive = task.get("positive_class", 1)
        return cls(
            name=_typed(task["name"], str, "task.name", "a string"),
            class_names=tuple(names),
            positive_class=positive,
            height=inp.get("height", 28),
            width=inp.get("width", 28),
            channels=inp.get("channels", 1),
            arch=architecture,
            width_multiplier=_number(model.get("width_multiplier", 1.0), "model.width_multiplier"),
            dropout=_number(model.get("dropout", 0.3), "model.dropout"),
        )

    @classmethod
    def load(cls, path: Path) -> TaskSpec:
        """Read a task file; raises :class:`TaskError` with the file and the field."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskError(f"{path}: cannot read the task file ({exc})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise TaskError(f"{path}: not valid TOML ({exc})") from exc
        try:
            return cls.from_dict(data)
        except TaskError as exc:
            raise TaskError(f"{path}: {exc}") from None

    def save(self, path: Path) -> None:
        """Write the task file."""
        Path(path).write_text(self.to_toml(), encoding="utf-8")

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed gateway run must share with the run it continues."""
        return self.to_dict()


def _require(ok: bool, field_name: str, expected: str, got: Any) -> None:
    if not ok:
        raise TaskError(f"{field_name}: expected {expected}, got {got!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed(value: Any, kind: type, field_name: str, expected: str) -> Any:
    _require(isinstance(value, kind), field_name, expected, value)
    return value


def _number(value: Any, field_name: str) -> float:
    _require(
        isinstance(value, int | float) and not isinstance(value, bool),
        field_name,
        "a number",
        value,
    )
    return float(value)


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise TaskError(f"[{name}]: expected a table, got {value!r}")
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def task_from_dataset(
    name_or_path: str,
    *,
    arch: Architecture = Architecture.CNN,
    size: tuple[int, int, int] | None = None,
) -> TaskSpec:
    """A task from a dataset's metadata, reading no pixel data.

    A MedMNIST name needs no file at all (the catalog has classes and sizes); a MedMNIST-format
    ``.npz`` is read for its array headers and labels; a class folder gives its sub-folder
    names and a CSV manifest its labels (their image size is ``size`` or 28x28 gray, since
    sites resize every image to the model's input).

    Raises:
        InputError: Unknown name, or a path that is none of those.
        DataError: An unreadable file.
    """
    from privadx.common.data.catalog import CATALOG, dataset_info
    from privadx.common.data.medmnist import catalog_entry_for

    path = Path(name_or_path).expanduser()
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        info = dataset_info(name_or_path)
        h, w, c = size or (28, 28, info.channels)
        return TaskSpec(
            name=info.name,
            class_names=info.class_names,
            positive_class=info.positive_class,
            height=h,
            width=w,
            channels=c,
            arch=arch,
        )
    if path.is_dir():
        names = tuple(sorted(p.name for p in path.iterdir() if p.is_dir() and p.name[0] != "."))
        h, w, c = size or (28, 28, 1)
        return TaskSpec(name=path.name, class_names=names, height=h, width=w, channels=c, arch=arch)
    if path.suffix.lower() == ".csv":
        from privadx.common.data.local import read_manifest_labels

        h, w, c = size or (28, 28, 1)
        names = read_manifest_labels(path)
        return TaskSpec(name=path.stem, class_names=names, height=h, width=w, channels=c, arch=arch)
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path}: expected a MedMNIST name, a .npz, a class folder or a .csv")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    shape, top = _npz_metadata(path)
    entry = catalog_entry_for(path)
    known = entry[0] if entry else CATALOG.get(path.stem)
    names = known.class_names if known else tuple(f"class_{i}" for i in range(top + 1))
    h, w, c = size or shape
    return TaskSpec(
        name=known.name if known else path.stem,
        class_names=names,
        positive_class=known.positive_class if known else 1,
        height=h,
        width=w,
        channels=c,
        arch=arch,
    )


def _npz_metadata(path: Path) -> tuple[tuple[int, int, int], int]:
    """``((height, width, channels), largest label)`` of an ``.npz``: image headers only."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            key = next((k for k in ("train_images", "images") if f"{k}.npy" in members), None)
            label_key = "train_labels" if key == "train_images" else "labels"
            if key is None or f"{label_key}.npy" not in members:
                raise DataError(f"{path.name}: no train_images/train_labels or images/labels")
            with archive.open(f"{key}.npy") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, _ = read_header(fh)  # the header only, not the pixels
        with np.load(path, allow_pickle=False) as npz:
            labels = npz[label_key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path.name}: unreadable .npz ({exc})") from exc
    if len(shape) not in (3, 4):
        raise DataError(f"{path.name}: images of shape {shape} are not (N, H, W[, C])")
    channels = shape[3] if len(shape) == 4 else 1
    return (int(shape[1]), int(shape[2]), int(channels)), int(labels.max(initial=0))
