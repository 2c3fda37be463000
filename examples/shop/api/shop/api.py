"""A tiny HTTP API with the /healthz the pipeline waits for. LOG_LEVEL (set per environment in
the pipeline file) decides what it logs: every request at debug, its start at info;
SHOP_CACHE_SECONDS how long a browser may keep the catalogue."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_LEVEL = os.environ.get("LOG_LEVEL", "info").lower()  # debug, info, warning or error
CACHE_SECONDS = int(os.environ.get("SHOP_CACHE_SECONDS", "0"))
PRODUCTS = ["tea", "coffee"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            status, body = 200, {"ok": True}
        elif self.path == "/products":
            status, body = 200, {"products": PRODUCTS}
        else:
            status, body = 404, {"error": f"no route {self.path}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.path == "/products" and CACHE_SECONDS:
            self.send_header("Cache-Control", f"max-age={CACHE_SECONDS}")
        else:
            self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        if LOG_LEVEL == "debug":
            super().log_message(format, *args)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    if LOG_LEVEL in ("debug", "info"):
        where = os.environ.get("SHOP_ENVIRONMENT", "?")
        print(f"api on :{port} in {where}, log level {LOG_LEVEL}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
