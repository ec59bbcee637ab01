"""Start a real Mosquitto on a free port with the repository's own config and ACL files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

CONFIG = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
ACL = REPO / "deploy" / "mosquitto" / "acl"
GATEWAY_USER = "privadx-gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mosquitto:
    port: int
    folder: Path
    passwords: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str) -> str:
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.folder / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.folder / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.folder / "mosquitto.log").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def configure(folder: Path, users: list[str]) -> Mosquitto:
    """Write the repository config with this test's port, password file and persistence folder."""
    if shutil.which("mosquitto") is None:
        raise RuntimeError("the mosquitto binary is needed (apt-get install mosquitto)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    passwords = {u: f"pw-{u}" for u in [GATEWAY_USER, *users]}
    passwd = folder / "passwd"
    passwd.write_text("")
    for user, pw in passwords.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True)
    text = CONFIG.read_text()
    replacements = {
        "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
        "password_file deploy/mosquitto/passwd": f"password_file {passwd}",
        "acl_file deploy/mosquitto/acl": f"acl_file {ACL}",
        "persistence_location ./": f"persistence_location {folder}/",
    }
    for old, new in replacements.items():
        assert old in text, f"the repository config no longer contains {old!r}"
        text = text.replace(old, new)
    if os.geteuid() == 0:
        # Tests run as root: stay root so the broker can read the test's private files.
        text += "\nuser root\n"
    (folder / "mosquitto.conf").write_text(text)
    return Mosquitto(port=port, folder=folder, passwords=passwords)
