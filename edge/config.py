"""The edge agent's typed configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from privadx.common.errors import InputError
from privadx.common.evaluation.holdout import DEFAULT_EVAL_FRACTION, check_fraction
from privadx.common.mqtt_link import BrokerAddress, MqttVersion
from privadx.common.trust.identity import check_security
from privadx.common.wire.chunks import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE
from privadx.common.wire.topics import check_name, check_site_id


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """Everything an edge agent depends on."""

    broker: BrokerAddress
    site_id: str
    data: str
    """The site's training images: a class folder, a CSV manifest or a ``.npz`` file."""
    model_dir: Path
    federation: str = "default"
    mqtt_version: MqttVersion = MqttVersion.V5
    identity: Path | None = None
    """Identity folder (``privadx certs``): mutual TLS with the broker, update signing, and the
    CA against which the gateway's models are verified."""
    insecure: bool = False
    """Allow plain ``mqtt://``."""
    allow_unsigned: bool = False
    """Run without an identity: accept unsigned models, send unsigned updates."""
    once: bool = False
    """Exit after the run is finished and the ONNX model is saved (instead of serving on)."""
    threads: int = 1
    """TensorFlow threads for local training (devices share cores with other services)."""
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    """Share of each class of the local images held out for federated evaluation (never
    trained on); 0 sends no evaluation reports."""
    low_memory: bool = False
    """Train and score in a child process each time, so TensorFlow never stays in this one
    (:mod:`edge.keras_worker`): far less memory between rounds, a slower round."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Payload bytes per MQTT message when an update or report is sent in chunks."""
    eval_data: str | None = None
    """A separate folder, CSV or ``.npz`` of evaluation images instead (then every local
    training image is trained on)."""

    def __post_init__(self) -> None:
        check_security(
            self.broker, self.identity, insecure=self.insecure, allow_unsigned=self.allow_unsigned
        )
        check_site_id(self.site_id)
        check_name("federation name", self.federation)
        check_fraction(self.eval_fraction)
        if not 1024 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise InputError(
                f"chunk size must lie in [1024, {MAX_CHUNK_SIZE}], got {self.chunk_size}"
            )
