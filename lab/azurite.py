"""Azurite (Microsoft's Azure Storage emulator) on free loopback ports, for tests and the demo.

``Azurite.start()`` runs ``node_modules/.bin/azurite`` with tables, queues (and blobs, which the
same binary always serves) on free ports of 127.0.0.1, in memory, without telemetry, and waits
until every service accepts connections. ``connection_string`` is an explicit one with the
well-known development account key, so clients never fall back to Azurite's default ports.
``restart()`` keeps the ports (the fault tests stop the store and bring it back where clients
expect it); data lives in memory, so a restart starts empty.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite"
LOOPBACK = "127.0.0.1"

# Azurite's published development account (documented by Microsoft; not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteUnavailable(RuntimeError):
    """node or the azurite package is missing, or Azurite did not come up."""


def azurite_missing_reason() -> str | None:
    """Why Azurite cannot run here (None when it can): `make test` installs both."""
    if shutil.which("node") is None:
        return "node is not installed (make test installs the Node.js packages; Azurite needs node)"
    if not AZURITE_BIN.exists():
        return f"Azurite is not installed at {AZURITE_BIN} (run `npm ci` or `make test`)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


class Azurite:
    """One Azurite process. Use ``Azurite.start()`` (also a context manager)."""

    def __init__(self, *, table_port: int, queue_port: int, blob_port: int, startup_timeout_s: float = 30.0):
        self.table_port = table_port
        self.queue_port = queue_port
        self.blob_port = blob_port
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def start(cls, *, startup_timeout_s: float = 30.0) -> Azurite:
        reason = azurite_missing_reason()
        if reason is not None:
            raise AzuriteUnavailable(reason)
        azurite = cls(
            table_port=_free_port(),
            queue_port=_free_port(),
            blob_port=_free_port(),
            startup_timeout_s=startup_timeout_s,
        )
        azurite._launch()
        return azurite

    # -- endpoints ------------------------------------------------------------------------------

    @property
    def table_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.table_port}/{DEV_ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.queue_port}/{DEV_ACCOUNT}"

    @property
    def blob_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.blob_port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The emulator's process id while it runs (a benchmark reads its CPU time)."""
        return self._process.pid if self._process is not None and self.running else None

    # -- lifecycle ------------------------------------------------------------------------------

    def _launch(self) -> None:
        # Azurite's workspace is its working directory (--location may not be combined with
        # --inMemoryPersistence): run it in a throw-away one so nothing lands in the repo.
        self._workdir = tempfile.TemporaryDirectory(prefix="kvmon-azurite-")
        command = [
            str(AZURITE_BIN),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
            "--tableHost",
            LOOPBACK,
            "--tablePort",
            str(self.table_port),
            "--queueHost",
            LOOPBACK,
            "--queuePort",
            str(self.queue_port),
            "--blobHost",
            LOOPBACK,
            "--blobPort",
            str(self.blob_port),
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self._workdir.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_listening()
        except BaseException:
            # Ctrl-C or SIGTERM while waiting: the caller never gets this object, so stop here.
            self.stop()
            raise

    def _wait_until_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        ports = (self.table_port, self.queue_port, self.blob_port)
        while not all(_accepts(port) for port in ports):
            if self._process.poll() is not None:
                output = (
                    self._process.stdout.read().decode("utf-8", "replace") if self._process.stdout else ""
                )
                raise AzuriteUnavailable(f"Azurite exited during start-up: {output.strip()[-2000:]}")
            if time.monotonic() > deadline:
                raise AzuriteUnavailable(
                    f"Azurite did not accept connections within {self.startup_timeout_s:.0f} s"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the process (kill it if it does not exit) and wait for it."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None
        if self._workdir is not None:
            with contextlib.suppress(OSError):
                self._workdir.cleanup()
            self._workdir = None

    def restart(self) -> None:
        """Stop and start again on the same ports (in memory: the data is gone)."""
        self.stop()
        self._launch()

    def __enter__(self) -> Azurite:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
