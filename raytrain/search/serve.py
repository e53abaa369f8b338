"""``raytrain serve``: a search page over an index, on the standard library's ``ThreadingHTTPServer``.

Why not FastAPI/uvicorn: the page is a local, few-user tool with four routes; the standard library
serves it with no new dependency, and the model is loaded once at start-up either way.

Files are addressed by their row number in the index, never by a path: ``/video/<row>`` and
``/thumb/<row>.png`` can only return what the index lists, so no URL reaches any other file
(``resolve_row`` is the only way from a URL to a file)."""

from __future__ import annotations

import html
import json
import mimetypes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>raytrain search</title>
<style>body{font-family:sans-serif;margin:1.5em}li{margin:.6em 0;list-style:none}img{vertical-align:middle}
.s{font-family:monospace;margin-right:.8em}video{display:block;max-width:320px;margin-top:.3em}</style></head>
<body><h2>raytrain search: __TITLE__</h2><form id="f"><input id="q" size="50" name="q" autofocus>
<button>Search</button></form><ol id="r"></ol><script>
document.getElementById('f').onsubmit = async (e) => { e.preventDefault();
  const q = document.getElementById('q').value;
  const res = await (await fetch('/api/search?k=10&q=' + encodeURIComponent(q))).json();
  const ol = document.getElementById('r'); ol.innerHTML = '';
  for (const h of res.results) { const li = document.createElement('li');
    li.innerHTML = `<span class="s">${h.score.toFixed(4)}</span><img src="/thumb/${h.row}.png" alt="">
      <b>${h.video_id}</b> ${h.caption}`;
    const v = document.createElement('video'); v.controls = true; v.preload = 'none';
    v.src = '/video/' + h.row;
    if (v.canPlayType(h.mime)) li.appendChild(v); ol.appendChild(li); } };
const q0 = new URLSearchParams(location.search).get('q');  // /?q=... runs that search on load
if (q0) { document.getElementById('q').value = q0; document.getElementById('f').requestSubmit(); }
</script></body></html>"""


class IndexedFiles:
    """The index's rows: embeddings, metadata and thumbnails; files reachable only by row number."""

    def __init__(self, index_dir: str):
        from raytrain.search import index_files as files

        self.table = files.read_index(index_dir)
        self.clips = files.embedding_matrix(self.table)
        self.paths = self.table.column("path").to_pylist()
        self.meta = self.table.drop(["embedding", "thumbnail"]).to_pylist()

    def resolve_row(self, text: str) -> int | None:
        """``text`` (a URL segment) → a row number of the index, or None."""
        if not text.isdigit():
            return None
        row = int(text)
        return row if row < len(self.paths) else None

    def thumbnail(self, row: int) -> bytes:
        return self.table.column("thumbnail")[row].as_py()


def make_handler(indexed: IndexedFiles, search_fn, title: str):
    """The request handler class over ``indexed``; ``search_fn(text, k) -> (scores, rows)``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/":
                return self._send(200, PAGE.replace("__TITLE__", html.escape(title)).encode(), "text/html")
            if parts[0] == "api" and parts[1:] == ["search"]:
                query = parse_qs(url.query)
                text, k = query.get("q", [""])[0], int(query.get("k", ["10"])[0])
                scores, rows = search_fn(text, k)
                results = [{"row": int(r), "score": float(s), "video_id": indexed.meta[r]["video_id"],
                            "caption": html.escape((indexed.meta[r]["captions"] or [""])[0]),
                            "mime": mimetypes.guess_type(indexed.paths[r])[0] or "video/mp4"}
                           for s, r in zip(scores, rows)]
                return self._send(200, json.dumps({"query": text, "results": results}).encode(), "application/json")
            if len(parts) == 2 and parts[0] in ("thumb", "video"):
                row = indexed.resolve_row(parts[1].removesuffix(".png") if parts[0] == "thumb" else parts[1])
                if row is not None:
                    if parts[0] == "thumb":
                        return self._send(200, indexed.thumbnail(row), "image/png")
                    path = Path(indexed.paths[row])
                    return self._send(200, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "video/mp4")
            return self._send(404, b"not found", "text/plain")

    return Handler


def serve(index_dir: str, host: str = "127.0.0.1", port: int = 8765, checkpoint: str | None = None) -> None:
    from raytrain.search import index_files as files
    from raytrain.search.model import load_index_model
    from raytrain.search.query import embed_queries, exact_top_k

    loaded = load_index_model(files.read_identity(index_dir), checkpoint)
    indexed = IndexedFiles(index_dir)

    def search_fn(text: str, k: int):
        scores, rows = exact_top_k(embed_queries(loaded, [text]), indexed.clips, k)
        return scores[0], rows[0]

    server = ThreadingHTTPServer((host, port), make_handler(indexed, search_fn, str(index_dir)))
    print(f"[raytrain] serving {len(indexed.paths)} clips of '{index_dir}' on http://{host}:{port}/", flush=True)
    server.serve_forever()
