"""`edge-agent` command line: analyze a call file into JSON Lines events, or replay calls to the hub.

Contract (other tools depend on it): `edge-agent analyze FILE [--agent-channel 0|1] [--config PATH]`
prints one JSON event per line on stdout, the call summary last; bad input exits 2 with one line on
stderr and no traceback.

`edge-agent replay FILE [FILE ...] --seat ID --site ID --broker mqtt://HOST:PORT [--outbox PATH]
[--agent ID] [--timeout S]` analyzes each file as one call with the same pipeline, puts every event into the
durable outbox and publishes it (speech, talk-overs and dead air batched as `activity`, edge_agent/wire.py);
exits 0 once the hub has confirmed every event, 3 after --timeout seconds
with the rest kept in the outbox for the next run, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from edge_agent.audio import AudioError, probe, read_call
from edge_agent.config import ConfigError, load_config
from edge_agent.events import Event
from edge_agent.mqtt_publisher import BrokerConfig, BrokerUrlError, Publisher
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.pipeline import Pipeline
from edge_agent.schema import Envelope, ModelRef, SchemaError, check_name, envelope
from edge_agent.silero_stream import SileroError
from edge_agent.speech_model import ModelError
from edge_agent.vad import WIDEBAND_HZ, config_for_rate
from edge_agent.wire import model_refs, to_wire

log = logging.getLogger("edge_agent")

EXIT_BAD_INPUT = 2
EXIT_NOT_ACKNOWLEDGED = 3


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-agent", description="Call-quality analysis at the agent's seat.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = ap.add_subparsers(dest="command", required=True)
    an = sub.add_parser("analyze", help="analyze a two-channel call file; JSON Lines events on stdout")
    an.add_argument("file", help="WAV/FLAC/... with the agent mic and the customer line as two channels")
    an.add_argument("--agent-channel", type=int, choices=(0, 1), default=0, help="channel holding the agent mic")
    an.add_argument("--config", help="YAML or TOML analyzer config (section 'analyzer' or top level)")
    rp = sub.add_parser("replay", help="analyze call files and publish their events to the hub over MQTT")
    rp.add_argument("files", nargs="+", metavar="FILE", help="two-channel call files, one call each")
    rp.add_argument("--seat", required=True, help="seat id (an MQTT topic level)")
    rp.add_argument("--site", required=True, help="site id (an MQTT topic level)")
    rp.add_argument(
        "--broker",
        required=True,
        help="mqtt://HOST:PORT or mqtts://HOST:PORT (a password comes from $EDGE_AGENT_MQTT_PASSWORD)",
    )
    rp.add_argument("--outbox", help="outbox database (default: $XDG_STATE_HOME/edge-agent/outbox.sqlite)")
    rp.add_argument("--agent", help="agent id to put on the events")
    rp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for acknowledgements (default 60)")
    rp.add_argument("--agent-channel", type=int, choices=(0, 1), default=0, help="channel holding the agent mic")
    rp.add_argument("--config", help="YAML or TOML analyzer config (section 'analyzer' or top level)")
    em = sub.add_parser("emotion", help="emotion of one speaker's mono clips; one JSON line per file")
    em.add_argument("files", nargs="+", metavar="FILE", help="mono audio of one speaker, any sample rate")
    rn = sub.add_parser("run", help="the station service: live capture, calls, publishing (systemd Type=notify)")
    rn.add_argument("--config", required=True, help="station config, YAML or TOML (deploy/station/station.yaml)")
    return ap


def analyze(path: str, agent_channel: int, config: str | None) -> int:
    cfg = config_for_rate(load_config(config), probe(path).sample_rate)
    pipeline = Pipeline(cfg)
    out = sys.stdout
    for event in pipeline.run(read_call(path, agent_channel, block_seconds=2.0)):
        out.write(json.dumps(event.to_dict(), separators=(",", ":")) + "\n")
    out.flush()
    return 0


def default_outbox() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "edge-agent" / "outbox.sqlite"


def model_ref(pipeline: Pipeline) -> ModelRef | None:
    """The weights behind the VAD backend, when it is the speech model (it decides every event)."""
    card = getattr(getattr(pipeline.backend, "model", None), "card", None)
    return ModelRef(card.name, card.sha256) if card is not None else None


def replay(args: argparse.Namespace) -> int:
    site, seat = check_name("site", args.site), check_name("seat", args.seat)
    broker = BrokerConfig.from_url(args.broker)
    cfg = load_config(args.config)
    pipelines: dict[bool, Pipeline] = {}  # narrowband files get the narrowband weights (vad.config_for_rate)
    # every file is analysed before anything is queued: a bad file exits 2 without leaving half a batch
    calls: list[list[Envelope]] = []
    for path in args.files:
        rate = probe(path).sample_rate
        key = rate < WIDEBAND_HZ
        if key not in pipelines:
            pipelines[key] = Pipeline(config_for_rate(cfg, rate))
        pipeline = pipelines[key]
        models = model_refs(pipeline)
        call_id = uuid.uuid4().hex
        events: list[Event] = to_wire(pipeline.run(read_call(path, args.agent_channel, block_seconds=2.0)))
        calls.append(
            [
                envelope(e, seat=seat, site=site, call_id=call_id, agent_id=args.agent, model=models.get(e.type))
                for e in events
            ]
        )
        log.info("%s: call %s, %d events", path, call_id, len(events))
    outbox_path = Path(args.outbox) if args.outbox else default_outbox()
    with Outbox(outbox_path) as outbox:
        for envs in calls:
            outbox.put_many(envs)  # one transaction per call
        publisher = Publisher(outbox, site=site, seat=seat, broker=broker)
        publisher.start()
        try:
            done = publisher.drain(args.timeout)
        finally:
            publisher.stop()
        if not done:
            left = outbox.count(seat)
            print(
                f"edge-agent: {left} events not confirmed by the hub via {broker.host}:{broker.port}"
                f" after {args.timeout:g} s;"
                f" kept in {outbox_path}",
                file=sys.stderr,
            )
            return EXIT_NOT_ACKNOWLEDGED
        log.info(
            "all events confirmed by the hub (%d this run, %d dropped by the outbox budget ever)",
            publisher.confirmed,
            outbox.dropped,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "analyze":
            return analyze(args.file, args.agent_channel, args.config)
        if args.command == "replay":
            return replay(args)
        if args.command == "emotion":
            from edge_agent.emotion_cli import run as emotion  # only this command loads the emotion model

            return emotion(args.files)
        if args.command == "run":
            from firmware_py.runtime import run  # the station runtime; analysis-only installs never load it

            return run(args.config)
    except (AudioError, ConfigError, ModelError, SileroError, SchemaError, OutboxError, BrokerUrlError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
