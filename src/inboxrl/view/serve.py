"""``inboxrl view OUTPUT_DIR --serve [PORT]``: serve the viewer on 127.0.0.1 only.

Each load of the overview (``/`` or ``/index.html``) first refreshes the build (incremental:
only new or changed steps and evals are rebuilt, in the server's process), so reloading the page
follows a running run.
Other files are served as they are.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from inboxrl.view.build import VIEW_DIR, ViewSettings, build_view

HOST = "127.0.0.1"


class _Handler(SimpleHTTPRequestHandler):
    rebuild = None  # set per server: a callable that refreshes the build

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?")[0] in ("/", "/index.html") and self.rebuild is not None:
            self.rebuild()
        super().do_GET()

    def log_message(self, fmt: str, *args) -> None:
        """Quiet: no line per request."""


def make_server(output_dir: str | Path, settings: ViewSettings, port: int) -> ThreadingHTTPServer:
    """A server for ``output_dir/view`` on 127.0.0.1:``port`` (0 = any free port)."""
    lock = threading.Lock()
    view_dir = Path(output_dir) / VIEW_DIR

    refresh = dataclasses.replace(settings, workers=1)  # no fork from a threaded server; a reload adds few steps

    def rebuild() -> None:
        with lock:
            build_view(output_dir, refresh)

    handler = type("ViewHandler", (_Handler,), {"rebuild": staticmethod(rebuild)})
    return ThreadingHTTPServer((HOST, port), partial(handler, directory=str(view_dir)))


def serve(output_dir: str | Path, settings: ViewSettings, port: int) -> int:
    try:
        server = make_server(output_dir, settings, port)
    except OSError as e:
        print(f"error: cannot serve on {HOST}:{port}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"Serving {Path(output_dir) / VIEW_DIR} at http://{HOST}:{server.server_address[1]}/ "
          "(reload the page to rebuild; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
