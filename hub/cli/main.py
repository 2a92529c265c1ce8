"""The `crmhub` console script. Each subcommand exits 0 on success, 1 on a
failure it can name (one line on stderr), 2 on bad usage (argparse)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from hub.cli import admin as cli_admin
from hub.cli import campaigns as cli_campaigns
from hub.cli import data as cli_data
from hub.cli import mail as cli_mail
from hub.cli import privacy as cli_privacy
from hub.cli import segments as cli_segments
from hub.cli import templates as cli_templates
from hub.cli.common import CliError
from hub.config import ConfigError, Settings, load_settings
from hub.errors import DomainError

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmhub", description="crmhub: every channel in, every campaign out, one history."
    )
    parser.add_argument(
        "-c", "--config", type=Path, help="config file (default: $CRMHUB_CONFIG or ./config.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli_admin.add_commands(sub)
    cli_data.add_commands(sub)
    cli_mail.add_commands(sub)
    cli_privacy.add_commands(sub)
    cli_segments.add_commands(sub)
    cli_templates.add_commands(sub)
    cli_campaigns.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # The twilio library logs every request and response (headers included) at
        # INFO: two lines per SMS sent, most of a campaign's log and a share of its CPU.
        logging.getLogger("twilio").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
        handler: Handler = args.handler
        return handler(args, settings)
    except (ConfigError, CliError) as exc:
        print(f"crmhub: {exc}", file=sys.stderr)
        return 1
    except DomainError as exc:
        # The core's own refusals (e.g. seed-demo on a database with customers).
        print(f"crmhub: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
