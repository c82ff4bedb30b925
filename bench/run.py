"""hookgate's benchmark: the direct upstream and hookgate in front of it, in one run.

    python bench/run.py                      # defaults: 10 s per measurement, 1 and 32 connections
    python bench/run.py --duration 5 --target litellm=http://127.0.0.1:4000 --target-model bench

It starts the mock upstream (``bench/mock_upstream.py``, its own process), an nginx reverse proxy
in front of it (the cost of a plain proxy hop, Debian's ``nginx``), and hookgate pointed at it
(``python -m gateway serve``, its own process), checks that every scenario answers correctly
through each, and drives each with wrk at every connection count: the direct upstream, the nginx
hop, hookgate, any ``--target`` gateway, and with ``--baseline REV`` hookgate as it was at a git
revision (built into a virtualenv of its own), so a change is measured against its past in one run. Then it sends ``--rss-requests``
requests more (the run's scenarios in turn) and reports how much hookgate's resident memory grew. It prints a table and writes
everything to ``bench/results/<time>.json``.

Scenarios (each a POST; a scenario whose backend kind hookgate lacks is skipped and says so):

- ``chat``: a non-streamed chat completion.
- ``stream``: a streamed chat completion of ``--chunks`` chunks, relayed (same protocol).
- ``translated``: an OpenAI client's stream answered by an Anthropic upstream (needs the
  ``anthropic`` backend kind); its direct baseline is the Anthropic stream itself.
- ``routed`` and ``routed-stream``: ``chat`` and ``stream`` for a model with two targets (both
  the mock, the first answering: the cost of routing when nothing fails). A ``--baseline``
  revision is not asked for them (its configuration has no such model).

Cost as work grows (``--scenarios all`` runs every one):

- ``long``: a relayed stream of ``--long-chunks`` (1,000) frames; the table's last lines give the
  time each gateway adds per chunk.
- ``body100k``: a non-streamed chat completion whose request body is 100 KB.
- ``agui``: AG-UI runs of a plain model (``POST /agui/agents/bench/runs``), runs per second.
- ``idle``: ``--idle-streams`` (10,000) streams held open at once on hookgate, their upstream
  silent after a first frame: hookgate's RSS per open stream, and a canary's latency (chat at
  one connection) before and while they are open.

``--compare litellm,portkey`` installs LiteLLM's proxy (PyPI, into a virtualenv under
``~/.cache/hookgate-bench``) and Portkey's gateway (npm, into a folder there), points each at the
mock upstream and measures them in the same run (a gateway that cannot be installed or started
is skipped, saying why).

``--floor`` measures the floor under a Python hop in the same run (``bench/floor.py``): a relay
doing nothing but pass chat completions through hookgate's own upstream client, on a raw
uvloop/httptools protocol (``floor raw``) and on an aiohttp application (``floor aiohttp``):
what aiohttp's server costs, and what the gateway's own work costs above it.

``--team`` measures a second hookgate beside the first (which then asks for a key of its
``[auth] keys``), ``hookgate+team``, with what running it for a team turns on: a key from the database (``[admin] keys``; SQLite, or ``--database-url``),
a budget on it, prices, the spend ledger and OpenTelemetry traces exported over OTLP/HTTP (to
``bench/otlp_sink.py``, a receiver that drops them); ``--redis-url`` keeps the budget counters
and key notices in Redis. The table's "added" rows compare it with plain hookgate.

``--rounds N`` measures every target N times, in turns (each target once, then again), and
reports each target's median measurement: on a virtual machine whose speed drifts from minute
to minute (a neighbour's load), a ratio of two targets measured a minute apart can be off by a
quarter; in turns, the drift falls on both. It also reports, round by round, each target's
throughput over its reference's (hookgate and other gateways over nginx; ``hookgate+team``,
``hookgate xN`` and a baseline over hookgate) and the median of those ratios.

wrk (Debian package ``wrk``) is the load generator; it and nginx are installed with apt-get when
missing and the script may (root); otherwise it says how (``--no-nginx`` runs without the hop).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "wrk.lua"
MODEL = "bench"


# --- scenarios ---------------------------------------------------------------------------------


def _chat(model: str, stream: bool, content: str = "Say hello.") -> str:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"))


def _messages(stream: bool) -> str:
    body: dict[str, Any] = {
        "model": "mock-model",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


#: A request body of about 100 KB (a long prompt).
BIG = ("The quick brown fox jumps over the lazy dog. " * 2300)[:100_000]

#: An AG-UI run (RunAgentInput); wrk puts an id of its own in place of each ``@ID@``.
AGUI_RUN = json.dumps(
    {
        "threadId": "t-@ID@",
        "runId": "r-@ID@",
        "messages": [{"id": "u1", "role": "user", "content": "Say hello."}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
    },
    separators=(",", ":"),
)

#: name -> what hookgate is asked, what the direct upstream is asked (none: no direct baseline),
#: and what both must answer; ``model``: the hookgate model other gateways are asked for (none:
#: they are not measured), ``loose``: what their answers must contain (their JSON may be spaced).
SCENARIOS: dict[str, dict[str, Any]] = {
    "chat": {
        "path": "/v1/chat/completions",
        "body": _chat(MODEL, False),
        "direct_path": "/v1/chat/completions",
        "direct_body": _chat("mock-model", False),
        "expect": '"finish_reason":"stop"',
        "direct_expect": '"finish_reason":"stop"',
        "kind": "openai",
        "model": MODEL,
        "loose": '"stop"',
        "mix": True,
    },
    "stream": {
        "path": "/v1/chat/completions",
        "body": _chat(MODEL, True),
        "direct_path": "/v1/chat/completions",
        "direct_body": _chat("mock-model", True),
        "expect": "data: [DONE]",
        "direct_expect": "data: [DONE]",
        "kind": "openai",
        "model": MODEL,
        "loose": "[DONE]",
        "mix": True,
    },
    "translated": {
        "path": "/v1/chat/completions",
        "body": _chat(MODEL + "-anthropic", True),
        "direct_path": "/v1/messages",
        "direct_body": _messages(True),
        "expect": "data: [DONE]",
        "direct_expect": "message_stop",
        "kind": "anthropic",
        "mix": True,
    },
    "routed": {
        "path": "/v1/chat/completions",
        "body": _chat(MODEL + "-routed", False),
        "direct_path": "/v1/chat/completions",
        "direct_body": _chat("mock-model", False),
        "expect": '"finish_reason":"stop"',
        "direct_expect": '"finish_reason":"stop"',
        "kind": "openai",
        "routing": True,
    },
    "routed-stream": {
        "path": "/v1/chat/completions",
        "body": _chat(MODEL + "-routed", True),
        "direct_path": "/v1/chat/completions",
        "direct_body": _chat("mock-model", True),
        "expect": "data: [DONE]",
        "direct_expect": "data: [DONE]",
        "kind": "openai",
        "routing": True,
    },
    # Cost as work grows.
    "long": {  # a stream of --long-chunks (1,000) frames, relayed
        "path": "/v1/chat/completions",
        "body": _chat(MODEL + "-long", True),
        "direct_path": "/v1/chat/completions",
        "direct_body": _chat("mock-long", True),
        "expect": "data: [DONE]",
        "direct_expect": "data: [DONE]",
        "kind": "openai",
        "model": MODEL + "-long",
        "loose": "[DONE]",
    },
    "body100k": {  # a non-streamed chat whose request body is 100 KB
        "path": "/v1/chat/completions",
        "body": _chat(MODEL, False, BIG),
        "direct_path": "/v1/chat/completions",
        "direct_body": _chat("mock-model", False, BIG),
        "expect": '"finish_reason":"stop"',
        "direct_expect": '"finish_reason":"stop"',
        "kind": "openai",
        "model": MODEL,
        "loose": '"stop"',
    },
    "agui": {  # AG-UI runs of a plain model (the run's stream, RUN_STARTED to RUN_FINISHED)
        "path": f"/agui/agents/{MODEL}/runs",
        "body": AGUI_RUN,
        "direct_path": None,
        "expect": "RUN_FINISHED",
        "kind": "openai",
    },
    # Not a wrk load: --idle-streams streams held open at once, and a canary meanwhile.
    "idle": {"kind": "openai", "idle": True},
}


#: What a run measures unless ``--scenarios`` says otherwise.
DEFAULT_SCENARIOS = ("chat", "stream", "translated", "routed", "routed-stream")


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: it is up
                return
            time.sleep(0.05)
    raise SystemExit(f"nothing answers at {url} after {timeout:.0f}s")


@contextlib.contextmanager
def process(cmd: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    kwargs.setdefault("cwd", ROOT)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def hookgate_kinds() -> set[str]:
    """The backend kinds the installed hookgate has."""
    code = (
        "from gateway.core.loading import load; "
        "print(' '.join(load(data={}, env={}).registry.backends.names()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}


def hookgate_config(
    upstream: str, kinds: set[str], key: str = "", routing: bool = True, idle: int = 0
) -> str:
    """hookgate's configuration for the run: ``upstream`` is the mock's ``http://host:port``
    (the openai kind's base URL ends in /v1, the anthropic kind's is the bare host); ``key``:
    an API key of ``[auth] keys`` callers must present. With ``routing``, a model with two
    targets too (not for a baseline revision without them). ``idle``: the streams the idle
    scenario holds open at once: requests in progress may be that many (``[limits]
    max_requests``), and its model has a backend of its own with a connection for each and
    timeouts longer than the measurement (its upstream stays silent on purpose)."""
    lines = [
        "[server]",
        'log_level = "warning"',
        "",
        *(["[auth]", f'keys = ["{key}"]', ""] if key else []),
        *(["[limits]", f"max_requests = {idle + 1024}", ""] if idle else []),
        "[backends.mock]",
        'kind = "openai"',
        f'base_url = "{upstream}/v1"',
        'api_key = "bench"',
        "",
        f"[models.{MODEL}]",
        'backend = "mock"',
        'upstream_model = "mock-model"',
        "",
        f'[models."{MODEL}-long"]',
        'backend = "mock"',
        'upstream_model = "mock-long"',
    ]
    if idle:
        lines += [
            "",
            "[backends.mock-idle]",
            'kind = "openai"',
            f'base_url = "{upstream}/v1"',
            'api_key = "bench"',
            f"max_connections = {idle + 64}",
            'first_byte_timeout = "1h"',
            'read_timeout = "1h"',
            'timeout = "1h"',
            "",
            f'[models."{MODEL}-idle"]',
            'backend = "mock-idle"',
            'upstream_model = "mock-idle"',
        ]
    if routing:
        lines += [
            "",
            "[backends.mock-b]",
            'kind = "openai"',
            f'base_url = "{upstream}/v1"',
            'api_key = "bench"',
            "",
            f'[models."{MODEL}-routed"]',
            'targets = [{ backend = "mock", upstream_model = "mock-model" },',
            '           { backend = "mock-b", upstream_model = "mock-model" }]',
        ]
    if "anthropic" in kinds:
        lines += [
            "",
            "[backends.mock-anthropic]",
            'kind = "anthropic"',
            f'base_url = "{upstream}"',
            'api_key = "bench"',
            "",
            f'[models."{MODEL}-anthropic"]',
            'backend = "mock-anthropic"',
            'upstream_model = "mock-model"',
        ]
    return "\n".join(lines) + "\n"


ADMIN_KEY = "bench-admin"
TOML_KEY = "sk-bench-toml"


def team_sections(logs: Path, args: argparse.Namespace, kinds: set[str]) -> str:
    """What ``--team`` adds to the configuration: admin keys (so database keys), the database,
    prices (so budgets bind), the ledger; traces come from ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    lines = [
        "",
        "[admin]",
        f'keys = ["{ADMIN_KEY}"]',
        "",
        "[database]",
        f'data_dir = "{logs}"',
    ]
    if args.database_url:
        lines.append(f'url = "{args.database_url}"')
    if args.redis_url:
        lines += ["", "[redis]", f'url = "{args.redis_url}"', 'prefix = "hookgate-bench:"']
    lines += ["", "[spend]", "ledger = true"]
    text = "\n".join(lines) + "\n"
    # Every model of the run gets a price, so each request reserves and settles its budget.
    models = [MODEL, f"{MODEL}-anthropic"] if "anthropic" in kinds else [MODEL]
    return text + "".join(f'\n[models."{m}".price]\ninput = 1.0\noutput = 2.0\n' for m in models)


def new_team_key(base: str) -> str:
    """A database key with a budget too large to run out during the run."""
    body = json.dumps({"name": "bench", "budget": {"day": 1_000_000.0}}).encode()
    req = urllib.request.Request(
        base + "/admin/keys",
        data=body,
        headers={"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.loads(resp.read())["secret"])


# --- memory ------------------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def _tree(pid: int) -> list[int]:
    """``pid`` and every process under it (workers, their span exporters)."""
    found = [pid]
    for kid in _children(pid):
        found += _tree(kid)
    return found


#: CPU time, in seconds, the processes of a run may use in :data:`QUIET_WINDOW` for the machine
#: to count as quiet, and the longest wait for it.
QUIET_CPU, QUIET_WINDOW, QUIET_LIMIT = 0.01, 0.25, 10.0


def quiet(pids: list[int]) -> float:
    """Wait until the processes of the run (and theirs) are idle: what one measurement left
    behind (a span exporter's backlog, a ledger's last batch, a collector's sweep) does not run
    into the next. The seconds waited (:data:`QUIET_LIMIT` at most)."""
    start = time.monotonic()
    while time.monotonic() - start < QUIET_LIMIT:
        # The same processes read twice: one started meanwhile is seen in the next window.
        procs = [p for pid in pids for p in _tree(pid)]
        before = sum(cpu_seconds(p, children=False) for p in procs)
        time.sleep(QUIET_WINDOW)
        after = sum(cpu_seconds(p, children=False) for p in procs)
        if after - before <= QUIET_CPU:
            break
    return time.monotonic() - start


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User and system CPU time of a process and its children (workers) so far, in seconds."""
    total = 0.0
    for p in [pid, *_children(pid)] if children else [pid]:
        with contextlib.suppress(OSError):
            # Fields 14 and 15 of /proc/<pid>/stat (after the command in parentheses).
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def memory(pid: int) -> dict[str, float]:
    """Resident memory of a gateway (its workers added, when it has some), in MB."""
    pids = [pid, *_children(pid)]
    return {
        "rss_mb": sum(_status_kb(p, "VmRSS") for p in pids) / 1024,
        "peak_rss_mb": sum(_status_kb(p, "VmHWM") for p in pids) / 1024,
    }


# --- the nginx hop and the baseline revision -----------------------------------------------------


def nginx_config(prefix: Path, port: int, upstream_port: int, workers: int) -> Path:
    """A minimal reverse proxy to the mock upstream: keep-alive upstream connections, no
    buffering (streams pass as they come), no access log; everything it writes under ``prefix``."""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_buffer_size 1m;  # request bodies (100 KB ones too) stay in memory
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream mock {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
    )
    return conf


def baseline_python(rev: str) -> tuple[str, str]:
    """A Python with hookgate as it was at git revision ``rev`` installed (not editable), in a
    virtualenv cached per commit under ``~/.cache/hookgate-bench``; returns it and the commit."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hookgate-bench"
    venv = cache / sha[:12]
    python = venv / "bin" / "python"
    if python.exists():
        return str(python), sha
    print(f"building hookgate at {rev} ({sha[:12]}) into {venv}", flush=True)
    src = Path(tempfile.mkdtemp(prefix="hookgate-rev-"))
    try:
        archive = subprocess.run(["git", "archive", sha], capture_output=True, check=True, cwd=ROOT)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
            check=True,
        )
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return str(python), sha


# --- wrk ---------------------------------------------------------------------------------------


def ensure(command: str, package: str) -> str:
    """The path of ``command``, installed from the Debian ``package`` first when missing (as root)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    exe = shutil.which(command, path=path)
    if exe:
        return exe
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{command} is missing: installing it with apt-get ({package!r})", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=False, env=env)
        exe = shutil.which(command, path=path)
        if exe:
            return exe
    raise SystemExit(
        f"{command} is needed: install it (Debian/Ubuntu: sudo apt-get install {package})"
    )


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, p50/p99 latency (ms), request count and errors from wrk's report."""
    result: dict[str, Any] = {}
    m = re.search(r"^\s*(\d+) requests in", out, re.MULTILINE)
    result["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        result[f"p{pct}_ms"] = round(_ms(m.group(1)), 3) if m else None
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"BENCH_BAD (\d+)", out)
    errors += int(m.group(1)) if m else 0
    result["errors"] = errors
    return result


def run_wrk(
    url: str,
    body: str,
    expect: str,
    connections: int,
    duration: int,
    key: str = "",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    extra = "".join(f"{k}: {v}\n" for k, v in (headers or {}).items())
    env = {**os.environ, "BENCH_BODY": body, "BENCH_EXPECT": expect, "BENCH_KEY": key}
    env["BENCH_HEADERS"] = extra
    threads = min(connections, 2)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    return parse_wrk(out.stdout)


class WrongAnswer(Exception):
    """A target answered the check request wrongly (or not at all)."""


def check(
    url: str, body: str, expect: str, key: str = "", more: dict[str, str] | None = None
) -> None:
    """One request, answered correctly, before any load (raises :class:`WrongAnswer`)."""
    headers = {"content-type": "application/json", **(more or {})}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body.encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read().decode()
    except OSError as exc:
        detail = exc.read().decode(errors="replace")[:500] if hasattr(exc, "read") else ""
        raise WrongAnswer(f"{url}: {exc} {detail}".strip()) from exc
    if expect not in text:
        raise WrongAnswer(f"{url} answered without {expect!r}:\n{text[:2000]}")


# --- idle streams ------------------------------------------------------------------------------


def raise_open_files(need: int) -> int:
    """Raise this process's open-file limit (which the processes it starts inherit) towards
    ``need``: the soft limit up to the hard one, the hard one too when root. Returns the limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if need > hard and os.geteuid() == 0:
        hard = need
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(need, hard)), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _stream_request(host: str, port: int, key: str) -> bytes:
    body = _chat(MODEL + "-idle", True).encode()
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{auth}\r\n"
    )
    return head.encode() + body


async def _hold_streams(gateway: str, pid: int, n: int, key: str, canary_s: int) -> dict[str, Any]:
    import asyncio

    host, _, port_text = gateway.removeprefix("http://").partition(":")
    port = int(port_text)
    request = _stream_request(host, port, key)
    gate = asyncio.Semaphore(64)  # connections being opened at once
    writers: list[asyncio.StreamWriter] = []
    failures: list[str] = []

    async def first_frame(reader: asyncio.StreamReader) -> bytes:
        got = b""
        while b"data:" not in got:
            if b"\r\n\r\n" in got and not got.startswith(b"HTTP/1.1 200"):
                break  # refused (a bound, a failure): said at once, not after a timeout
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError(f"closed before the first frame: {got[:80]!r}")
            got += chunk
        return got

    async def open_one() -> None:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
                writers.append(writer)
                writer.write(request)
                got = await asyncio.wait_for(first_frame(reader), 60)
                if not got.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(got[:80].decode(errors="replace"))
            except (OSError, TimeoutError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    chat = SCENARIOS["chat"]
    url = gateway + chat["path"]

    def canary() -> dict[str, Any]:
        return run_wrk(url, chat["body"], chat["expect"], 1, canary_s, key)

    quiet = await asyncio.to_thread(canary)
    # A few streams first, opened and closed: what the first stream costs once (code loaded
    # on first use, caches) is not a cost per open stream.
    await asyncio.gather(*(open_one() for _ in range(min(n, 64))))
    for w in writers:
        w.close()
    writers.clear()
    failures.clear()
    await asyncio.sleep(1)  # the gateway lets the closed ones go
    before = memory(pid)["rss_mb"]
    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(n)))
    opened_s = time.monotonic() - started
    held = memory(pid)["rss_mb"]
    busy = await asyncio.to_thread(canary)
    still = memory(pid)["rss_mb"]
    for w in writers:
        w.close()
    opened = n - len(failures)
    return {
        "streams": n,
        "opened": opened,
        "failed": len(failures),
        "first_failures": sorted(set(failures))[:3],
        "open_s": round(opened_s, 1),
        "rss_before_mb": round(before, 1),
        "rss_open_mb": round(held, 1),
        "rss_busy_mb": round(still, 1),  # after the canary ran beside the open streams
        "kb_per_stream": round((held - before) * 1024 / opened, 1) if opened else None,
        "canary_quiet": quiet,
        "canary_busy": busy,
    }


def hold_streams(gateway: str, pid: int, n: int, key: str, canary_s: int) -> dict[str, Any]:
    """Open ``n`` streams to hookgate whose upstream sends a first frame and then nothing, hold
    them all open, and measure hookgate's RSS per open stream and a canary's latency (chat at
    one connection) before and while they are open."""
    import asyncio

    try:
        import uvloop

        return uvloop.run(_hold_streams(gateway, pid, n, key, canary_s))
    except ImportError:  # pragma: no cover
        return asyncio.run(_hold_streams(gateway, pid, n, key, canary_s))


# --- other gateways (--compare) ----------------------------------------------------------------

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hookgate-bench"
#: What --compare installs (pinned, so runs compare like with like).
LITELLM = "litellm[proxy]==1.76.1"
PORTKEY = "@portkey-ai/gateway@1.15.2"
COMPARE = ("litellm", "portkey")
#: ``bench/floor.py``'s servers, measured with ``--floor``.
FLOORS = ("raw", "aiohttp")


def _tail(out: subprocess.CompletedProcess[str]) -> str:
    return (
        (out.stderr or out.stdout or "").strip().splitlines()[-1:][0]
        if (out.stderr or out.stdout)
        else f"status {out.returncode}"
    )


def install_litellm() -> Path:
    """LiteLLM's proxy in a virtualenv of its own under the cache; its ``litellm`` command."""
    venv = CACHE / "litellm"
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print(f"installing {LITELLM} into {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", LITELLM],
            capture_output=True,
            text=True,
        )
        if out.returncode or not exe.exists():
            raise RuntimeError(f"pip install {LITELLM} failed: {_tail(out)}")
    return exe


def install_portkey() -> Path:
    """Portkey's gateway from npm into a folder of its own under the cache; its server script."""
    folder = CACHE / "portkey"
    script = folder / "node_modules/@portkey-ai/gateway/build/start-server.js"
    if not script.exists():
        if not shutil.which("npm") or not shutil.which("node"):
            raise RuntimeError("needs node and npm (Debian: apt-get install nodejs npm)")
        print(f"installing {PORTKEY} into {folder}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), PORTKEY],
            capture_output=True,
            text=True,
        )
        if out.returncode or not script.exists():
            raise RuntimeError(f"npm install {PORTKEY} failed: {_tail(out)}")
    return script


def litellm_config(upstream: str) -> str:
    """LiteLLM's proxy relaying hookgate's bench models to the mock as an OpenAI upstream."""
    models = {MODEL: "mock-model", MODEL + "-long": "mock-long"}
    entries = "".join(
        f"  - model_name: {name}\n"
        f"    litellm_params:\n"
        f"      model: openai/{upstream_model}\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: bench\n"
        for name, upstream_model in models.items()
    )
    return f"model_list:\n{entries}litellm_settings:\n  telemetry: false\n"


def start_compared(
    name: str, stack: contextlib.ExitStack, logs: Path, upstream: str
) -> dict[str, Any]:
    """Install and start one of :data:`COMPARE` pointed at the mock; returns the target
    (``name``, ``url``, ``models``: hookgate's model -> its, ``key``, ``headers``, ``pid``).
    Raises RuntimeError (or SystemExit from :func:`wait_http`) saying why it could not."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if name == "litellm":
        exe = install_litellm()
        conf = logs / "litellm.yaml"
        conf.write_text(litellm_config(upstream))
        cmd = [str(exe), "--config", str(conf), "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--num_workers", "1"]
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        proc = stack.enter_context(process(cmd, logs / "litellm.log", env=env, cwd=logs))
        wait_http(url + "/health/liveliness", proc, timeout=300)
        models = {m: m for m in (MODEL, MODEL + "-long")}
        headers: dict[str, str] = {}
    else:
        script = install_portkey()
        cmd = ["node", str(script), f"--port={port}", "--headless"]
        proc = stack.enter_context(process(cmd, logs / "portkey.log", cwd=logs))
        wait_http(url + "/", proc, timeout=120)
        models = {MODEL: "mock-model", MODEL + "-long": "mock-long"}
        headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream + "/v1"}
    print(f"{name} {url} (logs in {logs})", flush=True)
    return {
        "name": name,
        "url": url,
        "models": models,
        "key": "bench",
        "headers": headers,
        "pid": proc.pid,
    }


def start_floor(
    server: str, stack: contextlib.ExitStack, logs: Path, upstream: str
) -> dict[str, Any]:
    """Start ``bench/floor.py`` on ``server`` (of :data:`FLOORS`) pointed at the mock; returns
    the target as :func:`start_compared` does. It sends the upstream what hookgate sends it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, str(BENCH / "floor.py"), "--server", server, "--port", str(port)]
    cmd += ["--upstream", upstream]
    proc = stack.enter_context(process(cmd, logs / f"floor-{server}.log"))
    wait_http(url + "/health", proc)
    name = f"floor {server}"
    print(f"{name} {url}", flush=True)
    models = {MODEL: "mock-model", MODEL + "-long": "mock-long"}
    return {"name": name, "url": url, "models": models, "key": "", "headers": {}, "pid": proc.pid}


def ask_for(body: str, model: str, theirs: str) -> str:
    """A scenario's body with hookgate's ``model`` replaced by another gateway's name for it."""
    return body.replace(f'"model":"{model}"', f'"model":"{theirs}"', 1)


# --- the run -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import aiohttp

    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:  # pragma: no cover
        uv = None
    cpu = ""
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = m.group(1).strip() if m else ""
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uv,
        "wrk": wrk_version.strip(),
        "kernel": platform.release(),
        "load_before": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark hookgate against the direct upstream (and other gateways)."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measurements per target, taken in turns with the other targets; the median's "
        "figures are reported (on a machine whose speed drifts, 3 or 5)",
    )
    parser.add_argument(
        "--connections", default="1,32", help="comma-separated connection counts (default 1,32)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)}, or all "
        f"(default {','.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument("--workers", type=int, default=1, help="hookgate worker processes")
    parser.add_argument(
        "--also-workers",
        type=int,
        default=0,
        metavar="N",
        help="also measure hookgate with N worker processes, in the same rounds (target "
        "'hookgate xN'): how it scales, free of the drift between two runs",
    )
    parser.add_argument("--chunks", type=int, default=50, help="frames per mock stream")
    parser.add_argument(
        "--long-chunks", type=int, default=1000, help="frames per stream of the long scenario"
    )
    parser.add_argument(
        "--idle-streams",
        type=int,
        default=10_000,
        help="streams the idle scenario holds open at once on hookgate",
    )
    parser.add_argument(
        "--compare",
        default="",
        metavar="NAMES",
        help=f"other gateways to install and measure alongside: of {','.join(COMPARE)}",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench/floor.py's relays (a raw protocol, an aiohttp application) "
        "through hookgate's upstream client: the floor under a Python hop",
    )
    parser.add_argument(
        "--rss-requests",
        type=int,
        default=100_000,
        help="requests sent after the measurements to see memory growth (0: skip)",
    )
    parser.add_argument("--upstream-port", type=int, help="fixed port for the mock upstream")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another gateway's base URL (pointed at the mock upstream) to measure alongside",
    )
    parser.add_argument("--target-model", default=MODEL, help="model name to ask --target for")
    parser.add_argument("--target-key", default="", help="API key to send to --target")
    parser.add_argument("--out", type=Path, help="result file (default bench/results/<time>.json)")
    parser.add_argument(
        "--no-nginx", action="store_true", help="skip the nginx hop (a plain reverse proxy)"
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure hookgate as it was at this git revision (e.g. main, HEAD~3)",
    )
    parser.add_argument(
        "--team",
        action="store_true",
        help="also measure hookgate with database keys, budgets, the ledger and traces on",
    )
    parser.add_argument("--database-url", default="", help="PostgreSQL for --team (default SQLite)")
    parser.add_argument("--redis-url", default="", help="Redis for --team (default: memory)")
    args = parser.parse_args(argv)

    ensure("wrk", "wrk")
    nginx = None if args.no_nginx else ensure("nginx", "nginx")
    baseline = baseline_python(args.baseline) if args.baseline else None
    conns = [int(c) for c in args.connections.split(",") if c]
    wanted = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    wanted = [s for s in wanted if s]
    for name in wanted:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    targets: list[dict[str, Any]] = []
    for spec in args.target:
        name, sep, url = spec.partition("=")
        if not sep or not url.startswith("http"):
            parser.error(f"--target takes NAME=URL, not {spec!r}")
        models = {MODEL: args.target_model, MODEL + "-long": args.target_model + "-long"}
        targets.append(
            {"name": name, "url": url.rstrip("/"), "models": models, "key": args.target_key}
        )
    compare = [c for c in args.compare.split(",") if c]
    for name in compare:
        if name not in COMPARE:
            parser.error(f"--compare knows {', '.join(COMPARE)}, not {name!r}")
    idle = 0
    if "idle" in wanted:
        idle = args.idle_streams
        limit = raise_open_files(3 * idle + 1024)
        if limit < 2 * idle + 256:
            # hookgate holds two sockets per open stream: the client's and its upstream's.
            print(
                f"warning: open files are limited to {limit} (ulimit -n), and hookgate holds "
                f"two per open stream: at most about {(limit - 256) // 2} can open",
                flush=True,
            )

    kinds = hookgate_kinds()
    info = machine()
    logs = Path(tempfile.mkdtemp(prefix="hookgate-bench-"))
    up_port = args.upstream_port or free_port()
    gw_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    gateway = f"http://127.0.0.1:{gw_port}"
    hop_port = free_port()
    hop = f"http://127.0.0.1:{hop_port}"
    base_port = free_port()
    based = f"http://127.0.0.1:{base_port}"
    config = logs / "hookgate.toml"
    # With --team both gateways ask for a key: TOML's here, the database's there.
    base_key = TOML_KEY if args.team else ""
    config.write_text(hookgate_config(upstream, kinds, base_key, idle=idle))
    base_config = logs / "baseline.toml"
    base_config.write_text(hookgate_config(upstream, kinds, base_key, routing=False))
    print(f"mock upstream {upstream}/v1, hookgate {gateway} (logs in {logs})", flush=True)

    mock_cmd = [sys.executable, str(BENCH / "mock_upstream.py"), "--port", str(up_port)]
    mock_cmd += ["--chunks", str(args.chunks), "--long-chunks", str(args.long_chunks)]
    gw_cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    gw_cmd += ["--port", str(gw_port), "--workers", str(args.workers)]
    results: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(process(mock_cmd, logs / "mock.log"))
        gw = stack.enter_context(process(gw_cmd, logs / "hookgate.log", env=_env()))
        wait_http(upstream + "/v1/models", mock)
        wait_http(gateway + "/health", gw)
        if nginx is not None:
            conf = nginx_config(logs, hop_port, up_port, args.workers)
            hop_proc = stack.enter_context(
                process([nginx, "-p", str(logs), "-c", str(conf)], logs / "nginx.log")
            )
            wait_http(hop + "/v1/models", hop_proc)
            print(f"nginx hop {hop}/v1", flush=True)
        pids = {"hookgate": gw.pid}
        more_name, more_url = "", ""
        if args.also_workers:
            more_name, more_port = f"hookgate x{args.also_workers}", free_port()
            more_url = f"http://127.0.0.1:{more_port}"
            more_cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
            more_cmd += ["--port", str(more_port), "--workers", str(args.also_workers)]
            more_proc = stack.enter_context(process(more_cmd, logs / "more.log", env=_env()))
            wait_http(more_url + "/health", more_proc)
            pids[more_name] = more_proc.pid
            print(f"{more_name} {more_url}", flush=True)
        base_name = ""
        if baseline is not None:
            python, sha = baseline
            base_name = f"hookgate@{args.baseline}"
            base_cmd = [python, "-m", "gateway", "serve", "--config", str(base_config)]
            base_cmd += ["--port", str(base_port), "--workers", str(args.workers)]
            # Run from outside the checkout, so the revision's installed copy is imported.
            base_proc = stack.enter_context(
                process(base_cmd, logs / "baseline.log", env=_env(), cwd=logs)
            )
            wait_http(based + "/health", base_proc)
            pids[base_name] = base_proc.pid
            print(f"{base_name} ({sha[:12]}) {based}", flush=True)
        team_key = ""
        if args.team:
            team_port, sink_port = free_port(), free_port()
            team = f"http://127.0.0.1:{team_port}"
            sink = stack.enter_context(
                process(
                    [sys.executable, str(BENCH / "otlp_sink.py"), "--port", str(sink_port)],
                    logs / "otlp.log",
                )
            )
            wait_http(f"http://127.0.0.1:{sink_port}/health", sink)
            team_config = logs / "hookgate-team.toml"
            team_config.write_text(
                hookgate_config(upstream, kinds) + team_sections(logs, args, kinds)
            )
            team_cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(team_config)]
            team_cmd += ["--port", str(team_port), "--workers", str(args.workers)]
            env = {**_env(), "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
            team_proc = stack.enter_context(process(team_cmd, logs / "team.log", env=env))
            wait_http(team + "/health", team_proc)
            team_key = new_team_key(team)
            pids["hookgate+team"] = team_proc.pid
            print(f"hookgate+team {team} (database keys, budgets, ledger, traces)", flush=True)
        for name in compare:
            try:
                t = start_compared(name, stack, logs, upstream)
            except (RuntimeError, SystemExit, OSError, subprocess.CalledProcessError) as exc:
                skipped[name] = f"could not be installed or started: {exc}"
                print(f"skipping {name}: {skipped[name]}", flush=True)
                continue
            targets.append(t)
            pids[name] = t["pid"]
        if args.floor:
            for server in FLOORS:
                t = start_floor(server, stack, logs, upstream)
                targets.append(t)
                pids[t["name"]] = t["pid"]
        # What a measurement waits to be idle before it starts (see quiet()).
        watched = [mock.pid, *pids.values()]
        if nginx is not None:
            watched.append(hop_proc.pid)
        if team_key:
            watched.append(sink.pid)
        for name in wanted:
            sc = SCENARIOS[name]
            if sc["kind"] not in kinds:
                skipped[name] = f"hookgate has no '{sc['kind']}' backend kind"
                print(f"skipping {name}: {skipped[name]}", flush=True)
                continue
            if sc.get("idle"):
                continue  # after the loads, below
            runs: list[tuple[str, str, str, str, str, dict[str, str]]] = []
            if sc["direct_path"]:
                du, db, de = upstream + sc["direct_path"], sc["direct_body"], sc["direct_expect"]
                runs.append(("direct", du, db, de, "", {}))
                if nginx is not None:
                    runs.append(("nginx", hop + sc["direct_path"], db, de, "", {}))
            runs.append(("hookgate", gateway + sc["path"], sc["body"], sc["expect"], base_key, {}))
            if more_name:
                runs.append(
                    (more_name, more_url + sc["path"], sc["body"], sc["expect"], base_key, {})
                )
            if team_key:
                runs.append(
                    ("hookgate+team", team + sc["path"], sc["body"], sc["expect"], team_key, {})
                )
            if base_name and not sc.get("routing"):
                runs.append((base_name, based + sc["path"], sc["body"], sc["expect"], base_key, {}))
            if sc.get("model"):
                for t in targets:
                    body = ask_for(sc["body"], sc["model"], t["models"][sc["model"]])
                    more = t.get("headers", {})
                    runs.append(
                        (t["name"], t["url"] + sc["path"], body, sc["loose"], t["key"], more)
                    )
            ready = []
            for run in runs:
                target, url, body, expect, key, more = run
                try:
                    check(url, body, expect, key, more)
                except WrongAnswer as exc:
                    if target not in compare:
                        raise SystemExit(str(exc)) from exc
                    skipped[f"{name} through {target}"] = str(exc)[:300]
                    print(f"skipping {name} through {target}: {exc}", flush=True)
                    continue
                if args.warmup:
                    run_wrk(url, body, expect, max(conns), args.warmup, key, more)
                ready.append(run)
            for c in conns:
                # Round after round, each target once a round: a drift of the machine's speed
                # (a neighbour's load on a VM) falls on every target alike.
                samples: dict[str, list[dict[str, Any]]] = {run[0]: [] for run in ready}
                for round_ in range(args.rounds):
                    # Every other round in the reverse order: no target always follows the
                    # same one.
                    for target, url, body, expect, key, more in (
                        ready if round_ % 2 == 0 else ready[::-1]
                    ):
                        waited = quiet(watched)
                        if waited >= QUIET_LIMIT:
                            print(f"(the machine did not quieten in {waited:.0f} s)", flush=True)
                        pid = pids.get(target)
                        cpu = cpu_seconds(pid) if pid else 0.0
                        r = run_wrk(url, body, expect, c, args.duration, key, more)
                        if pid and r["requests"]:
                            # CPU time the gateway spent per request: steadier than throughput
                            # on a machine whose load generator shares the cores.
                            r["cpu_us"] = round((cpu_seconds(pid) - cpu) / r["requests"] * 1e6, 1)
                        r.update(scenario=name, target=target, connections=c)
                        samples[target].append(r)
                        if args.rounds > 1:
                            print(f"{_line(r)}  (round {round_ + 1})", flush=True)
                for target in samples:
                    r = median_of(samples[target])
                    results.append(r)
                    print(_line(r), flush=True)
        mem = memory(gw.pid)
        growth = None
        if args.rss_requests:
            growth = rss_growth(gateway, gw.pid, args.rss_requests, wanted, kinds, base_key)
            print(
                f"memory: after a warm-up of {growth['warm_up_requests']} requests, "
                f"{growth['requests']} more grew hookgate's RSS by "
                f"{growth['growth_mb']:+.1f} MB ({growth['before_mb']:.1f} -> "
                f"{growth['after_mb']:.1f} MB), errors {growth['errors']}",
                flush=True,
            )
        mem_after = memory(gw.pid)
        idle = None
        if "idle" in wanted:
            print(f"holding {args.idle_streams} idle streams open on hookgate", flush=True)
            idle = hold_streams(gateway, gw.pid, args.idle_streams, base_key, args.duration)
            print(idle_line(idle), flush=True)

    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": conns,
            "workers": args.workers,
            "also_workers": args.also_workers,
            "chunks": args.chunks,
            "long_chunks": args.long_chunks,
            "baseline": args.baseline,
        },
        "results": results,
        "added": added(results),
        "paired": paired(results),
        "idle": idle,
        "hookgate_memory": {
            "after_measurements_mb": round(mem["rss_mb"], 1),
            "peak_rss_mb": round(max(mem["peak_rss_mb"], mem_after["peak_rss_mb"]), 1),
            "growth": growth,
        },
        "skipped": skipped,
    }
    out = args.out or BENCH / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    print(f"\nresults written to {out}")
    return 0


def rss_growth(
    gateway: str, pid: int, requests: int, scenarios: list[str], kinds: set[str], key: str = ""
) -> dict[str, Any]:
    """Send ``requests`` more requests (the run's wrk scenarios in turn, 32 connections, 5 s
    each) and measure how hookgate's RSS grew after a warm-up: the first tenth of them, and at
    least one turn of every scenario (what fills once, such as the AG-UI runs kept for
    resuming, up to their bound, is not growth). RSS after every turn is kept too."""
    # The scenarios of the run that are a wrk load (not the idle one): each in turn.
    names = [s for s in scenarios if "path" in SCENARIOS[s] and SCENARIOS[s]["kind"] in kinds]
    names = names or ["chat"]
    start = memory(pid)["rss_mb"]
    before: float | None = None
    warm = requests // 10
    warmed = 0
    sent = errors = total = 0
    i = 0
    series: list[list[float]] = []
    while sent < requests or before is None:
        sc = SCENARIOS[names[i % len(names)]]
        i += 1
        r = run_wrk(gateway + sc["path"], sc["body"], sc["expect"], 32, 5, key)
        sent += r["requests"]
        total += r["requests"]
        errors += r["errors"]
        rss = memory(pid)["rss_mb"]
        series.append([total, round(rss, 1)])
        if before is None and sent >= warm and i >= len(names):
            before, sent, warmed = rss, 0, total
    after = memory(pid)["rss_mb"]
    return {
        "requests": sent,
        "warm_up_requests": warmed,
        "start_mb": round(start, 1),
        "before_mb": round(before, 1),
        "after_mb": round(after, 1),
        "growth_mb": round(after - before, 1),
        "errors": errors,
        "series": series,
    }


def median_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The measurement of median throughput among a target's rounds (its latencies and CPU
    those of that same measurement), with every round's throughput and the errors of all."""
    if len(samples) == 1:
        return samples[0]
    ordered = sorted(samples, key=lambda r: r["rps"])
    r = dict(ordered[(len(ordered) - 1) // 2])
    r["rounds_rps"] = [s["rps"] for s in samples]
    r["errors"] = sum(s["errors"] for s in samples)
    return r


def _reference(target: str) -> str | None:
    """What a target is compared with round by round (:func:`paired`): a gateway with the team
    features, more workers or at another revision with plain hookgate; hookgate and the other
    gateways with the nginx hop."""
    if target.startswith(("hookgate+", "hookgate x", "hookgate@")):
        return "hookgate"
    if target in ("direct", "nginx"):
        return None
    return "nginx"


def paired(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario and connection count, each target's throughput over its reference's
    (:func:`_reference`) in every round, and the median of those ratios. A round measures the
    targets one after the other: on a machine whose speed drifts from second to second, a
    ratio within a round is steadier than the ratio of two medians taken in different rounds."""
    by = {(r["scenario"], r["target"], r["connections"]): r for r in results}
    out = []
    for (scenario, target, c), r in by.items():
        name = _reference(target)
        ref = by.get((scenario, name, c)) if name else None
        if ref is None:
            continue
        mine, theirs = r.get("rounds_rps"), ref.get("rounds_rps")
        if not mine or not theirs or len(mine) != len(theirs) or not all(theirs):
            continue
        ratios = [round(a / b, 3) for a, b in zip(mine, theirs, strict=True)]
        ordered = sorted(ratios)
        n = len(ordered)
        middle = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        out.append(
            {
                "scenario": scenario,
                "target": target,
                "reference": name,
                "connections": c,
                "ratios": ratios,
                "median": round(middle, 3),
            }
        )
    return out


def paired_lines(report: dict[str, Any]) -> list[str]:
    rows = report.get("paired") or []
    if not rows:
        return []
    lines = ["", "round by round (each round's throughput over its reference's, and the median):"]
    for p in rows:
        lines.append(
            f"  {p['scenario']:<11} c={p['connections']:<3} {p['target']} / {p['reference']}: "
            f"{p['median']:.2f}  ({' '.join(f'{x:.2f}' for x in p['ratios'])})"
        )
    return lines


def added(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """hookgate minus direct, per scenario and connection count."""
    by = {(r["scenario"], r["target"], r["connections"]): r for r in results}
    out = []
    for (scenario, target, c), r in by.items():
        if target == "direct" or not r["requests"]:
            continue
        d = by.get((scenario, "direct", c))
        if d is None or r["p50_ms"] is None or d["p50_ms"] is None:
            continue
        out.append(
            {
                "scenario": scenario,
                "target": target,
                "connections": c,
                "added_p50_ms": round(r["p50_ms"] - d["p50_ms"], 3),
                "added_p99_ms": round(r["p99_ms"] - d["p99_ms"], 3),
            }
        )
    return out


def idle_line(idle: dict[str, Any]) -> str:
    q, b = idle["canary_quiet"], idle["canary_busy"]
    per = f"{idle['kb_per_stream']:.1f} KB" if idle["kb_per_stream"] is not None else "-"
    after = idle.get("rss_busy_mb")
    busy = f" ({after:.1f} MB after the canary)" if after is not None else ""
    return (
        f"idle streams: {idle['opened']} of {idle['streams']} open at once "
        f"(opened in {idle['open_s']:.0f} s, {idle['failed']} failed), hookgate RSS "
        f"{idle['rss_before_mb']:.1f} -> {idle['rss_open_mb']:.1f} MB: {per} per open stream"
        f"{busy}; "
        f"canary (chat, 1 connection) p50 {q['p50_ms']:.3f} -> {b['p50_ms']:.3f} ms, "
        f"p99 {q['p99_ms']:.3f} -> {b['p99_ms']:.3f} ms, {b['rps']:.0f}/s, errors {b['errors']}"
    )


def per_chunk(report: dict[str, Any]) -> list[str]:
    """Time each gateway adds per frame of the long stream (p50 at the fewest connections)."""
    chunks = report["settings"].get("long_chunks") or 0
    rows = [a for a in report["added"] if a["scenario"] == "long"]
    if not rows or not chunks:
        return []
    least = min(a["connections"] for a in rows)
    parts = [
        f"{a['target']} {a['added_p50_ms'] * 1000 / chunks:.2f} us"
        for a in rows
        if a["connections"] == least
    ]
    return [f"long streams, time added per chunk (p50, {least} connection(s)): " + ", ".join(parts)]


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['scenario']:<11} {r['target']:<16} c={r['connections']:<3} "
        f"{r['rps']:>10.0f}/s  p50 {r['p50_ms']:>8.3f} ms  p99 {r['p99_ms']:>8.3f} ms  "
        f"errors {r['errors']}" + (f"  cpu {r['cpu_us']:.0f} us/req" if "cpu_us" in r else "")
    )


def table(report: dict[str, Any]) -> str:
    rows = [
        (
            "scenario",
            "target",
            "conns",
            "req/s",
            "x nginx",
            "p50 ms",
            "p99 ms",
            "added p50",
            "cpu us/req",
            "errors",
        )
    ]
    add = {(a["scenario"], a["target"], a["connections"]): a for a in report["added"]}
    hop = {
        (r["scenario"], r["connections"]): r["rps"]
        for r in report["results"]
        if r["target"] == "nginx"
    }
    for r in report["results"]:
        a = add.get((r["scenario"], r["target"], r["connections"]))
        n = hop.get((r["scenario"], r["connections"]))
        rows.append(
            (
                r["scenario"],
                r["target"],
                str(r["connections"]),
                f"{r['rps']:.0f}",
                f"{r['rps'] / n:.2f}" if n else "",
                f"{r['p50_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"{a['added_p50_ms']:+.3f}" if a else "",
                f"{r['cpu_us']:.0f}" if "cpu_us" in r else "",
                str(r["errors"]) if r["requests"] else "none done",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    mem = report["hookgate_memory"]
    lines.append("")
    lines.append(f"hookgate peak RSS: {mem['peak_rss_mb']:.1f} MB")
    if mem["growth"]:
        g = mem["growth"]
        lines.append(
            f"hookgate RSS growth over {g['requests']} requests after warm-up: "
            f"{g['growth_mb']:+.1f} MB"
        )
    lines += per_chunk(report)
    lines += paired_lines(report)
    if report.get("idle"):
        lines.append(idle_line(report["idle"]))
    for name, why in report["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    m = report["machine"]
    lines.append(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, aiohttp {m['aiohttp']}, "
        f"uvloop {m['uvloop']}, {m['wrk']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
