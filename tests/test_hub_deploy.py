"""deploy/hub: the systemd units, the compose stack and its image, checked against the real tools they use.

- every unit passes `systemd-analyze verify` (which does report a bad line, checked too), and every ExecStart
  parses with `qa-hub`'s own argument parser, so a renamed flag breaks this test, not a site's upgrade;
- `qa-hub serve` started the way qa-hub.service starts it (its Environment= and EnvironmentFile= lines, the
  provisioned secrets/hub.env as is) ingests a station's events through the production broker over TLS;
- compose.yaml: the three services, the healthcheck the hub waits for, named volumes, the broker's production
  config and site files, no secret in the file; the Mosquitto main config it mounts loads the production
  config in a real Mosquitto; the Dockerfile's base, user, package and PostgreSQL client version.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from edge_agent.mqtt_publisher import Publisher
from edge_agent.outbox import Outbox
from hub.cli import build_parser
from tests.broker import PRODUCTION_CONF, ROOT, Mosquitto, free_port, mosquitto_binary, port_open, site_broker
from tests.test_transport import events as make_events

HUB = ROOT / "deploy" / "hub"
UNITS = ["qa-hub.service", "qa-hub-worker@.service", "qa-hub-backup.service", "qa-hub-backup.timer"]
INSTALLED = "/opt/callqa/venv/bin/qa-hub"
SITE = "lon"


def unit(name: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file: (key, value) pairs in order (keys repeat: EnvironmentFile, SystemCallFilter)."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = ""
    for raw in (HUB / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = []
        else:
            key, _, value = line.partition("=")
            out[section].append((key, value))
    return out


def values(name: str, key: str, section: str = "Service") -> list[str]:
    return [v for k, v in unit(name).get(section, []) if k == key]


def exec_args(line: str, env: dict[str, str], instance: str = "1") -> list[str]:
    """An ExecStart= line as systemd runs it: ${VAR} from the environment, %i and %H specifiers."""
    line = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), line)
    return shlex.split(line.replace("%i", instance).replace("%H", "hubhost"))


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    qa_hub = shutil.which("qa-hub", path=str(Path(sys.executable).parent))
    assert qa_hub is not None, "the qa-hub entry point is not installed beside this Python"
    for name in UNITS:
        # verify also checks that ExecStart's program exists: this machine's qa-hub stands in for /opt/callqa's
        (tmp_path / name).write_text((HUB / name).read_text().replace(INSTALLED, qa_hub))
    r = subprocess.run(
        ["systemd-analyze", "verify", *(f"./{n}" for n in UNITS)], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
    # the check is not vacuous: a misspelt key in the same file is reported
    broken = tmp_path / "broken.service"
    broken.write_text((tmp_path / "qa-hub.service").read_text().replace("Restart=on-failure", "Restrat=on-failure"))
    r = subprocess.run(["systemd-analyze", "verify", "./broken.service"], cwd=tmp_path, capture_output=True, text=True)
    assert "Unknown key 'Restrat'" in r.stdout + r.stderr


def test_units_run_qa_hub_as_its_parser_expects() -> None:
    parser = build_parser()
    env = {"QA_HUB_HTTP": "127.0.0.1:8080", "QA_HUB_SHARE": "hubs", "QA_HUB_BACKUP_KEEP": "14"}
    serve = parser.parse_args(exec_args(values("qa-hub.service", "ExecStart")[0], env)[1:])
    assert serve.cmd == "serve" and serve.http == ("127.0.0.1", 8080) and not serve.no_http
    worker = parser.parse_args(exec_args(values("qa-hub-worker@.service", "ExecStart")[0], env, "3")[1:])
    assert worker.cmd == "serve" and worker.no_http and worker.share == "hubs"
    assert worker.client_id == "callqa-hub-hubhost-3" != serve.client_id  # one broker session per worker
    # a worker without a group would take a full copy of every event: its ExecStartPre refuses to start it
    check = shlex.split(values("qa-hub-worker@.service", "ExecStartPre")[0].replace("$$", "$"))
    refused = subprocess.run(check, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert refused.returncode == 1 and "set QA_HUB_SHARE" in refused.stderr
    assert subprocess.run(check, env={"PATH": os.environ["PATH"], "QA_HUB_SHARE": "hubs"}).returncode == 0
    job = parser.parse_args(exec_args(values("qa-hub-backup.service", "ExecStart")[0], env)[1:])
    assert job.cmd == "backup" and job.keep == 14
    assert f"/var/lib/{values('qa-hub-backup.service', 'StateDirectory')[0].split()[1]}" == str(job.out)
    assert values("qa-hub-backup.timer", "Unit", "Timer") == ["qa-hub-backup.service"]
    assert values("qa-hub-backup.timer", "Persistent", "Timer") == ["true"]

    station = unit("../systemd/edge-agent.service")["Service"]
    hardening = {k: v for k, v in station if k.startswith("Protect") or k in ("NoNewPrivileges", "PrivateTmp")}
    assert len(hardening) >= 6
    for name in UNITS[:3]:
        service = dict(unit(name)["Service"])
        assert service["User"] == "callqa-hub" and "callqa-hub" in service["StateDirectory"].split(), name
        assert values(name, "EnvironmentFile")[0] == "/etc/callqa-hub/hub.env", name
        for key, value in hardening.items():  # at least as locked down as the station's service
            assert service.get(key) == value, (name, key)
        assert service.get("CapabilityBoundingSet") == "" and "RestrictAddressFamilies" in service, name
    for name in UNITS[:2]:
        assert dict(unit(name)["Service"])["Restart"] == "on-failure", name


def environment(name: str, etc: Path) -> dict[str, str]:
    """What systemd gives the service: Environment= first, then the EnvironmentFile= files in order."""
    env: dict[str, str] = {}
    for line in values(name, "Environment"):
        env.update(kv.partition("=")[::2] for kv in shlex.split(line))
    for path in values(name, "EnvironmentFile"):
        text = (etc / Path(path.lstrip("-")).name).read_text()
        env.update(x.partition("=")[::2] for x in text.splitlines() if x.strip() and not x.startswith("#"))
    return {k: v.replace("/etc/callqa-hub", str(etc)) for k, v in env.items()}


def test_the_unit_environment_reaches_the_tls_broker(tmp_path: Path) -> None:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")
    site = tmp_path / "site"
    provision = ROOT / "deploy" / "mosquitto" / "provision_site.py"
    cmd = [sys.executable, str(provision), "--site", SITE, "--seats", "desk-1", "--out", str(site)]
    subprocess.run(cmd, check=True, capture_output=True)
    broker = Mosquitto(tmp_path / "broker", binary, PRODUCTION_CONF, site_dir=site)
    broker.start()
    # /etc/callqa-hub as the README installs it: hub.env written by the admin, the rest copied from the site
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(site / "ca.crt", etc / "ca.crt")
    shutil.copy(site / "secrets" / "hub.env", etc / "mqtt.env")
    db, port = tmp_path / "hub.sqlite", free_port()
    (etc / "hub.env").write_text(
        f"QA_HUB_DB={db}\nQA_HUB_BROKER=mqtts://hub@127.0.0.1:{broker.port}\nQA_HUB_TZ=Europe/London\n"
        f"QA_HUB_HTTP=127.0.0.1:{port}\n"
    )
    env = environment("qa-hub.service", etc)
    assert env["SSL_CERT_FILE"] == str(etc / "ca.crt") and "EDGE_AGENT_MQTT_PASSWORD" in env
    argv = exec_args(values("qa-hub.service", "ExecStart")[0], env)
    assert argv[0] == INSTALLED
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", *argv[1:]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={"PATH": os.environ["PATH"], **env},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        seat = site_broker(site, broker.port, "desk-1")
        with Outbox(tmp_path / "ob.sqlite") as ob:
            ob.put_many([type(e)(**{**e.__dict__, "site": SITE}) for e in make_events(20, seat="desk-1")])
            with Publisher(ob, site=SITE, seat="desk-1", broker=seat) as pub:
                # drained = every event acknowledged by the hub after its commit
                assert pub.drain(20), (tmp_path / "serve.log").read_text() + broker.log_tail()
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM events WHERE site = ?", (SITE,)).fetchone() == (20,)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
        broker.stop()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((HUB / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path or volume name."""
    out = {}
    for spec in service.get("volumes", []):
        parts = spec.split(":")
        if parts[-1] in ("ro", "rw"):
            parts = parts[:-1]
        out[parts[-1]] = ":".join(parts[:-1])
    return out


def test_compose_stack_structure() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"mosquitto", "postgres", "hub"}
    mq, pg, hub = services["mosquitto"], services["postgres"], services["hub"]
    assert mq["image"].startswith("eclipse-mosquitto:2") and pg["image"] == "postgres:16"
    assert pg["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert hub["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert hub["build"]["dockerfile"] == "deploy/hub/Dockerfile"
    assert (HUB / hub["build"]["context"] / hub["build"]["dockerfile"]).resolve() == HUB / "Dockerfile"

    # named volumes are declared; host paths relative to the file exist
    for name, service in services.items():
        for source in mounts(service).values():
            if source.startswith((".", "/")):
                assert (HUB / source).exists(), (name, source)
            elif not source.startswith("$"):
                assert source in doc["volumes"], (name, source)
    assert set(doc["volumes"]) == {"mosquitto-data", "postgres-data", "hub-backups"}
    assert mounts(pg)["/var/lib/postgresql/data"] == "postgres-data"

    # the broker runs the production config, with the site's files but never the CA key or the secrets
    mq_mounts = mounts(mq)
    include = next(
        x.split()[1] for x in (HUB / "mosquitto-compose.conf").read_text().splitlines() if "include_dir" in x
    )
    prod = next(t for t, s in mq_mounts.items() if s == "../mosquitto/mosquitto.conf")
    assert Path(prod).parent == Path(include) and prod.endswith(".conf")
    assert mq_mounts["/mosquitto/config/mosquitto.conf"] == "./mosquitto-compose.conf"
    conf = PRODUCTION_CONF.read_text()
    settings = "\n".join(x for x in conf.splitlines() if not x.lstrip().startswith("#"))
    needed = set(re.findall(r"/etc/mosquitto/callqa/[\w.]+", settings))
    assert len(needed) == 5
    assert needed == {t for t in mq_mounts if t.startswith("/etc/mosquitto/callqa/")}
    assert not [s for s in mq_mounts.values() if "ca.key" in s or "secrets" in s]
    data_dir = re.search(r"^persistence_location (\S+?)/?$", conf, re.M)
    assert data_dir is not None and mq_mounts[data_dir.group(1)] == "mosquitto-data"

    # no secret in the file: passwords come from env files; the DSN carries none
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"PASSWORD|SECRET|TOKEN", key) or value.startswith("$"), (name, key)
            assert "@" not in str(value) or urlsplit(str(value)).password is None, (name, key)
    assert all(any("db.env" in f for f in s["env_file"]) for s in (pg, hub))
    assert any(f.endswith("/secrets/hub.env") for f in hub["env_file"])
    assert not re.search(r"(?i)password\s*[:=]\s*[^$\s{]", (HUB / "compose.yaml").read_text())
    assert {".env", "db.env"} <= set((HUB / ".gitignore").read_text().split())

    # the hub reaches the broker over TLS, verifying the mounted site CA
    env = hub["environment"]
    assert env["QA_HUB_BROKER"].startswith("mqtts://hub@mosquitto:")
    assert env["QA_HUB_DB"].startswith("postgresql://") and "@postgres:" in env["QA_HUB_DB"]
    assert mounts(hub)[env["SSL_CERT_FILE"]].endswith("/ca.crt")


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker or "docker", "compose", "version"], capture_output=True) if docker else None
    if probe is None or probe.returncode:
        pytest.skip("no `docker compose` plugin here: test_compose_stack_structure checks the file instead")
    site = tmp_path / "site"
    (site / "secrets").mkdir(parents=True)
    (site / "secrets" / "hub.env").write_text("EDGE_AGENT_MQTT_PASSWORD=x\n")
    (tmp_path / "db.env").write_text("POSTGRES_PASSWORD=x\nPGPASSWORD=x\n")
    env = dict(os.environ, CALLQA_SITE_DIR=str(site), CALLQA_DB_ENV=str(tmp_path / "db.env"))
    r = subprocess.run(
        ["docker", "compose", "-f", str(HUB / "compose.yaml"), "config", "--quiet"], env=env, capture_output=True
    )
    assert r.returncode == 0, r.stderr


def test_the_compose_mosquitto_config_loads_the_production_one(tmp_path: Path) -> None:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")
    site = tmp_path / "site"
    provision = ROOT / "deploy" / "mosquitto" / "provision_site.py"
    subprocess.run(
        [sys.executable, str(provision), "--site", SITE, "--out", str(site)], check=True, capture_output=True
    )
    # the container's paths, moved under tmp_path; the port and the user are this test's
    port = free_port()
    included = tmp_path / "callqa"
    included.mkdir()
    (tmp_path / "data").mkdir()
    (included / "callqa.conf").write_text(
        PRODUCTION_CONF.read_text()
        .replace("/etc/mosquitto/callqa/", f"{site}/")
        .replace("/var/lib/mosquitto/", f"{tmp_path / 'data'}/")
        .replace("listener 8883", f"listener {port} 127.0.0.1")
    )
    main = tmp_path / "mosquitto.conf"
    text = (HUB / "mosquitto-compose.conf").read_text().replace("/mosquitto/config/callqa", str(included))
    main.write_text(text + f"user {getpass.getuser()}\n")  # as root it would switch to `mosquitto`
    proc = subprocess.Popen([binary, "-c", str(main)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0]
    # the production file was read through include_dir, and the log went to stdout (what `docker logs` shows)
    assert f"Loading config file {included / 'callqa.conf'}" in out and f"port {port}" in out, out


def test_dockerfile_builds_the_hub_package_as_a_user() -> None:
    text = (HUB / "Dockerfile").read_text()
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim-bookworm"
    users = [x.split()[1] for x in lines if x.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "pip install --no-cache-dir '.[hub]'" in text
    # every package pyproject installs is copied in, and the build context lets it through
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {x.split()[1] for x in lines if x.startswith("COPY ")}
    allowed = {x.strip("!/") for x in (HUB / "Dockerfile.dockerignore").read_text().split() if x.startswith("!")}
    for pattern in include:
        package = pattern.rstrip("*")
        assert package in copied and package in allowed, package
    # pg_dump must be at least the server's version: the client installed is compose's postgres major
    major = re.search(r"ARG PG_MAJOR=(\d+)", text)
    assert major is not None and compose()["services"]["postgres"]["image"] == f"postgres:{major.group(1)}"
