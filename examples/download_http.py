"""I/O-bound ingestion: fetch documents from an HTTP service with real latency, then parse them.

The example starts its own small HTTP server on 127.0.0.1 that answers each request after ``--latency-ms``
(a slow object store or API). Each fetch waits far more than it computes, yet the shipped settings reserve a
whole CPU per fetch task, so only as many fetches run at once as there are cores.
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ray

HERE = Path(__file__).resolve().parent


class DocumentHandler(BaseHTTPRequestHandler):
    latency_s = 0.05

    def do_GET(self) -> None:
        time.sleep(self.latency_s)
        doc_id = int(self.path.rsplit("/", 1)[-1])
        body = (f"document {doc_id} " * 200).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(latency_ms: int) -> str:
    DocumentHandler.latency_s = latency_ms / 1000
    server = ThreadingHTTPServer(("127.0.0.1", 0), DocumentHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "documents")
    args = parser.parse_args()
    base = serve(args.latency_ms)

    def fetch(row: dict[str, Any]) -> dict[str, Any]:
        with urllib.request.urlopen(f"{base}/{row['id']}", timeout=30) as response:
            body = response.read()
        return {"id": row["id"], "size": len(body), "sha1": hashlib.sha1(body).hexdigest()}

    ds = ray.data.range(args.docs, override_num_blocks=60)
    ds = ds.map(fetch, num_cpus=1)
    ds = ds.filter(lambda row: row["size"] > 0)
    ds.write_parquet(str(args.out.resolve()))  # Ray workers do not share the driver's directory


if __name__ == "__main__":
    main()
