"""An OTLP/HTTP receiver that accepts spans and throws them away, for the benchmark's runs with
tracing on (``python bench/otlp_sink.py --port N``): what the exporter costs the gateway, without
a collector's own work on the machine."""

from __future__ import annotations

import argparse

from aiohttp import web


async def traces(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/health", lambda r: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
