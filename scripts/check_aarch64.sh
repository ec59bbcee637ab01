#!/usr/bin/env bash
# `privadx diagnose` on a real aarch64 userland: a Debian arm64 root (debootstrap, Debian's
# own packages and Python) run under qemu user-mode emulation, with the light install's
# aarch64 wheels (numpy, Pillow, ONNX Runtime, pydicom, paho-mqtt, cryptography) from the
# registry. It diagnoses real PneumoniaMNIST test images and a DICOM file there and checks
# that the answers equal this machine's, then imports the edge agent's MQTT path there.
# Reports what ran and how long each step took. Needs root (debootstrap, chroot, binfmt).
#
#   bash scripts/check_aarch64.sh [MODEL.onnx]      # default: trains a small model first
#
# The arm64 root is kept in $PRIVADX_ARM64_ROOT (default /var/tmp/privadx-arm64) and reused.
# Local training is not run under emulation: TensorFlow's aarch64 wheel resolves
# (scripts/check_wheels.py) but an emulated round would take far longer than this check.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARM="${PRIVADX_ARM64_ROOT:-/var/tmp/privadx-arm64}"
SUITE="${PRIVADX_ARM64_SUITE:-bookworm}"
MIRROR="${PRIVADX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
say() { echo "[check_aarch64] $*" >&2; }
step() { local t0=$SECONDS; "$@"; say "  ($((SECONDS - t0)) s)"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "error: run as root (debootstrap, chroot and binfmt need it)" >&2
    exit 2
fi
source "$REPO/scripts/env.sh"

tools() {
    if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
        say "installing qemu-user-static, binfmt-support and debootstrap from Debian"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            qemu-user-static binfmt-support debootstrap >&2
    fi
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
        echo "error: qemu-aarch64 is not registered with binfmt_misc" >&2
        exit 3
    fi
}

rootfs() {
    if [[ ! -x "$ARM/usr/bin/python3" ]]; then
        say "creating a Debian $SUITE arm64 root in $ARM (debootstrap, a few minutes)"
        debootstrap --arch=arm64 --variant=minbase --include=python3,ca-certificates \
            "$SUITE" "$ARM" "$MIRROR" >&2
    fi
}

say "tools"; step tools
say "Debian arm64 root"; step rootfs
PYV="$(chroot "$ARM" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
say "inside: $(chroot "$ARM" uname -m), Debian $(cat "$ARM/etc/debian_version"), Python $PYV"

WORK="$(mktemp -d)"
# No /sys in the root: ONNX Runtime's CPU probe then warns that it cannot read the CPU list
# and uses defaults; with the host's x86 /sys mounted it crashes under emulation.
trap 'rm -rf "$WORK"' EXIT
install_light() {
    uv build --wheel --out-dir "$WORK/wheel" -q
    rm -rf "$ARM/opt/privadx"
    uv pip install -q --target "$ARM/opt/privadx" --python-version "$PYV" \
        --python-platform aarch64-manylinux_2_36 --only-binary :all: "$WORK"/wheel/*.whl
}
say "light install for cp${PYV/./} aarch64 into $ARM/opt/privadx"; step install_light

MODEL="${1:-}"
if [[ -z "$MODEL" ]]; then
    say "training a small model on this machine (2 sites, 2 rounds of BreastMNIST)"
    step uv run --frozen privadx simulate --dataset breastmnist --sites 2 --rounds 2 \
        --out "$WORK/run" --json >/dev/null
    MODEL="$WORK/run/model.onnx"
fi
CHECK="$ARM/tmp/privadx-check"
rm -rf "$CHECK" && mkdir -p "$CHECK/images"
cp "$MODEL" "$CHECK/model.onnx"
uv run --frozen python - "$CHECK/images" <<'EOF'
import shutil, sys
from pathlib import Path
import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file
from privadx.common.data.medmnist import load_npz, resolve_dataset
out = Path(sys.argv[1])
test = load_npz(resolve_dataset("pneumoniamnist")).test
for i in range(20):
    Image.fromarray(np.squeeze(test.images[i])).save(out / f"case-{i:02d}.png")
shutil.copyfile(get_testdata_file("CT_small.dcm", download=False), out / "ct.dcm")
EOF

say "diagnose on this machine (reference)"
uv run --frozen privadx diagnose "$CHECK/model.onnx" "$CHECK/images" --allow-unsigned --json \
    >"$WORK/host.json" 2>/dev/null || [[ $? -eq 7 ]]
arm_diagnose() {
    chroot "$ARM" env PYTHONPATH=/opt/privadx HOME=/root python3 -m privadx diagnose \
        /tmp/privadx-check/model.onnx /tmp/privadx-check/images --allow-unsigned --json \
        >"$WORK/arm.json" 2>"$WORK/arm.err" || [[ $? -eq 7 ]] || { cat "$WORK/arm.err" >&2; exit 1; }
}
say "diagnose inside the emulated aarch64 root"; step arm_diagnose
arm_edge() {
    chroot "$ARM" env PYTHONPATH=/opt/privadx python3 -c \
        'import sys, edge.agent, privadx.common.mqtt_link, paho.mqtt.client, onnxruntime, numpy
assert "tensorflow" not in sys.modules
print("edge MQTT path imported; onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)' \
        2> >(grep -v -e "cpuinfo" -e "cpuid_info" >&2)
}
say "edge agent's MQTT path inside the root"; step arm_edge

uv run --frozen python - "$WORK/host.json" "$WORK/arm.json" <<'EOF'
import json, sys
host, arm = (json.load(open(p)) for p in sys.argv[1:3])
assert len(arm["results"]) == len(host["results"]) == 21, (len(arm["results"]), len(host["results"]))
worst = 0.0
for h, a in zip(host["results"], arm["results"]):
    assert h["prediction"] == a["prediction"], (h["path"], h["prediction"], a["prediction"])
    for k, p in h["probabilities"].items():
        worst = max(worst, abs(p - a["probabilities"][k]))
assert worst <= 1e-4, worst
print(f"[check_aarch64] {len(arm['results'])} images: same predictions on aarch64, "
      f"largest probability difference {worst:.2e}", file=sys.stderr)
EOF
say "ok"
