"""The MQTT topic tree of a federation.

::

    privadx/<federation>/round                     gateway: current round announcement (retained)
    privadx/<federation>/model/<chunk>             gateway: current global model (retained chunks)
    privadx/<federation>/onnx/<chunk>              gateway: final ONNX model (retained chunks)
    privadx/<federation>/gateway/status            gateway: online/offline (retained, last will)
    privadx/<federation>/site/<site>/presence      site: online/offline (retained, last will)
    privadx/<federation>/site/<site>/update        site: its model update (chunks)
    privadx/<federation>/secagg                    gateway: secure-aggregation step to all sites
    privadx/<federation>/site/<site>/secagg        site: its secure-aggregation messages
    privadx/<federation>/site/<site>/inbox         gateway: the encrypted key shares for a site
    privadx/<federation>/site/<site>/evaluation    site: its evaluation report of a global model

Each site's identity is one whole topic level, so a broker ACL pattern such as
``privadx/+/site/%u/#`` confines a device to its own subtree (see ``deploy/mosquitto``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from privadx.common.compat import StrEnum
from privadx.common.errors import InputError

PREFIX = "privadx"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_SITE_IDS = frozenset({"gateway", "privadx-gateway", "broker", "ca", "sites"})
"""Names a site cannot have: the gateway's sender name and identity, the PKI's folders."""
REVOKED_SUFFIX = ".revoked"
"""A revoked site's identity folder is renamed with this suffix."""


class Channel(StrEnum):
    """The leaf names of the topic tree."""

    ROUND = "round"
    MODEL = "model"
    ONNX = "onnx"
    GATEWAY = "gateway"
    STATUS = "status"
    SITE = "site"
    PRESENCE = "presence"
    UPDATE = "update"
    SECAGG = "secagg"
    INBOX = "inbox"
    EVALUATION = "evaluation"


def check_name(kind: str, value: str) -> str:
    """Validate a federation name or run id: 1-64 letters, digits, ``_ . -``.

    It starts with a letter or digit (so never ``.`` or ``..``): no wildcards or separators.
    """
    if not isinstance(value, str) or not _NAME.match(value):
        raise InputError(
            f"{kind} {value!r} must start with a letter or digit and be 1-64 characters of "
            "letters, digits, '_', '.' or '-'"
        )
    return value


def check_site_id(value: str) -> str:
    """Validate a site id: a name (:func:`check_name`) that is not reserved."""
    check_name("site id", value)
    if value.lower() in RESERVED_SITE_IDS or value.endswith(REVOKED_SUFFIX):
        raise InputError(
            f"site id {value!r} is reserved (the gateway's names, the PKI's folders and names "
            f"ending in {REVOKED_SUFFIX!r} cannot be site ids)"
        )
    return value


@dataclass(frozen=True)
class Topics:
    """Topic names of one federation."""

    federation: str = "default"

    def __post_init__(self) -> None:
        check_name("federation name", self.federation)

    @property
    def root(self) -> str:
        """``privadx/<federation>``."""
        return f"{PREFIX}/{self.federation}"

    @property
    def round(self) -> str:
        """Round announcements."""
        return f"{self.root}/{Channel.ROUND}"

    def model(self, chunk: int | str) -> str:
        """One chunk of the global model (``"#"`` for the subscription)."""
        return f"{self.root}/{Channel.MODEL}/{chunk}"

    def onnx(self, chunk: int | str) -> str:
        """One chunk of the exported ONNX model."""
        return f"{self.root}/{Channel.ONNX}/{chunk}"

    @property
    def gateway_status(self) -> str:
        """The gateway's online/offline status."""
        return f"{self.root}/{Channel.GATEWAY}/{Channel.STATUS}"

    def presence(self, site: str) -> str:
        """A site's online/offline status (``"+"`` for all sites)."""
        return f"{self.root}/{Channel.SITE}/{site}/{Channel.PRESENCE}"

    def update(self, site: str) -> str:
        """A site's model updates (``"+"`` for all sites)."""
        return f"{self.root}/{Channel.SITE}/{site}/{Channel.UPDATE}"

    @property
    def secagg(self) -> str:
        """Secure-aggregation steps the gateway addresses to every site."""
        return f"{self.root}/{Channel.SECAGG}"

    def site_secagg(self, site: str) -> str:
        """A site's secure-aggregation messages to the gateway (``"+"`` for all sites)."""
        return f"{self.root}/{Channel.SITE}/{site}/{Channel.SECAGG}"

    def inbox(self, site: str) -> str:
        """What the gateway routes to one site alone (its encrypted key shares)."""
        return f"{self.root}/{Channel.SITE}/{site}/{Channel.INBOX}"

    def evaluation(self, site: str) -> str:
        """A site's evaluation reports (``"+"`` for all sites)."""
        return f"{self.root}/{Channel.SITE}/{site}/{Channel.EVALUATION}"

    def site_of(self, topic: str) -> str | None:
        """The site id a ``site/<site>/...`` topic belongs to, else ``None``.

        ``None`` too for a name no site can have.
        """
        parts = topic.split("/")
        base = self.root.split("/")
        if (
            parts[: len(base)] == base
            and len(parts) == len(base) + 3
            and parts[len(base)] == Channel.SITE
        ):
            site = parts[len(base) + 1]
            try:
                return check_site_id(site)
            except InputError:
                return None
        return None

    def chunk_index(self, topic: str) -> int | None:
        """The chunk number of a ``model/<i>`` or ``onnx/<i>`` topic."""
        tail = topic.rsplit("/", 1)[-1]
        return int(tail) if tail.isdigit() else None
