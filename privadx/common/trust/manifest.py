"""The signed manifest that travels with an exported model: what it is and where it came from.

``model.onnx.manifest.json`` = ``{"manifest": {...}, "signature": {...}}`` (see
:mod:`privadx.common.trust.signing`), signed by the gateway. The manifest names the run and
round, the sites that contributed, the privacy and aggregation settings, the test metrics, and
the SHA-256 of every file it covers. ``privadx diagnose`` and the edge agent refuse a model
whose bytes do not match it, whose signature does not verify against the federation CA, or
that has none (unless told to accept unsigned models).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from privadx.common.fileio import write_atomic
from privadx.common.trust.pki import GATEWAY_IDENTITY, TrustError
from privadx.common.trust.signing import Signer, Verifier

log = logging.getLogger(__name__)

FORMAT = "privadx-manifest/1"
SUFFIX = ".manifest.json"


def manifest_path(model: Path) -> Path:
    """Where the manifest of ``model`` lives: ``<model>.manifest.json`` beside it."""
    model = Path(model)
    return model.with_name(model.name + SUFFIX)


def build_manifest(*, file_name: str, data: bytes, provenance: dict[str, Any]) -> dict[str, Any]:
    """A manifest for one model file with its provenance facts."""
    return {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {file_name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
        **provenance,
    }


def write_signed(model: Path, manifest: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """Sign ``manifest`` and write it beside ``model``; return the signed document."""
    signed = signer.sign_document(manifest)
    write_atomic(manifest_path(model), json.dumps(signed, indent=2, sort_keys=True).encode())
    return signed


def check_signed(signed: object, data: bytes, file_name: str, verifier: Verifier) -> dict[str, Any]:
    """Verify a signed manifest and that it covers ``data`` as ``file_name``; return it.

    Raises:
        TrustError: Bad signature, wrong signer, unknown format, or the file does not match.
    """
    if not isinstance(signed, dict):
        raise TrustError("manifest is not a JSON object")
    manifest = verifier.verify_document(signed, GATEWAY_IDENTITY)
    if manifest.get("format") != FORMAT:
        raise TrustError(f"manifest format {manifest.get('format')!r} is not supported")
    entry = (
        manifest.get("files", {}).get(file_name)
        if isinstance(manifest.get("files"), dict)
        else None
    )
    if not isinstance(entry, dict):
        raise TrustError(f"the manifest does not cover {file_name}")
    actual = hashlib.sha256(data).hexdigest()
    if entry.get("sha256") != actual:
        raise TrustError(
            f"{file_name} was altered: its SHA-256 is {actual}, the signed manifest says "
            f"{entry.get('sha256')}"
        )
    return manifest


def read_signed(model: Path) -> object | None:
    """The signed document beside ``model``, or ``None`` if there is none.

    Raises:
        TrustError: The manifest exists but is not readable JSON.
    """
    path = manifest_path(model)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrustError(f"{path.name}: unreadable manifest ({exc})") from exc


def verify_model_file(
    model: Path, data: bytes, *, ca_file: Path | None, allow_unsigned: bool
) -> dict[str, Any] | None:
    """Check the model's bytes against its signed manifest; return the manifest.

    Returns ``None`` for an unsigned model when ``allow_unsigned`` is set.

    Raises:
        TrustError: Unsigned (and not allowed), no CA to check with, or the check fails.
    """
    from privadx.common.trust.pki import load_cert

    model = Path(model)
    signed = read_signed(model)
    if signed is None:
        if allow_unsigned:
            log.warning("%s is unsigned: its origin and integrity are not checked", model.name)
            return None
        raise TrustError(
            f"{model.name} is unsigned (no {manifest_path(model).name} beside it); "
            "pass --allow-unsigned to use it anyway"
        )
    if ca_file is None or not Path(ca_file).is_file():
        raise TrustError(
            f"no federation CA to check {model.name}'s signature with: pass --ca ca.pem "
            "(or set PRIVADX_CA)"
        )
    return check_signed(signed, data, model.name, Verifier(load_cert(Path(ca_file))))
