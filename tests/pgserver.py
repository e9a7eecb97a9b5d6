"""A throwaway PostgreSQL server for the tests (Debian's binaries, a cluster in a temp folder).

``PgServer.start()`` runs ``initdb`` into a fresh temporary folder and ``pg_ctl start`` on a free
loopback port, with its unix socket in that folder and durability off (fsync, synchronous commit:
the data dies with the test run anyway). ``create_database()`` hands out a new empty database and
its URL; ``stop()`` stops the server and deletes the folder. PostgreSQL refuses to run as root, so
as root the cluster belongs to the ``postgres`` system user (``nobody`` when there is none) and
every server command runs through ``runuser``.

``make test`` installs the binaries (``make sysdeps``); without them ``find_bin_dir`` returns None
and the fixtures skip with that reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.live import free_port


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<ver>/bin`` holding initdb and pg_ctl (or ``$PG_BIN``)."""
    env = os.environ.get("PG_BIN")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                          key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                                          reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


class PgServer:
    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.dir: Path | None = None
        self.port: int | None = None
        self._n = 0
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
            self._user = user
            self._prefix = ["runuser", "-u", user, "--"]
        else:
            self._user = None

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = self._prefix + [str(self.bin_dir / args[0]), *args[1:]]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if p.returncode != 0:
            log = ""
            if self.dir is not None and (self.dir / "server.log").is_file():
                log = (self.dir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}\n{log}")

    def start(self) -> "PgServer":
        # not under pytest's tmp folder: that one is root-only (0700) and the server user must reach it
        self.dir = Path(tempfile.mkdtemp(prefix="dhstudio-pg-"))
        if self._user:
            shutil.chown(self.dir, self._user, self._user)
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                  "--encoding=UTF8", "--locale=C")
        for attempt in range(3):  # the free port may be taken between probing and binding it
            self.port = free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            try:
                self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(self.dir / "server.log"),
                          "-o", opts)
                return self
            except RuntimeError:
                if attempt == 2:
                    self.stop()
                    raise
                time.sleep(0.2)
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._n += 1
        name = f"{prefix}_{os.getpid()}_{self._n}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "stop", "-D", str(data), "-m", "immediate", "-w", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
