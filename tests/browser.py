"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for tests of pages the
project writes: what the page logged as errors, which images did not load, and a screenshot."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# Flags as this machine's closed network wants them: no background connections, no sandbox (root), no GPU.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Loaded:
    errors: list[str]  # console errors, uncaught exceptions and log entries of level error
    broken_images: list[str]  # <img> that did not decode (their src, cut short)
    images: int
    screenshot: bytes  # PNG


def load_page(path: Path, width: int = 1400, height: int = 1000, timeout: float = 60.0) -> Loaded:
    """Open ``path`` in a fresh headless Chromium and report on it once it has loaded."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    profile = tempfile.mkdtemp(prefix="chromium-")
    process = subprocess.Popen([chromium(), *FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                                f"--window-size={width},{height}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2))
                page = next(t for t in targets if t.get("type") == "page")
                break
            except (OSError, StopIteration, ValueError):
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError("chromium did not come up") from None
                time.sleep(0.2)
        return asyncio.run(_drive(page["webSocketDebuggerUrl"], Path(path).resolve().as_uri(), timeout))
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _drive(url: str, page_url: str, timeout: float) -> Loaded:
    import aiohttp

    errors: list[str] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        ids, loaded = iter(range(1, 10**9)), asyncio.Event()
        waiting: dict[int, asyncio.Future] = {}

        async def listen():
            async for message in ws:
                data = json.loads(message.data)
                if "id" in data and data["id"] in waiting:
                    waiting.pop(data["id"]).set_result(data)
                method, params = data.get("method"), data.get("params", {})
                if method == "Page.loadEventFired":
                    loaded.set()
                elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                    errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
                elif method == "Runtime.exceptionThrown":
                    errors.append(params["exceptionDetails"].get("text", "exception"))
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    errors.append(params["entry"].get("text", ""))

        async def call(method: str, **params):
            number = next(ids)
            waiting[number] = asyncio.get_running_loop().create_future()
            await ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
            answer = await asyncio.wait_for(waiting[number], timeout)
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer.get("result", {})

        listener = asyncio.create_task(listen())
        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable")
        await call("Page.navigate", url=page_url)
        await asyncio.wait_for(loaded.wait(), timeout)
        check = ("JSON.stringify({n: document.images.length, broken: Array.from(document.images)"
                 ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80))})")
        result = json.loads((await call("Runtime.evaluate", expression=check, returnByValue=True))["result"]["value"])
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        listener.cancel()
    return Loaded(errors, result["broken"], result["n"], base64.b64decode(shot["data"]))
