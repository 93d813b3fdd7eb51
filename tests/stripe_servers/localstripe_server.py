"""localstripe in a subprocess on 127.0.0.1, with its disk dump off, for the test session.

localstripe's own CLI listens on every interface and pickles its state to a fixed file in
the temp folder after each write; started this way it does neither. The child runs in its
own process group (killed as a group on :meth:`LocalStripe.close`) and exits by itself if
the test process that started it dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

START_TIMEOUT_SECONDS = 20

_SERVE = """
import os, sys, threading, time
from aiohttp import web
import localstripe.resources as resources
resources.Store.dump_to_disk = lambda self: None
from localstripe.server import app

port, parent = int(sys.argv[1]), int(sys.argv[2])

def exit_with_parent():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)

threading.Thread(target=exit_with_parent, daemon=True).start()
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStripe:
    """A running localstripe: :attr:`url`, :meth:`reset`, :meth:`register_webhook`."""

    def __init__(self) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(self.port), str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_up()
        except BaseException:
            self.close()
            raise

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"localstripe exited at start:\n{self._output()}")
            try:
                self._request("GET", "/v1/customers", auth=True)
                return
            except urllib.error.HTTPError:
                return  # it answers
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"localstripe did not answer within {START_TIMEOUT_SECONDS} s:\n"
                        f"{self._output()}"
                    ) from None
                time.sleep(0.05)

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def _request(
        self, method: str, path: str, data: list[tuple[str, str]] | None = None, auth=False
    ) -> int:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if auth:
            request.add_header("Authorization", "Bearer sk_test_probe")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status

    def reset(self) -> None:
        """Forget every object (registered webhooks stay: see :meth:`disable_webhook`)."""
        self._request("DELETE", "/_config/data")

    def register_webhook(
        self, webhook_id: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        """Deliver events (about 1 s after they happen, never retried) to ``url``."""
        data = [("url", url), ("secret", secret)]
        data += [("events[]", event) for event in events or ()]
        self._request("POST", f"/_config/webhooks/{webhook_id}", data)

    def disable_webhook(self, webhook_id: str) -> None:
        """localstripe cannot forget a webhook: point it at an event type that never occurs."""
        self.register_webhook(
            webhook_id, "http://127.0.0.1:9/disabled", "whsec_disabled", ["meterbook.never"]
        )

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log.close()
