"""The API's own check, which the pipeline runs in the image it just built (`test:` on api):
the real handler on a loopback port, asked what the pipeline and the web front end ask it."""

import json
import threading
import unittest
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from shop.api import CACHE_SECONDS, Handler


class ApiTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        serve.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def get(self, path: str) -> tuple[int, object]:
        return self.fetch(path)[:2]

    def fetch(self, path: str) -> tuple[int, object, str]:
        """Status, JSON body and Cache-Control header of GET path."""
        url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.loads(response.read())
                return response.status, body, response.headers["Cache-Control"]
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers["Cache-Control"]

    def test_healthz_answers_ok(self) -> None:
        """The health path the deploy waits for answers 200 {"ok": true}."""
        self.assertEqual(self.get("/healthz"), (200, {"ok": True}))

    def test_products_lists_the_catalogue(self) -> None:
        """/products lists what the shop sells."""
        self.assertEqual(self.get("/products"), (200, {"products": ["tea", "coffee"]}))

    def test_only_the_catalogue_may_be_cached(self) -> None:
        """The catalogue is cached for SHOP_CACHE_SECONDS (this environment's setting); the
        health path never is, so the deploy's health checks see the container itself."""
        expected = f"max-age={CACHE_SECONDS}" if CACHE_SECONDS else "no-store"
        self.assertEqual(self.fetch("/products")[2], expected)
        self.assertEqual(self.fetch("/healthz")[2], "no-store")

    def test_an_unknown_path_is_a_404(self) -> None:
        """Any other path is a 404 that names it, not the catalogue."""
        self.assertEqual(self.get("/nope"), (404, {"error": "no route /nope"}))


if __name__ == "__main__":
    unittest.main()
