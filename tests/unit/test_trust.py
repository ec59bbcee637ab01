"""Certificates, signatures and manifests: what verifies, and every way a forgery fails."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.rounds import RoundState, signature_check
from privadx.common.errors import InputError
from privadx.common.mqtt_link import BrokerAddress
from privadx.common.trust.federation import FederationPki, init_federation, issue_sites
from privadx.common.trust.identity import Identity, check_security
from privadx.common.trust.manifest import (
    build_manifest,
    manifest_path,
    verify_model_file,
    write_signed,
)
from privadx.common.trust.pki import GATEWAY_IDENTITY, TrustError, Usage, check_issued, issue
from privadx.common.trust.signing import Verifier
from privadx.common.wire.chunks import Reassembler, split
from tests.unit.test_rounds import REF, _update


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationPki:
    return init_federation(
        tmp_path_factory.mktemp("pki"),
        federation="unit",
        hosts=["localhost", "127.0.0.1"],
        port=8883,
        sites=["s1", "s2"],
    )


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> FederationPki:
    """Another federation with the same names: its certificates must count for nothing."""
    return init_federation(
        tmp_path_factory.mktemp("rogue"),
        federation="unit",
        hosts=["localhost"],
        port=8883,
        sites=["s1"],
    )


def _id(pki: FederationPki, name: str) -> Identity:
    return Identity.load(pki.gateway if name == GATEWAY_IDENTITY else pki.site(name))


def test_identity_folders_load_and_name_their_owner(pki: FederationPki) -> None:
    assert _id(pki, "s1").name == "s1"
    assert _id(pki, GATEWAY_IDENTITY).name == GATEWAY_IDENTITY
    assert (pki.site("s1") / "tls.key").stat().st_mode & 0o077 == 0  # private keys are private


def test_mixed_up_identity_folder_is_refused(pki: FederationPki, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(pki.site("s1"), mixed)
    shutil.copy(pki.site("s2") / "sign.key", mixed / "sign.key")
    with pytest.raises(TrustError, match="does not belong"):
        Identity.load(mixed)
    (mixed / "sign.pem").unlink()
    with pytest.raises(InputError, match=r"lacks sign\.pem"):
        Identity.load(mixed)


def test_signed_update_verifies_after_chunking(pki: FederationPki) -> None:
    env = _id(pki, "s1").signer.sign_envelope(_update(site="s1"))
    whole = None
    reassembler = Reassembler(max_payload=1 << 20)
    for chunk in split(env, 64):
        whole = reassembler.add(chunk) or whole
    assert whole is not None and len(split(env, 64)) > 1
    Verifier(_id(pki, "s1").ca_cert).verify_envelope(whole, "s1")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: replace(e, payload=e.payload[:-1] + bytes([e.payload[-1] ^ 1])),
        lambda e: replace(e, round=e.round + 1),
        lambda e: replace(e, run="run-2"),
        lambda e: e.with_meta(examples=10_000),
    ],
    ids=["payload", "round", "run", "example-count"],
)
def test_altered_update_fails(pki: FederationPki, tamper) -> None:
    env = _id(pki, "s1").signer.sign_envelope(_update(site="s1"))
    with pytest.raises(TrustError, match="bad signature"):
        Verifier(_id(pki, "s1").ca_cert).verify_envelope(tamper(env), "s1")


def test_site_cannot_sign_for_another_site_or_the_gateway(pki: FederationPki) -> None:
    verifier = Verifier(_id(pki, "s1").ca_cert)
    forged = _id(pki, "s2").signer.sign_envelope(_update(site="s1"))
    with pytest.raises(TrustError, match="names 's2'"):
        verifier.verify_envelope(forged, "s1")
    with pytest.raises(TrustError, match="names 's2'"):
        verifier.verify_envelope(forged, GATEWAY_IDENTITY)


def test_certificate_of_another_ca_fails(pki: FederationPki, rogue: FederationPki) -> None:
    env = _id(rogue, "s1").signer.sign_envelope(_update(site="s1"))
    with pytest.raises(TrustError, match="not issued by this federation's CA"):
        Verifier(_id(pki, "s1").ca_cert).verify_envelope(env, "s1")


def test_tls_certificate_is_no_signing_certificate(pki: FederationPki) -> None:
    ca = FederationPki(pki.root).load_ca()
    tls = issue(ca, "s1", Usage.CLIENT, federation="unit")
    with pytest.raises(TrustError, match="not a signing certificate"):
        check_issued(tls.cert, ca.cert, Usage.SIGNING, identity="s1")


def test_gateway_rejects_forged_replayed_and_unsigned_updates(pki: FederationPki) -> None:
    check = signature_check(Verifier(_id(pki, "s1").ca_cert), allow_unsigned=False)
    state = RoundState(
        run="run-1", number=4, model_sha256="base", deadline=1e12, min_updates=1,
        expected={"s1", "s2"},
    )  # fmt: skip
    s1, s2 = _id(pki, "s1").signer, _id(pki, "s2").signer
    assert state.offer(_update(site="s2"), "s2", REF, verify=check) == (
        "unsigned: update carries no signature"
    )
    forged = s2.sign_envelope(_update(site="s1"))
    assert state.offer(forged, "s1", REF, verify=check).startswith("bad signature")
    old = s1.sign_envelope(_update(site="s1", round_num=3))
    assert state.offer(old, "s1", REF, verify=check).startswith("wrong round")
    assert state.offer(s1.sign_envelope(_update(site="s1")), "s1", REF, verify=check) is None
    assert dict(state.rejected) == {"unsigned": 1, "bad signature": 1, "wrong round": 1}
    lenient = signature_check(Verifier(_id(pki, "s1").ca_cert), allow_unsigned=True)
    assert state.offer(_update(site="s2"), "s2", REF, verify=lenient) is None


def _signed_model(pki: FederationPki, folder: Path) -> Path:
    model = folder / "model.onnx"
    model.write_bytes(b"onnx-bytes-of-a-model")
    manifest = build_manifest(
        file_name=model.name, data=model.read_bytes(), provenance={"run": "r", "round": 5}
    )
    write_signed(model, manifest, _id(pki, GATEWAY_IDENTITY).signer)
    return model


def test_model_manifest_verifies_and_detects_tampering(pki: FederationPki, tmp_path: Path) -> None:
    model = _signed_model(pki, tmp_path)
    ca = pki.gateway / "ca.pem"
    doc = verify_model_file(model, model.read_bytes(), ca_file=ca, allow_unsigned=False)
    assert doc is not None and doc["round"] == 5
    with pytest.raises(TrustError, match="was altered"):
        verify_model_file(model, model.read_bytes() + b"x", ca_file=ca, allow_unsigned=False)
    signed = json.loads(manifest_path(model).read_text())
    signed["manifest"]["round"] = 6
    manifest_path(model).write_text(json.dumps(signed))
    with pytest.raises(TrustError, match="bad signature"):
        verify_model_file(model, model.read_bytes(), ca_file=ca, allow_unsigned=False)


def test_model_signed_by_a_site_is_refused(pki: FederationPki, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    write_signed(model, build_manifest(file_name=model.name, data=b"x", provenance={}),
                 _id(pki, "s1").signer)  # fmt: skip
    with pytest.raises(TrustError, match="names 's1'"):
        verify_model_file(model, b"x", ca_file=pki.gateway / "ca.pem", allow_unsigned=False)


def test_unsigned_model_needs_explicit_permission(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    with pytest.raises(TrustError, match="unsigned"):
        verify_model_file(model, b"x", ca_file=None, allow_unsigned=False)
    assert verify_model_file(model, b"x", ca_file=None, allow_unsigned=True) is None


def test_insecure_configurations_must_be_asked_for(tmp_path: Path) -> None:
    plain, tls = BrokerAddress.parse("mqtt://h"), BrokerAddress.parse("mqtts://h")
    with pytest.raises(InputError, match="--insecure"):
        check_security(plain, tmp_path, insecure=False, allow_unsigned=False)
    with pytest.raises(InputError, match="--identity"):
        check_security(tls, None, insecure=False, allow_unsigned=True)
    with pytest.raises(InputError, match="--allow-unsigned"):
        check_security(plain, None, insecure=True, allow_unsigned=False)
    check_security(tls, tmp_path, insecure=False, allow_unsigned=False)
    check_security(plain, None, insecure=True, allow_unsigned=True)


def test_enrolling_more_sites_and_refusing_overwrites(pki: FederationPki) -> None:
    (folder,) = issue_sites(pki.root, ["s9"])
    assert Identity.load(folder).name == "s9"
    with pytest.raises(InputError, match="exists"):
        issue_sites(pki.root, ["s9"])
    with pytest.raises(InputError, match="already holds a federation CA"):
        init_federation(pki.root, federation="unit", hosts=["h"], port=1)
    with pytest.raises(InputError, match="reserved"):
        issue_sites(pki.root, [GATEWAY_IDENTITY])
