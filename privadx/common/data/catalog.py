"""The official table of 2D MedMNIST v2 datasets: classes, channels, split sizes and MD5s.

Facts from the MedMNIST v2 release (Yang et al., "MedMNIST v2 - A large-scale lightweight
benchmark for 2D and 3D biomedical image classification", Scientific Data 10, 41, 2023),
as published in the ``medmnist`` package's ``info.py``; files live in Zenodo record 10519652.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from privadx.common.compat import StrEnum
from privadx.common.errors import InputError

OFFICIAL_BASE_URL = "https://zenodo.org/records/10519652/files"
BASE_URL_ENV = "PRIVADX_MEDMNIST_URL"
"""Environment variable that points downloads at a mirror (a URL prefix) instead."""


class Task(StrEnum):
    """Label structure of a dataset."""

    BINARY = "binary-class"
    MULTI_CLASS = "multi-class"
    ORDINAL = "ordinal-regression"
    MULTI_LABEL = "multi-label, binary-class"


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What the official table says about one 2D MedMNIST dataset."""

    name: str
    task: Task
    class_names: tuple[str, ...]
    channels: int
    n_train: int
    n_val: int
    n_test: int
    md5: dict[int, str]
    """MD5 of the ``.npz`` file per image size (28, 64, 128, 224)."""
    positive_class: int = 1
    """For binary tasks, the finding a positive result means (sensitivity is measured on it)."""

    @property
    def num_classes(self) -> int:
        """Number of classes (labels for multi-label)."""
        return len(self.class_names)

    def file_name(self, size: int = 28) -> str:
        """The official file name for ``size`` (``pneumoniamnist_64.npz``, ...)."""
        self._check_size(size)
        return f"{self.name}.npz" if size == 28 else f"{self.name}_{size}.npz"

    def url(self, size: int = 28) -> str:
        """Where the file is downloaded from (``$PRIVADX_MEDMNIST_URL`` overrides the host)."""
        base = os.environ.get(BASE_URL_ENV, OFFICIAL_BASE_URL).rstrip("/")
        suffix = "?download=1" if base == OFFICIAL_BASE_URL else ""
        return f"{base}/{self.file_name(size)}{suffix}"

    def _check_size(self, size: int) -> None:
        if size not in self.md5:
            raise InputError(
                f"{self.name} comes in sizes {sorted(self.md5)}; size {size} does not exist"
            )


def _info(
    name: str,
    task: Task,
    classes: tuple[str, ...],
    channels: int,
    splits: tuple[int, int, int],
    md5: tuple[str, str, str, str],
    positive_class: int = 1,
) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        task=task,
        class_names=classes,
        channels=channels,
        n_train=splits[0],
        n_val=splits[1],
        n_test=splits[2],
        md5=dict(zip((28, 64, 128, 224), md5, strict=True)),
        positive_class=positive_class,
    )


_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

CATALOG: dict[str, DatasetInfo] = {
    i.name: i
    for i in (
        _info(
            "pneumoniamnist",
            Task.BINARY,
            ("normal", "pneumonia"),
            1,
            (4708, 524, 624),
            (
                "28209eda62fecd6e6a2d98b1501bb15f",
                "8f4eceb4ccffa70c672198ea285246c6",
                "05b46931834c231683c68f40c47b2971",
                "d6a3c71de1b945ea11211b03746c1fe1",
            ),
        ),
        _info(
            "breastmnist",
            Task.BINARY,
            ("malignant", "normal, benign"),
            1,
            (546, 78, 156),
            (
                "750601b1f35ba3300ea97c75c52ff8f6",
                "742edef2a1fd1524b2efff4bd7ba9364",
                "363e4b3f8d712e9b5de15470a2aaadf1",
                "b56378a6eefa9fed602bb16d192d4c8b",
            ),
            positive_class=0,  # the finding is malignancy
        ),
        _info(
            "pathmnist",
            Task.MULTI_CLASS,
            (
                "adipose",
                "background",
                "debris",
                "lymphocytes",
                "mucus",
                "smooth muscle",
                "normal colon mucosa",
                "cancer-associated stroma",
                "colorectal adenocarcinoma epithelium",
            ),
            3,
            (89996, 10004, 7180),
            (
                "a8b06965200029087d5bd730944a56c1",
                "55aa9c1e0525abe5a6b9d8343a507616",
                "ac42d08fb904d92c244187169d1fd1d9",
                "2c51a510bcdc9cf8ddb2af93af1eadec",
            ),
        ),
        _info(
            "chestmnist",
            Task.MULTI_LABEL,
            (
                "atelectasis",
                "cardiomegaly",
                "effusion",
                "infiltration",
                "mass",
                "nodule",
                "pneumonia",
                "pneumothorax",
                "consolidation",
                "edema",
                "emphysema",
                "fibrosis",
                "pleural",
                "hernia",
            ),
            1,
            (78468, 11219, 22433),
            (
                "02c8a6516a18b556561a56cbdd36c4a8",
                "9de6cd0b934ebb5b7426cfba5efbae16",
                "db107e5590b27930b62dbaf558aebee3",
                "45bd33e6f06c3e8cdb481c74a89152aa",
            ),
        ),
        _info(
            "dermamnist",
            Task.MULTI_CLASS,
            (
                "actinic keratoses and intraepithelial carcinoma",
                "basal cell carcinoma",
                "benign keratosis-like lesions",
                "dermatofibroma",
                "melanoma",
                "melanocytic nevi",
                "vascular lesions",
            ),
            3,
            (7007, 1003, 2005),
            (
                "0744692d530f8e62ec473284d019b0c7",
                "b70a2f5635c6199aeaa28c31d7202e1f",
                "2defd784463fa5243564e855ed717de1",
                "8974907d8e169bef5f5b96bc506ae45d",
            ),
        ),
        _info(
            "octmnist",
            Task.MULTI_CLASS,
            ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
            1,
            (97477, 10832, 1000),
            (
                "c68d92d5b585d8d81f7112f81e2d0842",
                "e229e9440236b774d9f0dfef9d07bdaf",
                "0a97e76651ace45c5d943ee3f65b63ae",
                "abc493b6d529d5de7569faaef2773ba3",
            ),
        ),
        _info(
            "retinamnist",
            Task.ORDINAL,
            ("0", "1", "2", "3", "4"),
            3,
            (1080, 120, 400),
            (
                "bd4c0672f1bba3e3a89f0e4e876791e4",
                "afda852cc34dcda56f86ad2b2457dbcc",
                "e48e916a24454daf90583d4e6efb1a18",
                "eae7e3b6f3fcbda4ae613ebdcbe35348",
            ),
        ),
        _info(
            "bloodmnist",
            Task.MULTI_CLASS,
            (
                "basophil",
                "eosinophil",
                "erythroblast",
                "immature granulocytes",
                "lymphocyte",
                "monocyte",
                "neutrophil",
                "platelet",
            ),
            3,
            (11959, 1712, 3421),
            (
                "7053d0359d879ad8a5505303e11de1dc",
                "2b94928a2ae4916078ca51e05b6b800b",
                "adace1e0ed228fccda1f39692059dd4c",
                "b718ff6835fcbdb22ba9eacccd7b2601",
            ),
        ),
        _info(
            "tissuemnist",
            Task.MULTI_CLASS,
            (
                "Collecting Duct, Connecting Tubule",
                "Distal Convoluted Tubule",
                "Glomerular endothelial cells",
                "Interstitial endothelial cells",
                "Leukocytes",
                "Podocytes",
                "Proximal Tubule Segments",
                "Thick Ascending Limb",
            ),
            1,
            (165466, 23640, 47280),
            (
                "ebe78ee8b05294063de985d821c1c34b",
                "123ece2eba09d0aa5d698fda57103344",
                "61b955355d7425a89687b06cca3ce0c2",
                "b077128c4a949f0a4eb01517f9037b9c",
            ),
        ),
        _info(
            "organamnist",
            Task.MULTI_CLASS,
            _ORGANS,
            1,
            (34561, 6491, 17778),
            (
                "68e3f8846a6bd62f0c9bf841c0d9eacc",
                "2dcccc29b88e6da5a01161ef20cda288",
                "eeae80d0a227a8d099027e1b3cfd3b60",
                "50747347e05c87dd3aaf92c49f9f3170",
            ),
        ),
        _info(
            "organcmnist",
            Task.MULTI_CLASS,
            _ORGANS,
            1,
            (12975, 2392, 8216),
            (
                "b9ceb9546e10131b32923c5bbeaea2b1",
                "3ce34a8724ea6f548e6db4744d03b6a9",
                "773c1f009daa3fe5d9a2a201b2a7ed94",
                "050f5e875dc056f6768abf94ec9995d1",
            ),
        ),
        _info(
            "organsmnist",
            Task.MULTI_CLASS,
            _ORGANS,
            1,
            (13932, 2452, 8827),
            (
                "9ab87b696fb54e2a387ebe992d6ed5f1",
                "53a6d115339d874c25e309a994ff46d3",
                "ded0c5fa01a95dc4978b956f613e9b8e",
                "b354719e553fbbb2513d5533f52a4cb1",
            ),
        ),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name (case-insensitive).

    Raises:
        InputError: If the name is not a 2D MedMNIST dataset.
    """
    key = name.lower()
    if key not in CATALOG:
        raise InputError(
            f"unknown dataset '{name}'; known 2D MedMNIST datasets: {', '.join(sorted(CATALOG))}"
        )
    return CATALOG[key]
