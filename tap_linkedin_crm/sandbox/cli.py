"""Command line entry point: ``linkedin-crm-sandbox`` serves the sandbox until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import typing as t
from importlib import resources

from tap_linkedin_crm.sandbox.scenario import Scenario
from tap_linkedin_crm.sandbox.server import Sandbox

if t.TYPE_CHECKING:
    from types import FrameType


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkedin-crm-sandbox",
        description=(
            "Serve fake LinkedIn Sales Navigator export APIs (CRM Data Validation and Sales "
            "Navigator Analytics, with OAuth) on loopback."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--scenario",
        help="scenario JSON file, or the name of a bundled one (demo, faults)",
    )
    parser.add_argument("--rows", type=int, help="rows per export job, for every instance")
    parser.add_argument("--files", type=int, help="files per export job, for every instance")
    parser.add_argument("--gzip", action="store_true", help="serve .csv.gz for every instance")
    parser.add_argument("--seed", type=int, help="seed of the row generator")
    parser.add_argument("--polls", type=int, help="GETs answered PROCESSING before COMPLETED")
    parser.add_argument("--no-nul", action="store_true", help="never put NUL bytes into values")
    parser.add_argument(
        "--analytics",
        action="store_true",
        help="put a member refresh token (refresh_token) into the printed tap config",
    )
    parser.add_argument("--config-out", help="also write the tap config JSON to this file")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def load_scenario(name_or_path: str | None) -> Scenario:
    """Load a scenario from a file path or a bundled scenario name; ``None`` gives the default."""
    if name_or_path is None:
        return Scenario()
    bundled = resources.files("tap_linkedin_crm.sandbox").joinpath(
        "scenarios", f"{name_or_path}.json"
    )
    if "/" not in name_or_path and bundled.is_file():
        return Scenario.from_dict(json.loads(bundled.read_text(encoding="utf-8")))
    return Scenario.from_file(name_or_path)


def _apply_overrides(scenario: Scenario, args: argparse.Namespace) -> None:
    for spec in scenario.instances.values():
        if args.rows is not None:
            spec.rows = args.rows
        if args.files is not None:
            spec.files = args.files
        if args.gzip:
            spec.gzip = True
    if args.seed is not None:
        scenario.seed = args.seed
    if args.polls is not None:
        scenario.job_processing_polls = args.polls
    if args.no_nul:
        scenario.nul_bytes = False


def analytics_help(sandbox: Sandbox) -> str:
    """How to get a member refresh token from the running sandbox, for the analytics streams."""
    client_id = next(iter(sandbox.scenario.clients))
    redirects = sandbox.scenario.redirect_uris
    accepted = ", ".join(redirects) if redirects is not None else "any loopback http URL"
    return (
        "Sales Navigator Analytics (3-legged OAuth):\n"
        f"  authorization URL: {sandbox.authorization_url}\n"
        f"  token URL:         {sandbox.token_url}\n"
        f"  the page approves at once as {sandbox.scenario.member}; redirect URIs: {accepted}\n"
        "  get a refresh token (client secret as in the config above) with:\n"
        f"    linkedin-crm-auth --client-id {client_id} "
        f"--authorization-url {sandbox.authorization_url} --token-url {sandbox.token_url}\n"
        "  or restart with --analytics to get one in the config.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until interrupted.

    Args:
        argv: Command line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 after a clean stop, 2 for a bad scenario.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        scenario = load_scenario(args.scenario)
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"linkedin-crm-sandbox: cannot load scenario: {exc}\n")
        return 2
    _apply_overrides(scenario, args)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    with Sandbox(scenario, host=args.host, port=args.port) as sandbox:
        config = json.dumps(sandbox.tap_config(analytics=args.analytics), indent=2)
        sys.stdout.write(f"LinkedIn CRM sandbox listening on {sandbox.base_url}\n")
        sys.stdout.write(f"Tap config:\n{config}\n")
        sys.stdout.write(analytics_help(sandbox))
        sys.stdout.flush()
        if args.config_out:
            with open(args.config_out, "w", encoding="utf-8") as fh:  # noqa: PTH123
                fh.write(config + "\n")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            sys.stderr.write("linkedin-crm-sandbox: stopping\n")
    signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
