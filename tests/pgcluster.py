"""A throwaway PostgreSQL cluster on loopback, for the tests, the benchmarks and `.ci/run`.

Debian's `postgresql` package puts the server in /usr/lib/postgresql/<version>/bin. `start()` makes a cluster
in a temporary folder (initdb, trust on loopback only, fsync off: it is thrown away), starts it on a free
port and returns its URL; `stop()` stops it and removes the folder. PostgreSQL refuses to run as root: as root,
the cluster is run by the `postgres` user the package creates (or `nobody`) through runuser.

    python tests/pgcluster.py start DIR   # prints the URL (for .ci/run); stop with: python tests/pgcluster.py stop DIR
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


class NoPostgres(Exception):
    """No PostgreSQL server can be started here; str() says why."""


def bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        d = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
        if (d / "postgres").exists():
            return d
    raise NoPostgres("no PostgreSQL server installed (apt-get install postgresql; .ci/run does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runner() -> tuple[list[str], str | None]:
    """(command prefix, user) to run the server's programs: as root through runuser as an unprivileged user."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"], user
    raise NoPostgres("running as root and there is no unprivileged user (postgres, nobody) to run PostgreSQL as")


@dataclass
class Cluster:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        prefix, _ = _runner()
        subprocess.run([*prefix, str(bindir() / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def start(folder: str | Path | None = None) -> Cluster:
    """A new cluster in `folder` (a new temporary folder by default), started; NoPostgres when that fails."""
    bin_ = bindir()
    prefix, user = _runner()
    folder = Path(folder or tempfile.mkdtemp(prefix="pg-test-"))
    folder.mkdir(parents=True, exist_ok=True)
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        folder.chmod(0o700)
    data, log = folder / "data", folder / "server.log"
    init = subprocess.run([*prefix, str(bin_ / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                           "-E", "UTF8", "--no-sync", "--no-instructions"], capture_output=True, text=True)
    if init.returncode:
        raise NoPostgres(f"initdb failed: {init.stderr.strip()[-500:]}")
    for attempt in range(3):
        port = _free_port()
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB")
        run = subprocess.run([*prefix, str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                              "-t", "60", "start"], capture_output=True, text=True)
        if run.returncode == 0:
            return Cluster(folder, port)
    tail = log.read_text(errors="replace")[-800:] if log.exists() else run.stderr
    raise NoPostgres(f"the PostgreSQL server did not start: {tail.strip()}")


if __name__ == "__main__":
    cmd, where = sys.argv[1], Path(sys.argv[2])       # `where` only notes the cluster (its own folder is private)
    if cmd == "start":
        try:
            c = start()
        except NoPostgres as e:
            sys.exit(f"error: {e}")
        (where / "folder").write_text(str(c.folder))
        (where / "port").write_text(str(c.port))
        print(c.url)
    elif cmd == "stop" and (where / "folder").exists():
        Cluster(Path((where / "folder").read_text()), int((where / "port").read_text())).stop()
