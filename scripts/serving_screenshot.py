"""Take the screenshot of the service's page for the docs (docs/serving.png).

Serves SYSTEM_DIR in this process (on 127.0.0.1, a free port, a temporary event log: the system
directory is not written to), opens the page in Debian's chromium through Playwright, picks a
user, clicks the first recommendation (an event is recorded and the lists update) and saves a
screenshot.

    .venv/bin/python scripts/serving_screenshot.py streamrec-demo/system --out docs/serving.png
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("system", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/serving.png"))
    ap.add_argument("--user", default=None, help="user to show (default: the 43rd)")
    args = ap.parse_args()

    import torch
    import uvicorn
    from playwright.sync_api import sync_playwright

    from streamrec.serve.app import create_app

    torch.set_num_threads(1)
    log = Path(tempfile.mkdtemp(prefix="screenshot-")) / "events.jsonl"
    app = create_app(args.system, events=log)
    ds = app.state.service.snap.ds
    user = args.user or str(ds.user_ids[min(42, ds.n_users - 1)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/?user={user}")
            page.wait_for_selector(".card")
            ready = page.evaluate("document.body.dataset.ready")
            page.locator(".card").nth(1).click()
            page.wait_for_function(f"document.body.dataset.ready !== '{ready}'")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    print(f"screenshot of {base}/?user={user} -> {args.out}")


if __name__ == "__main__":
    main()
