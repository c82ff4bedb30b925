"""The ``hookgate`` command: ``serve`` (the default), ``check``, ``plugins``, ``keys`` and
``teams``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gateway import __version__
from gateway.core.loading import Loaded, load
from gateway.core.plugins import describe
from gateway.errors import ConfigError
from gateway.redaction import install_log_redaction

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookgate",
        description="A plugin-based gateway between LLM/agent clients and model backends.",
    )
    parser.add_argument("--version", action="version", version=f"hookgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            help="TOML configuration file (default: $HOOKGATE_CONFIG, else built-in defaults)",
        )

    serve = sub.add_parser("serve", help="run the gateway (the default command)")
    config_arg(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers", type=int, metavar="N", help="worker processes sharing the port (default 1)"
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="log level (default info)",
    )

    check = sub.add_parser("check", help="validate the configuration and plugins without serving")
    config_arg(check)

    plugins = sub.add_parser(
        "plugins", help="list plugins: name, version, distribution, hooks, state"
    )
    config_arg(plugins)
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")

    from gateway.keys.cli import add_parsers

    add_parsers(sub, config_arg)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can be handled, not at exit
        return status
    except BrokenPipeError:
        # The reader went away (``hookgate plugins | head``): what it read was whole, and the
        # rest is no one's. Point stdout at /dev/null so the interpreter's own flush at exit
        # does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    overrides: dict[str, Any] = {}
    if command == "serve" and args.command:
        overrides = {
            "server.host": args.host,
            "server.port": args.port,
            "server.workers": args.workers,
            "server.log_level": args.log_level,
        }
    config_path = getattr(args, "config", None)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_redaction()  # no ?token= value in any log line, the access log's included
    try:
        loaded = load(config_path, overrides=overrides)
        if command in ("check", "serve"):
            # Building the app checks what only the plugins' factories can (backends, filters,
            # stores). Several workers each build their own, so check once before forking them.
            _level(loaded)
            if command == "check" or loaded.config.server.workers > 1:
                from gateway.core.app import init_app

                init_app(loaded)
    except ConfigError as exc:
        print("hookgate: invalid configuration:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    if command == "check":
        cfg = loaded.config
        print(
            f"configuration OK ({cfg.source or 'built-in defaults'}): "
            f"{len(cfg.backends)} backend(s), {len(cfg.models)} model(s)"
        )
        return 0
    if command == "plugins":
        return _print_plugins(loaded, args.json)
    if command in ("keys", "teams"):
        from gateway.keys.cli import run

        try:
            return run(args, loaded)
        except ConfigError as exc:
            print("hookgate: invalid configuration:", file=sys.stderr)
            for line in exc.errors:
                print(f"  {line}", file=sys.stderr)
            return EXIT_CONFIG
    return _serve(loaded, lambda: load(config_path, overrides=overrides))


def _level(loaded: Loaded) -> None:
    logging.getLogger().setLevel(loaded.config.server.log_level.upper())


def _serve(loaded: Loaded, reread: Callable[[], Loaded]) -> int:
    """Serve in this process, or with ``[server] workers`` worker processes; SIGHUP calls
    ``reread`` to load the configuration again."""
    workers = loaded.config.server.workers
    if workers > 1:
        from gateway.server.workers import supervise

        return supervise(loaded, reread)
    from gateway.server.server import run

    try:
        return run(loaded, reread=reread)
    except ConfigError as exc:
        print("hookgate: invalid configuration:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG


def _print_plugins(loaded: Loaded, as_json: bool) -> int:
    rows = describe(loaded.pm)
    if as_json:
        import orjson

        print(
            orjson.dumps(
                [
                    {
                        "name": r.name,
                        "version": r.version,
                        "distribution": r.distribution,
                        "hooks": list(r.hooks),
                        "enabled": r.enabled,
                    }
                    for r in rows
                ],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return 0
    table = [("NAME", "VERSION", "DISTRIBUTION", "STATE", "HOOKS")]
    for r in rows:
        hooks = ", ".join(h.removeprefix("gateway_") for h in r.hooks) or "-"
        table.append(
            (
                r.name,
                r.version or "-",
                r.distribution or "-",
                "enabled" if r.enabled else "disabled",
                hooks,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
