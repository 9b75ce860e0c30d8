"""`edge-agent` command line: analyze a call file into JSON Lines events.

Contract (other tools depend on it): `edge-agent analyze FILE [--agent-channel 0|1] [--config PATH]`
prints one JSON event per line on stdout, the call summary last; bad input exits 2 with one line on
stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from edge_agent.audio import AudioError, read_call
from edge_agent.config import ConfigError, load_config
from edge_agent.pipeline import Pipeline
from edge_agent.speech_model import ModelError

log = logging.getLogger("edge_agent")

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-agent", description="Call-quality analysis at the agent's seat.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = ap.add_subparsers(dest="command", required=True)
    an = sub.add_parser("analyze", help="analyze a two-channel call file; JSON Lines events on stdout")
    an.add_argument("file", help="WAV/FLAC/... with the agent mic and the customer line as two channels")
    an.add_argument("--agent-channel", type=int, choices=(0, 1), default=0, help="channel holding the agent mic")
    an.add_argument("--config", help="YAML or TOML analyzer config (section 'analyzer' or top level)")
    return ap


def analyze(path: str, agent_channel: int, config: str | None) -> int:
    cfg = load_config(config)
    pipeline = Pipeline(cfg)
    out = sys.stdout
    for event in pipeline.run(read_call(path, agent_channel, block_seconds=2.0)):
        out.write(json.dumps(event.to_dict(), separators=(",", ":")) + "\n")
    out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "analyze":
            return analyze(args.file, args.agent_channel, args.config)
    except (AudioError, ConfigError, ModelError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
