#!/bin/sh
# Provision a fresh Raspberry Pi OS Bookworm (arm64) as a callqa station. Run as root on the Pi:
#
#   sh deploy/station/provision.sh SRC_DIR STATION_YAML SECRETS_ENV [CA_CRT] [UPDATE_PUB]
#
# SRC_DIR: this repository (or an unpacked release); STATION_YAML: the seat's config
# (deploy/station/station.example.yaml); SECRETS_ENV: the seat's file from deploy/mosquitto/provision_site.py
# (EDGE_AGENT_MQTT_USERNAME/PASSWORD); CA_CRT: the site CA ('' to skip); UPDATE_PUB: the hub admin's public
# update key (`qa-hub update keygen`: update-signing.pub), installed as /etc/edge-agent/update-signing.pub for
# the config's `updates.public_keys` (docs/updates.md; never the private key). Idempotent: re-running upgrades the package and
# keeps the outbox. Proven on arm64 by tests/test_arm64.py (debootstrap + qemu-user-static).
set -eu

SRC=$(cd "$1" && pwd)
CONFIG=$2
SECRETS=$3
CA=${4:-}
UPDATE_PUB=${5:-}
PREFIX=/opt/callqa

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# python3.11 is Bookworm's; libsndfile1 (soundfile), libportaudio2 (sounddevice); no compiler needed:
# every Python dependency ships aarch64 wheels
apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip libsndfile1 libportaudio2 \
    ca-certificates

# a system user that may use the sound devices (and the GPIO pins on a Pi), nothing else
if ! id edge-agent >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/edge-agent --no-create-home --shell /usr/sbin/nologin edge-agent
fi
for group in audio gpio; do
    if getent group "$group" >/dev/null; then usermod -a -G "$group" edge-agent; fi
done

python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade pip
if [ -d /sys/class/gpio ] && grep -qi raspberry /proc/device-tree/model 2>/dev/null; then
    "$PREFIX/venv/bin/pip" install -q "$SRC[pi]"
else
    "$PREFIX/venv/bin/pip" install -q "$SRC"
fi
# Silero VAD's ONNX files (MIT) for `vad.type: silero` and `vad.silero_onnx`; the default backend runs Silero's
# shipped weights as numpy without them. --no-deps: its own dependencies pull in torch (hundreds of MB), and the
# station runs the ONNX files with onnxruntime instead
"$PREFIX/venv/bin/pip" install -q --no-deps 'silero-vad>=6.2'
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

install -d -m 0755 /etc/edge-agent
install -m 0644 "$CONFIG" /etc/edge-agent/station.yaml
install -m 0600 "$SECRETS" /etc/edge-agent/secrets.env
if [ -n "$CA" ]; then install -m 0644 "$CA" /etc/edge-agent/site-ca.pem; fi
if [ -n "$UPDATE_PUB" ]; then
    if grep -q PRIVATE "$UPDATE_PUB"; then echo "provision: $UPDATE_PUB is a private key: refused" >&2; exit 2; fi
    install -m 0644 "$UPDATE_PUB" /etc/edge-agent/update-signing.pub
fi
install -d -m 0750 -o edge-agent /var/lib/edge-agent

install -m 0644 "$SRC/deploy/systemd/edge-agent.service" /etc/systemd/system/edge-agent.service
# in a chroot (the arm64 proof) systemctl only creates the enable links, which is what a first boot needs
systemctl enable edge-agent.service
"$PREFIX/venv/bin/edge-agent" --help >/dev/null
echo "provisioned: $("$PREFIX/venv/bin/python" -c 'import importlib.metadata as m; print("callqa", m.version("callqa"))')"
