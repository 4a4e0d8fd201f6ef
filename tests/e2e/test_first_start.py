"""A first start on the embedded database that is cut short recovers by itself on the next."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import psutil

from bridge.db.embedded import STAGING_PREFIX
from tests.daemon import Daemon


def initdb_of(daemon: Daemon) -> psutil.Process | None:
    """The daemon's initdb, once it runs (it runs as a child, for root as another user)."""
    assert daemon.process is not None
    try:
        children = psutil.Process(daemon.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if child.name() == "initdb":
                return child
        except psutil.NoSuchProcess:
            continue
    return None


async def test_a_first_start_killed_during_initdb_comes_up_on_the_next(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    data = tmp_path / "data"
    # The server library's own lock is `.lockfile` in the temporary directory (when there is
    # no runtime directory), shared by every user of the machine; here it cannot be opened at
    # all, as when another user made it.
    shared_tmp = tmp_path / "tmp"
    (shared_tmp / ".lockfile").mkdir(parents=True)
    env = {"TMPDIR": str(shared_tmp), "XDG_RUNTIME_DIR": str(tmp_path / "no-runtime-dir")}
    daemon = Daemon(data, env)
    daemons.append(daemon)
    daemon.start()
    assert daemon.process is not None
    initdb = None
    async with asyncio.timeout(60):
        while initdb is None:
            assert daemon.process.poll() is None, daemon.logs()
            initdb = initdb_of(daemon)
            await asyncio.sleep(0.01)
    assert any(str(data) in part for part in initdb.cmdline())
    # A crash of the whole service (as systemd kills its cgroup): the daemon and the initdb
    # it started, both at once, neither with a chance to tidy up.
    tree = [psutil.Process(daemon.process.pid), *initdb.children(recursive=True), initdb]
    for process in tree:
        # initdb's own children come and go (each bootstrap step is one): one may be gone.
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=10)
    daemon.wait()

    pgdata = data / "postgres"
    staged = list(data.glob(STAGING_PREFIX + "*"))
    assert staged, "initdb was making the cluster beside data/postgres"
    assert not (pgdata / "PG_VERSION").exists()
    # What the earlier code left after a start that failed before initdb: an empty
    # data/postgres that the next start wrote its pid file into.
    pgdata.mkdir(exist_ok=True)
    (pgdata / ".handle_pids.json").write_text(json.dumps([daemon.process.pid]))

    daemon.start()
    await daemon.wait_ready()
    assert (pgdata / "PG_VERSION").exists()
    assert list(data.glob(STAGING_PREFIX + "*")) == [], "the interrupted attempt is gone"
    assert (data / "postgres.lock").exists(), "the server's lock lives in the data directory"
    assert '"db.embedded_incomplete"' in daemon.logs()
    assert daemon.stop() == 0
