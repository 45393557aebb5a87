"""GraphiQL as a person uses it: Debian's chromium, headless, driven over the DevTools Protocol.

The page comes from a demo gateway serving the pinned assets from a local folder, under its
Content-Security-Policy; the test clicks the run button and reads the result pane.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support.gateway import GatewayFactory
from tests.support.graphiql_assets import downloaded_assets

# Drives chromium.
pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--window-size=1680,900",
    "--remote-debugging-port=0",
)

#: Set to a path to keep the screenshot (README's image is made this way).
SCREENSHOT_VARIABLE = "GRAPHIQL_SCREENSHOT"

# Records what the page's policy refused, before any of the page's own scripts run.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


class Browser:
    """One headless chromium and one page of it, spoken to over the DevTools Protocol."""

    def __init__(self, socket: ClientConnection, session: str) -> None:
        self.socket = socket
        self.session = session
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command to the page and wait for its answer, keeping events meanwhile."""
        ident = next(self.ids)
        message = {"id": ident, "method": method, "params": params, "sessionId": self.session}
        self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(self.socket.recv(timeout=30))
            if answer.get("id") == ident:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if "method" in answer:
                self.events.append(answer)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll an expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element."""
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left",
                clickCount=1,
            )

    def requested_urls(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event["method"] == "Network.requestWillBeSent"
        ]

    def console_messages(self) -> list[str]:
        messages = []
        for event in self.events:
            if event["method"] == "Log.entryAdded":
                messages.append(
                    f"{event['params']['entry']['level']}: {event['params']['entry']['text']}"
                )
            elif event["method"] == "Runtime.consoleAPICalled":
                texts = [
                    str(arg.get("value", arg.get("description", "")))
                    for arg in event["params"]["args"]
                ]
                messages.append(f"{event['params']['type']}: {' '.join(texts)}")
            elif event["method"] == "Runtime.exceptionThrown":
                messages.append(f"exception: {event['params']['exceptionDetails']}")
        return messages


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("PCS_GATEWAY_TESTS_STRICT"):
            pytest.fail("chromium is missing: apt-get install chromium")
        pytest.skip("chromium is not installed (Debian package chromium)")
    profile = tempfile.mkdtemp(prefix="pcs-gateway-chromium-")
    process = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as socket:
            socket.send(
                json.dumps(
                    {"id": 0, "method": "Target.createTarget", "params": {"url": "about:blank"}}
                )
            )
            target = _answer(socket, 0)["targetId"]
            socket.send(
                json.dumps(
                    {
                        "id": -1,
                        "method": "Target.attachToTarget",
                        "params": {"targetId": target, "flatten": True},
                    }
                )
            )
            session = _answer(socket, -1)["sessionId"]
            page = Browser(socket, session)
            for domain in ("Page", "Network", "Runtime", "Log"):
                page.send(f"{domain}.enable")
            page.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_VIOLATIONS)
            yield page
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _answer(socket: ClientConnection, ident: int) -> dict[str, Any]:
    while True:
        message = json.loads(socket.recv(timeout=30))
        if message.get("id") == ident:
            result: dict[str, Any] = message["result"]
            return result


RESULT_TEXT = "document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue()"


def test_graphiql_runs_the_demo_query_from_local_assets_under_its_csp(
    browser: Browser, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    assets = downloaded_assets()
    gateway = start_gateway(demo=True, graphiql_assets_dir=assets)
    browser.send("Page.navigate", url=f"{gateway.url}/graphql")

    # GraphiQL is up when its editor holds the opening query and the schema has loaded.
    browser.wait_for("document.querySelector('.graphiql-execute-button') !== null")
    browser.wait_for(
        "document.querySelector('.graphiql-query-editor .CodeMirror')"
        "?.CodeMirror?.getValue().includes('demo-full')"
    )
    browser.click(".graphiql-execute-button")
    text = browser.wait_for(f"({RESULT_TEXT} || '').includes('demo-full') && {RESULT_TEXT}")
    result = json.loads(text)
    cluster = result["data"]["cluster"]
    assert cluster["name"] == "demo-full"
    assert cluster["status"] == "ACTIVE"
    assert [e["type"] for e in cluster["endpoints"]] == ["SLURMCTLD", "SLURMDBD", "SLURMRESTD"]

    tabs = browser.evaluate(
        "[...document.querySelectorAll('.graphiql-tab-button')].map(t => t.textContent.trim())"
    )
    assert tabs[:1] == ["DemoCluster"]
    assert {"ClusterFull", "ClusterStatus", "ClustersBatch", "SlurmRest"} <= set(tabs)

    # The explorer plugin lists Query's fields.
    browser.click('button[aria-label="Show GraphiQL Explorer"]')
    explorer = browser.wait_for("document.querySelector('.graphiql-explorer-root')?.innerText")
    assert "cluster" in explorer and "clusters" in explorer

    png = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    (tmp_path / "graphiql.png").write_bytes(png)
    if keep := os.environ.get(SCREENSHOT_VARIABLE):
        Path(keep).write_bytes(png)

    # A dialog makes GraphiQL add a <style> element: allowed by the page's nonce alone.
    browser.click('button[aria-label="Open settings dialog"]')
    browser.wait_for("document.querySelector('.graphiql-dialog') !== null")
    assert browser.wait_for("document.querySelectorAll('style').length") >= 1

    origin = gateway.url + "/"
    left = [u for u in browser.requested_urls() if not u.startswith((origin, "data:"))]
    assert left == [], "requests left 127.0.0.1"
    assert browser.evaluate("window.__cspViolations") == []
    problems = [m for m in browser.console_messages() if "Content Security Policy" in m]
    assert problems == []
    assert not [m for m in browser.console_messages() if m.startswith("exception")]


SUBSCRIPTION = (
    'subscription WatchDemo { clusterUpdated(identifier: "demo-active") { name status } }'
)
QUERY_EDITOR = "document.querySelector('.graphiql-query-editor .CodeMirror')?.CodeMirror"


def test_graphiql_subscribes_and_shows_a_status_change_under_its_csp(
    browser: Browser, start_gateway: GatewayFactory
) -> None:
    assets = downloaded_assets()
    gateway = start_gateway(
        demo=True,
        graphiql_assets_dir=assets,
        cache_ttl_settled_seconds=1,
        cache_ttl_transitional_seconds=1,
    )
    emulator = gateway.app.state.gateway.demo_endpoint
    browser.send("Page.navigate", url=f"{gateway.url}/graphql")
    browser.wait_for(f"({QUERY_EDITOR}?.getValue() || '').includes('demo-full')")
    browser.evaluate(f"{QUERY_EDITOR}.setValue({json.dumps(SUBSCRIPTION)})")
    # GraphiQL has read the new document once the tab is named for its operation.
    browser.wait_for(
        "document.querySelector('.graphiql-tab-active .graphiql-tab-button')"
        "?.textContent.trim() === 'WatchDemo'"
    )
    browser.click(".graphiql-execute-button")
    first = browser.wait_for(f"({RESULT_TEXT} || '').includes('clusterUpdated') && {RESULT_TEXT}")
    assert json.loads(first) == {
        "data": {"clusterUpdated": {"name": "demo-active", "status": "ACTIVE"}}
    }

    # The emulator's control changes the status; the open subscription shows the change.
    flipped = httpx.post(
        f"{emulator}/_emulator/clusters/demo-active/status", json={"status": "UPDATING"}, timeout=5
    )
    assert flipped.status_code == 200
    changed = browser.wait_for(f"({RESULT_TEXT} || '').includes('UPDATING') && {RESULT_TEXT}", 15)
    assert json.loads(changed) == {
        "data": {"clusterUpdated": {"name": "demo-active", "status": "UPDATING"}}
    }

    streams = [
        e["params"]
        for e in browser.events
        if e["method"] == "Network.requestWillBeSent"
        and e["params"]["request"]["method"] == "POST"
        and "text/event-stream" in e["params"]["request"]["headers"].get("accept", "")
    ]
    assert [s["request"]["url"] for s in streams] == [f"{gateway.url}/graphql"]
    origin = gateway.url + "/"
    left = [u for u in browser.requested_urls() if not u.startswith((origin, "data:"))]
    assert left == [], "requests left the gateway's origin"
    assert browser.evaluate("window.__cspViolations") == []
    problems = [m for m in browser.console_messages() if "Content Security Policy" in m]
    assert problems == []
    assert not [m for m in browser.console_messages() if m.startswith("exception")]
