"""The console in a real browser: Debian's Chromium, headless, driven by playwright, against a
gateway in this test's event loop. Each test leaves screenshots of what it saw in
``test-output/console/`` (see ``support.browser``)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

import openai
import pytest
from fakes.openai_upstream import CANCELLED
from playwright.async_api import Page, expect
from support.browser import Tab, chromium
from support.configs import upstream_config
from support.waiting import until

USER_KEY = "sk-console-user"
#: The fake upstream is ``gpt-test``; echo streams a word every 20 ms; the agent ``helper``
#: thinks with the fake upstream and has the get_weather tool.
TOOLS = ["fakes.tools:get_weather", "fakes.tools:get_time"]


def console_config(upstream: Any, *, keys: bool = True) -> dict[str, Any]:
    cfg = upstream_config(upstream)
    cfg["backends"]["echo"] = {"kind": "echo", "delay": 0.02}
    cfg["models"]["echo"] = {"backend": "echo"}
    cfg["agents"] = {
        "helper": {
            "model": "gpt-test",
            "system": "You help.",
            "tools": TOOLS,
            "description": "Looks up the weather and the time.",
        }
    }
    if keys:
        cfg["auth"] = {"keys": [{"key": USER_KEY, "name": "playground"}]}
    return cfg


@pytest.fixture
async def browser() -> Any:
    async with chromium() as b:
        yield b


@pytest.fixture
async def open_tab(browser: Any) -> Any:
    """``await open_tab(client, width=1280)``: a new page on the console of a gateway under
    test; after the test, no page may have logged an error (a CSP violation is one)."""
    tabs: list[Tab] = []

    async def make(client: Any, width: int = 1280, height: int = 860) -> Tab:
        context = await browser.new_context(viewport={"width": width, "height": height})
        tab = Tab(await context.new_page())
        tabs.append(tab)
        await tab.page.goto(str(client.make_url("/")))
        return tab

    yield make
    for tab in tabs:
        assert tab.errors == [], tab.errors


async def signed_in(make_gateway: Any, upstream: Any, open_tab: Any) -> Tab:
    """A gateway with :func:`console_config`, and a console page signed in with the user key."""
    tab = await open_tab(await make_gateway(console_config(upstream)))
    await sign_in(tab.page)
    return tab


async def sign_in(page: Page, key: str = USER_KEY) -> None:
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Chat")).to_be_visible()


async def focus_after(page: Page, key: str) -> str:
    """Press ``key``; the id, link target or text of the element that has the focus then."""
    await page.keyboard.press(key)
    return await page.evaluate(
        "(() => { const e = document.activeElement;"
        " return e.id || e.getAttribute('href') || e.textContent.trim(); })()"
    )


async def test_sign_in_and_stream_a_chat_from_echo(make_gateway, upstream, open_tab):
    client = await make_gateway(console_config(upstream))
    tab = await open_tab(client)
    page = tab.page
    assert page.url.endswith("/ui/")
    await tab.screenshot("sign-in")
    await sign_in(page)
    assert await page.evaluate("sessionStorage.length") == 1
    assert await page.evaluate("localStorage.length") == 0

    await page.get_by_label("Model").select_option("echo")
    await page.get_by_label("System prompt").fill("Answer briefly.")
    await page.get_by_label("Temperature").fill("0.3")
    await page.get_by_label("Max tokens").fill("64")
    words = " ".join(f"word{i}" for i in range(40))
    await page.get_by_label("Message").fill(words)
    # The snippets show the request about to be sent, with the key left to the environment.
    code = page.locator("#chat-code-text")
    await expect(code).to_contain_text('"max_tokens": 64')
    await expect(code).to_contain_text("$HOOKGATE_API_KEY")
    await page.get_by_role("button", name="Send").click()

    answer = page.locator("#chat-log .msg.assistant .bubble-text").last
    # Token by token: the answer is seen part-written before it is whole.
    await expect(answer).to_contain_text("word5")
    partial = await answer.inner_text()
    assert "word39" not in partial
    await expect(answer).to_have_text(words)
    await expect(page.locator("#chat-status")).to_contain_text("Done in")
    await expect(page.locator("#chat-status")).to_contain_text("tokens in")

    sent = [r for r in tab.requests if r.url.endswith("/v1/chat/completions")]
    assert len(sent) == 1
    body = sent[0].post_data_json
    assert body["model"] == "echo" and body["stream"] is True
    assert body["temperature"] == 0.3 and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert (await sent[0].all_headers())["authorization"] == f"Bearer {USER_KEY}"
    assert not any(USER_KEY in r.url for r in tab.requests)
    await tab.screenshot("chat")


async def test_a_wrong_key_is_refused_and_a_user_key_sees_no_admin_views(
    make_gateway, upstream, open_tab
):
    client = await make_gateway(console_config(upstream))
    tab = await open_tab(client)
    page = tab.page
    await page.get_by_label("API key").fill("sk-wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That key was not accepted.")
    assert await page.evaluate("sessionStorage.length") == 0
    tab.errors.remove(next(e for e in tab.errors if "401" in e))  # the refused whoami
    await sign_in(page)
    nav = page.get_by_role("navigation", name="Views")
    await expect(nav.get_by_role("link", name="Chat")).to_be_visible()
    await expect(nav.get_by_role("link", name="Routes")).to_be_hidden()
    await expect(page.locator("#who-name")).to_have_text("playground")
    await page.goto(str(client.make_url("/ui/#plugins")))  # a reload: the key is kept
    await expect(page.get_by_role("heading", name="Chat")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_an_agent_run_shows_its_tool_call_and_result(make_gateway, upstream, open_tab):
    tab = await signed_in(make_gateway, upstream, open_tab)
    page = tab.page
    await page.get_by_role("link", name="Agents").click()
    await expect(page.get_by_label("Agent", exact=True)).to_have_value("helper")
    await expect(page.locator("#agent-tools")).to_contain_text("get_weather")
    await page.get_by_label("Task for the agent").fill('CALL get_weather {"city": "Paris"}')
    await page.get_by_role("button", name="Run").click()

    tool = page.locator("#agent-log .ev.tool")
    await expect(tool).to_have_count(1)
    await expect(tool.locator(".tool-name")).to_have_text("get_weather")
    await expect(tool.locator(".args")).to_contain_text('"city": "Paris"')
    await expect(tool.locator(".result")).to_contain_text('"temperature": 21')
    final = page.locator("#agent-log .msg.final")
    await expect(final).to_contain_text("Final answer")
    await expect(final).to_contain_text("results:")
    await expect(page.locator("#agent-log")).to_contain_text("Run finished")
    steps = await page.locator("#agent-log .ev.step").all_inner_texts()
    assert [s.lower() for s in steps] == ["step 1", "step 2"]
    await expect(page.locator("#agent-code-text")).to_contain_text("/agui/agents/helper/runs")
    await tab.screenshot("agents")


async def test_stop_cancels_the_upstream_request_of_a_chat(make_gateway, upstream, open_tab):
    tab = await signed_in(make_gateway, upstream, open_tab)
    page = tab.page
    await page.get_by_label("Model").select_option("gpt-test")
    await page.get_by_label("Message").fill("DRIP")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#chat-log .msg.assistant")).to_contain_text("drip drip")
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator("#chat-status")).to_have_text("Stopped: the request was cancelled.")
    # The gateway saw its client go and dropped the upstream request (which drips for a minute).
    await until(lambda: "DRIP" in upstream.app[CANCELLED], what="the upstream request cancelled")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()


async def test_stop_cancels_an_agent_run_and_its_upstream_request(make_gateway, upstream, open_tab):
    tab = await signed_in(make_gateway, upstream, open_tab)
    page = tab.page
    await page.get_by_role("link", name="Agents").click()
    await page.get_by_label("Task for the agent").fill("DRIP")
    await page.get_by_role("button", name="Run").click()
    await expect(page.locator("#agent-log .msg.assistant")).to_contain_text("drip drip")
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator("#agent-log")).to_contain_text("Run cancelled")
    await expect(page.locator("#agent-status")).to_have_text("Stopped: the run was cancelled.")
    await until(lambda: "DRIP" in upstream.app[CANCELLED], what="the upstream request cancelled")
    await tab.screenshot("agents-stopped")


async def test_admin_views_on_an_open_gateway(make_gateway, upstream, open_tab):
    client = await make_gateway(console_config(upstream, keys=False))
    tab = await open_tab(client)
    page = tab.page
    # No keys: no sign-in, and the caller may see everything.
    await expect(page.get_by_role("heading", name="Chat")).to_be_visible()
    await expect(page.locator("#who-name")).to_have_text("open gateway")
    nav = page.get_by_role("navigation", name="Views")

    await nav.get_by_role("link", name="Routes").click()
    routes = page.locator("#routes-body table")
    await expect(routes).to_contain_text("gpt-test")
    await expect(routes).to_contain_text("up-model")
    await expect(routes).to_contain_text("helper")
    await expect(page.locator("#routes-body .facts")).to_contain_text("ok")
    await tab.screenshot("routes")

    await nav.get_by_role("link", name="Plugins").click()
    plugins = page.locator("#plugins-body table")
    row = plugins.locator("tr", has=page.locator("code", has_text=re.compile("^console$")))
    await expect(row).to_contain_text("0.2.0")
    await expect(row).to_contain_text("configure_app")
    await tab.screenshot("plugins")
    await page.emulate_media(color_scheme="dark")  # the page follows the system's theme
    await tab.screenshot("plugins-dark")
    await page.emulate_media(color_scheme="light")

    for view in ("Keys", "Spend"):
        await nav.get_by_role("link", name=view).click()
        body = page.locator(f"#{view.lower()}-body")
        await expect(body).to_contain_text("not configured")
        await tab.screenshot(view.lower())

    # A chat, then a failed one: the Requests view lists both, newest first.
    await nav.get_by_role("link", name="Chat").click()
    await page.get_by_label("Message").fill("count me")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#chat-status")).to_contain_text("Done in")
    await page.get_by_label("Message").fill("STATUS:500")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#chat-status")).to_have_class(re.compile("error"))
    tab.errors.remove(next(e for e in tab.errors if "502" in e))  # the failed chat
    await nav.get_by_role("link", name="Requests").click()
    rows = page.locator("#requests-body tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("502")
    await expect(rows.nth(1)).to_contain_text("ok")
    await expect(rows.nth(1)).to_contain_text("gpt-test")
    await tab.screenshot("requests")


async def test_routes_show_each_targets_circuit_from_health(make_gateway, upstream, open_tab):
    """/health lists, per model with several targets, each target's circuit: the page puts
    each beside its target (this gateway's /health is stood in for by the browser)."""
    client = await make_gateway(console_config(upstream, keys=False))
    tab = await open_tab(client)
    page = tab.page
    targets = [{"target": "up/up-model", "state": "open", "fails": 3, "inflight": 0}]
    body = {"status": "ok", "version": "0.2.0", "models": {"gpt-test": targets}}
    await page.route("**/health", lambda route: route.fulfill(json=body))
    await page.get_by_role("navigation", name="Views").get_by_role("link", name="Routes").click()
    row = page.locator("#routes-body tbody tr", has=page.locator("code", has_text="gpt-test"))
    await expect(row).to_contain_text("cooling down")
    await expect(row).to_contain_text("open")
    await expect(row).to_contain_text("3 failed")
    echo = page.locator("#routes-body tbody tr", has=page.locator("code", has_text="echo"))
    await expect(echo.locator("td").nth(2)).to_have_text("\N{EN DASH}")  # no state reported
    await tab.screenshot("routes-circuits")


ADMIN_KEY = "sk-console-admin"


async def test_an_admin_creates_revokes_keys_and_sees_their_spend(
    make_gateway, upstream, open_tab, sdk, tmp_path
):
    cfg = console_config(upstream)
    cfg["admin"] = {"keys": [ADMIN_KEY]}
    cfg["database"] = {"data_dir": str(tmp_path)}
    # USD per million tokens: large, so a few tokens cost cents.
    cfg["models"]["echo"]["price"] = {"input": 1000, "output": 2000}
    client = await make_gateway(cfg)
    tab = await open_tab(client)
    page = tab.page
    await page.get_by_label("API key").fill(ADMIN_KEY)
    await page.get_by_role("button", name="Sign in").click()
    # An admin key calls no models: the admin views only.
    await expect(page.get_by_role("heading", name="Routes")).to_be_visible()
    nav = page.get_by_role("navigation", name="Views")
    await expect(nav.get_by_role("link", name="Chat")).to_be_hidden()
    await expect(nav.get_by_role("link", name="Keys")).to_be_visible()

    await nav.get_by_role("link", name="Keys").click()
    await expect(page.locator("#keys-list")).to_contain_text("No keys yet.")
    await page.get_by_label("Name").fill("ci-bot")
    await page.get_by_label("Models").fill("echo, gpt-test")
    await page.get_by_label("Requests / min").fill("60")
    await page.get_by_label("Budget / day (USD)").fill("5")
    await page.get_by_role("button", name="Create key").click()
    secret_box = page.locator("#new-secret")
    await expect(secret_box).to_have_text(re.compile(r"^hg-\S+$"))
    await expect(page.locator("#key-secret")).to_contain_text("not shown again")
    secret = await secret_box.inner_text()
    row = page.locator("#keys-list tbody tr", has_text="ci-bot")
    await expect(row).to_contain_text("echo, gpt-test")
    await expect(row).to_contain_text("60 req/min")
    await expect(row).to_contain_text("$5.00/day")
    await expect(row).to_contain_text(secret[-4:])  # the hint, never the secret
    await expect(row).not_to_contain_text(secret)
    await tab.screenshot("keys")

    # The new key works at once, and its requests are priced and kept in the ledger.
    api = sdk(client, api_key=secret)
    for text in ("spend one", "spend two"):
        await api.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": text}], max_tokens=20
        )

    async def ledger_rows() -> bool:
        resp = await client.get("/admin/spend", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        return sum(r["requests"] for r in (await resp.json())["data"]) == 2

    await until(ledger_rows, what="two rows in the spend ledger")
    await page.locator("#key-secret").get_by_role("button", name="Done").click()
    await expect(secret_box).to_have_count(0)

    await nav.get_by_role("link", name="Spend").click()
    spend = page.locator("#spend-content")
    await expect(spend.locator(".facts")).to_contain_text("Requests2")
    await expect(spend.get_by_role("region", name="Spend by key")).to_contain_text("ci-bot")
    await expect(spend.get_by_role("region", name="Spend by model")).to_contain_text("echo")
    bars = spend.locator("svg.chart rect.bar")
    await expect(bars).to_have_count(30)
    heights = await bars.evaluate_all("bars => bars.map(b => Number(b.getAttribute('height')))")
    assert heights[-1] > 0 and heights[:-1] == [0] * 29  # all of it today
    await tab.screenshot("spend")

    await nav.get_by_role("link", name="Requests").click()
    request_rows = page.locator("#requests-body tbody tr")
    await expect(request_rows).to_have_count(2)
    await expect(request_rows.first).to_contain_text("ci-bot")
    await expect(request_rows.first).to_contain_text("$0.")

    await nav.get_by_role("link", name="Keys").click()
    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Revoke ci-bot").click()
    await expect(page.locator("#keys-list")).to_contain_text("No keys yet.")
    with pytest.raises(openai.AuthenticationError):
        await api.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "x"}], max_tokens=20
        )
    await page.get_by_label("Show revoked keys").check()
    await expect(page.locator("#keys-list tbody tr", has_text="ci-bot")).to_contain_text("revoked")

    # The admin views at 360 px: one column, tables as labelled cards, nothing wider.
    await page.set_viewport_size({"width": 360, "height": 780})
    for view in ("Keys", "Spend", "Routes"):
        await nav.get_by_role("link", name=view).click()
        await expect(page.get_by_role("heading", name=view, exact=True)).to_be_visible()
        await expect(page.locator(f"#{view.lower()}-body table").first).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360, view
        await tab.screenshot(f"{view.lower()}-360")


async def test_keyboard_only_and_a_narrow_screen(make_gateway, upstream, open_tab):
    client = await make_gateway(console_config(upstream))
    tab = await open_tab(client, width=360, height=780)
    page = tab.page
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.keyboard.type(USER_KEY)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Chat")).to_be_visible()

    # Signed in, focus is on the view; Tab walks the chat's fields in reading order, and
    # Shift+Tab walks back through the bar: sign-out, the views, the brand, the skip link.
    await expect(page.locator("main")).to_be_focused()
    forward = [await focus_after(page, "Tab") for _ in range(9)]
    assert forward == [
        "chat-model",
        "chat-system",
        "chat-temperature",
        "chat-max-tokens",
        "chat-input",
        "chat-send",
        "chat-clear",
        "chat-code-tab-curl",
        "Copy",
    ], forward
    await page.get_by_label("Model").focus()
    back = [await focus_after(page, "Shift+Tab") for _ in range(5)]
    assert back == ["sign-out", "#agents", "#chat", "#chat", "#main"], back
    await page.get_by_label("Model").focus()
    # Focus is visible: the focused field has an outline.
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"

    await page.get_by_label("Message").focus()
    await page.keyboard.type("hello from a phone")
    await page.keyboard.press("Enter")
    await expect(page.locator("#chat-log .msg.assistant .bubble-text")).to_have_text(
        "upstream says: hello from a phone"
    )
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width}px wide at 360px"
    await tab.screenshot("chat-360")

    await page.get_by_role("link", name="Agents").click()
    await page.get_by_label("Task for the agent").fill('CALL get_time {"tz": "CET"}')
    await page.get_by_label("Task for the agent").press("Enter")
    await expect(page.locator("#agent-log .ev.tool .result")).to_contain_text("12:00 CET")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await tab.screenshot("agents-360")


async def run_snippet(command: list[str], key: str) -> str:
    """Run a copied snippet as a user would, with the key in ``HOOKGATE_API_KEY``."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "HOOKGATE_API_KEY": key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


async def copied(page: Page, panel: str, lang: str) -> str:
    await page.locator(f"#{panel}-tab-{lang}").click()
    return await page.locator(f"#{panel}-text").inner_text()


async def test_the_requests_to_copy_run_as_shown(make_gateway, upstream, open_tab):
    tab = await signed_in(make_gateway, upstream, open_tab)
    page = tab.page
    await page.get_by_label("Model").select_option("echo")
    await page.get_by_label("System prompt").fill("Be brief.")
    await page.get_by_label("Message").fill("it's copied")
    python = await copied(page, "chat-code", "python")
    assert "HOOKGATE_API_KEY" in python and USER_KEY not in python
    assert await run_snippet([sys.executable, "-c", python], USER_KEY) == "it's copied\n"
    curl = await copied(page, "chat-code", "curl")
    out = await run_snippet(["bash", "-c", curl], USER_KEY)
    assert '"content":"copied"' in out and out.rstrip().endswith("data: [DONE]")
    typescript = await copied(page, "chat-code", "typescript")
    assert '"model": "echo"' in typescript and "process.env.HOOKGATE_API_KEY" in typescript
    await tab.screenshot("chat-python")

    await page.get_by_role("link", name="Agents").click()
    await page.get_by_label("Task for the agent").fill('CALL get_weather {"city": "Oslo"}')
    python = await copied(page, "agent-code", "python")
    out = await run_snippet([sys.executable, "-c", python], USER_KEY)
    assert "TOOL_CALL_START get_weather" in out and "RUN_FINISHED" in out, out
    assert 'TOOL_CALL_RESULT {"city":"Oslo"' in out, out


async def test_routes_show_the_targets_of_a_routed_model(make_gateway, upstream, open_tab):
    """A model with two targets: the Routes view lists both, with the circuit /health reports."""
    cfg = console_config(upstream, keys=False)
    cfg["models"]["duo"] = {
        "strategy": "fallback",
        "targets": [{"backend": "up", "upstream_model": "up-model"}, {"backend": "echo"}],
    }
    client = await make_gateway(cfg)
    health = await (await client.get("/health")).json()
    assert [t["state"] for t in health["models"]["duo"]] == ["closed", "closed"]
    tab = await open_tab(client)
    page = tab.page
    await page.get_by_role("navigation", name="Views").get_by_role("link", name="Routes").click()
    rows = page.locator("#routes-body tbody tr")
    first = rows.filter(has=page.locator("code", has_text="duo"))
    await expect(first).to_contain_text("fallback")
    await expect(first).to_contain_text("up-model")
    await expect(first).to_contain_text("healthy")
    second = first.locator("xpath=following-sibling::tr[1]")
    await expect(second).to_contain_text("echo")
    await expect(second).to_contain_text("closed")
    # A request through it: the target that answered has a latency now.
    await client.post(
        "/v1/chat/completions",
        json={"model": "duo", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    )
    health = await (await client.get("/health")).json()
    assert health["models"]["duo"][0]["latency_ms"] is not None
    await page.get_by_role("navigation", name="Views").get_by_role("link", name="Plugins").click()
    await page.get_by_role("navigation", name="Views").get_by_role("link", name="Routes").click()
    await expect(first.locator("td").last).to_have_text(re.compile(r"^[\d.]+ ms$"))
    await tab.screenshot("routes-targets")
