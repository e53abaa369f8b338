"""``raytrain serve``: the routes over a small index (no Ray, no model), path traversal refused, and
the page in headless Chromium when it is installed."""

import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import numpy as np
import pytest

from raytrain.search import index_files as files
from raytrain.search.serve import IndexedFiles, make_handler


@pytest.fixture
def server(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (tmp_path / "secret.txt").write_text("not indexed")
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[..., 0] = 200
    keys = ["v0", "v1"]
    for k in keys:
        (videos / f"{k}.mp4").write_bytes(f"video {k}".encode())
    files.open_index(tmp_path / "idx", files.index_identity("/ck", "a" * 64, "RT", 4, 2))
    files.write_shard(tmp_path / "idx", {
        "key": keys, "video_id": keys, "path": [str(videos / f"{k}.mp4") for k in keys],
        "start_s": [None, None], "end_s": [None, None], "captions": [["a red <b>circle</b>"], ["a square"]],
        "split": ["test", "test"], "embedding": [np.array([1, 0], np.float32), np.array([0, 1], np.float32)],
        "thumbnail": [files.thumbnail_strip(frames)] * 2}, 2)
    indexed = IndexedFiles(str(tmp_path / "idx"))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(
        indexed, lambda text, k: (np.array([0.9, 0.1]), np.array([1, 0]) if "square" in text else np.array([0, 1])),
        "test index"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _get(url):
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_routes_serve_only_indexed_files(server):
    status, body = _get(server + "/api/search?q=a+square&k=2")
    res = json.loads(body)
    assert status == 200 and [h["video_id"] for h in res["results"]] == ["v1", "v0"]
    assert res["results"][1]["caption"] == "a red &lt;b&gt;circle&lt;/b&gt;"  # escaped for the page
    assert _get(server + "/video/1") == (200, b"video v1")
    assert _get(server + "/thumb/0.png")[1][:4] == b"\x89PNG"
    for bad in ("/video/2", "/video/-1", "/video/..%2F..%2Fsecret.txt", "/video/../secret.txt",
                "/thumb/x.png", "/secret.txt", "/videos/v0.mp4", "/video/0/../../secret.txt"):
        assert _get(server + bad)[0] == 404, bad


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian package 'chromium')")
def test_page_in_headless_chromium(server, tmp_path):
    shot = tmp_path / "page.png"
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", server + "/?q=a+square"], capture_output=True, text=True, timeout=60,
                         check=False).stdout
    # the search ran in the page: the results list holds both clips, best (v1) first, with thumbnails
    assert "<b>v1</b>" in dom and dom.index('src="/thumb/1.png"') < dom.index('src="/thumb/0.png"')
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--virtual-time-budget=5000", "--window-size=900,500", server + "/?q=a+square"], capture_output=True, timeout=60, check=False)
    assert shot.read_bytes()[:4] == b"\x89PNG"
    if os.environ.get("RAYTRAIN_SCREENSHOT"):  # keep the screenshot to look at
        shutil.copy(shot, os.environ["RAYTRAIN_SCREENSHOT"])
