#!/usr/bin/env python3
"""Takes docs/web.png: the page (web/, built by tools/build-web.sh) in headless Chromium with
WebGPU on SwiftShader, driven through chromedriver (Debian's chromium-driver) over WebDriver's
HTTP API with the standard library only. It waits for the inference to finish (a plain
`chromium --screenshot` fires before GPU work resolves), drags an occluder over the face with
the mouse, waits for the second inference, and saves the screenshot.

Usage: tools/screenshot-web.py SITE_URL [CHECKPOINT IMAGE] OUT.png
  SITE_URL: where web/ is served (python3 -m http.server -d web 8080 -> http://127.0.0.1:8080/)
  CHECKPOINT, IMAGE: paths relative to SITE_URL (files placed beside the page); without them,
  the page as it opens: its default model (web/model/) and first example face
"""
import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

if len(sys.argv) == 3:
    site, out = sys.argv[1:3]
    query = ""
elif len(sys.argv) == 5:
    site, checkpoint, image, out = sys.argv[1:5]
    query = f"?checkpoint={checkpoint}&image={image}"
else:
    sys.exit(__doc__)
PORT = 9517


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"{}").get("value")
    except urllib.error.HTTPError as e:
        sys.exit(f"webdriver {method} {path}: {e.code} {e.read().decode()[:500]}")


driver = subprocess.Popen(["chromedriver", f"--port={PORT}"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
s = None
try:
    for _ in range(100):
        try:
            call("GET", "/status")
            break
        except OSError:
            time.sleep(0.1)
    profile = tempfile.mkdtemp(prefix="fer-cbam-shot-")
    args = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
            "--use-webgpu-adapter=swiftshader", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--hide-scrollbars", "--window-size=1040,900", f"--user-data-dir={profile}"]
    session = call("POST", "/session", {"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}})["sessionId"]
    s = f"/session/{session}"

    def status():
        return call("POST", f"{s}/execute/sync",
                    {"script": "return document.getElementById('status').textContent", "args": []})

    def wait_for_inference(count):
        for _ in range(600):
            st = status()
            runs = call("POST", f"{s}/execute/sync",
                        {"script": "return window.__runs || 0", "args": []})
            if st.startswith("error"):
                sys.exit(f"page: {st}")
            if runs >= count:
                return st
            time.sleep(0.1)
        sys.exit(f"no inference after 60 s (status: {status()})")

    call("POST", f"{s}/window/rect", {"width": 1040, "height": 1040})
    call("POST", f"{s}/url", {"url": f"{site}index.html{query}"})
    print(wait_for_inference(1))
    # An occluder over the lower half of the face (the mouth), dragged like a user would.
    face = call("POST", f"{s}/element", {"using": "css selector", "value": "#face"})
    x0, y0, w, h = call("POST", f"{s}/execute/sync", {
        "script": "const r = arguments[0].getBoundingClientRect();"
                  "return [r.left, r.top, r.width, r.height]",
        "args": [face]})
    print("viewport", call("POST", f"{s}/execute/sync", {
        "script": "return [innerWidth, innerHeight]", "args": []}), "face", [x0, y0, w, h])
    pt = lambda fx, fy: {"type": "pointerMove", "origin": "viewport", "duration": 50,
                         "x": int(x0 + fx * w), "y": int(y0 + fy * h)}
    call("POST", f"{s}/actions", {"actions": [{
        "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [pt(0.25, 0.68), {"type": "pointerDown", "button": 0}, pt(0.5, 0.8),
                    pt(0.75, 0.92), {"type": "pointerUp", "button": 0}]}]})
    print(wait_for_inference(2))
    png = base64.b64decode(call("GET", f"{s}/screenshot"))
    with open(out, "wb") as f:
        f.write(png)
    print(f"{out}: {len(png)} bytes")
finally:
    # Ending the session is what closes the browser: stopping chromedriver leaves it running.
    if s:
        try:
            call("DELETE", s)
        except (OSError, SystemExit):
            pass
    driver.terminate()
    driver.wait()
