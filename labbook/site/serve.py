"""`labbook serve`: the built site on 127.0.0.1, under the path it will have on GitHub Pages.

A project site lives at USER.github.io/REPOSITORY/, so its pages must work under a sub-path; serving
it under the same `--base` locally shows that they do (every link of the site is relative). The root
redirects to the base; anything outside the base is not found.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
from pathlib import Path

from labbook.errors import UserError


def normal_base(base: str) -> str:
    """`/sub/path/` from `sub/path`, `/sub/path` or `/sub/path/`; only URL-safe path characters."""
    parts = [part for part in base.split("/") if part]
    if any(part in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._~-]+", part) for part in parts):
        raise UserError(f"--base {base!r}: a path of letters, digits, '.', '_', '~' and '-' parts, such as /course-site/")
    return "/" + "".join(part + "/" for part in parts)


class _Handler(http.server.SimpleHTTPRequestHandler):
    base = "/"

    def log_message(self, format, *args):   # noqa: A002 - the signature of the method it replaces
        pass

    def _within(self) -> bool:
        path = self.path.split("?", 1)[0]
        if path in ("/", self.base.rstrip("/")) and self.base != "/":
            self.send_response(302)
            self.send_header("Location", self.base)
            self.end_headers()
            return False
        if not path.startswith(self.base):
            self.send_error(404)
            return False
        self.path = "/" + self.path[len(self.base):]
        return True

    def do_GET(self):   # noqa: N802 - http.server's name
        if self._within():
            super().do_GET()

    def do_HEAD(self):   # noqa: N802
        if self._within():
            super().do_HEAD()


@contextlib.contextmanager
def serve_site(directory: Path, port: int = 0, base: str = "/"):
    """A server of `directory` under `base` on 127.0.0.1 (not yet serving: call serve_forever), and
    the address of the site's index."""
    handler = type("SiteHandler", (_Handler,), {"base": normal_base(base)})
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(directory))) as server:
        yield server, f"http://127.0.0.1:{server.server_address[1]}{handler.base}"
