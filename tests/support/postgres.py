"""A real PostgreSQL server for integration tests, on a free loopback port.

The server is the Debian package's (``/usr/lib/postgresql/<version>/bin``, newest version),
installed with apt-get on first use when missing; the package's own cluster ("main", port
5432) is neither created by that install nor ever used. Each :class:`Postgres` has its own
data folder made by ``initdb`` and runs ``postgres`` directly as a child process in its own
process group, so ``stop(kill=True)`` is a real crash of the postmaster and all its backends,
and the next ``start()`` on the same folder goes through crash recovery.

PostgreSQL refuses to run as root. When the tests run as root (CI, the developers'
containers), ``initdb`` and ``postgres`` run as the ``postgres`` system user (``setpriv``,
which execs in place, so signals reach the postmaster itself); the folder is chowned to it and
the folders above it get the search bit (``o+x``, not read) where the user could not pass
through them, e.g. pytest's ``/tmp/pytest-of-root`` (pytest removes that bit again itself).

Test settings, not production ones: ``-A trust`` on 127.0.0.1 only, ``fsync = off`` and
``initdb --no-sync``. A SIGKILL of the server still keeps every committed transaction (the
WAL is in the kernel's page cache); only a crash of the machine could lose data.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from .debian import install_packages
from .mosquitto import free_port

__all__ = ["Postgres", "ensure_postgres"]

_LIB = Path("/usr/lib/postgresql")
_CREATECLUSTER_D = Path("/etc/postgresql-common/createcluster.d")
_SUPERUSER = "postgres"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SOCKET_PATH_MAX = 107  # sun_path of a Unix socket, without the terminating NUL


def _newest_bindir() -> Path | None:
    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    found = [
        bindir
        for bindir in _LIB.glob("*/bin")
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file()
    ]
    return max(found, key=version, default=None)


def ensure_postgres() -> Path:
    """The bin folder of the newest installed PostgreSQL server, installed first if needed."""
    bindir = _newest_bindir()
    if bindir is not None:
        return bindir
    # Tell the package not to create (and so not to start) its "main" cluster; the drop-in is
    # read through createcluster.conf's include_dir and removed again after the install.
    made_dir = not _CREATECLUSTER_D.exists()
    drop_in = _CREATECLUSTER_D / "zz-amr-tests-no-main-cluster.conf"
    try:
        _CREATECLUSTER_D.mkdir(parents=True, exist_ok=True)
        drop_in.write_text("create_main_cluster = false\n")
        install_packages("postgresql")
    finally:
        drop_in.unlink(missing_ok=True)
        if made_dir:
            with contextlib.suppress(OSError):
                _CREATECLUSTER_D.rmdir()
    bindir = _newest_bindir()
    if bindir is None:
        raise RuntimeError(f"no PostgreSQL server in {_LIB}/*/bin after installing postgresql")
    return bindir


def _grant_search(folder: Path, account: pwd.struct_passwd) -> None:
    """Let the account pass through every folder above ``folder`` (search bit only)."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for parent in folder.resolve().parents:
        info = parent.stat()
        if info.st_uid == account.pw_uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            parent.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


@dataclass
class Postgres:
    """One PostgreSQL server with its data in ``folder/data``, listening on 127.0.0.1:port."""

    folder: Path
    port: int = 0
    database: str = "amr_test"
    max_connections: int = 100
    start_timeout: float = 60.0
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """initdb (first time only), start the server, wait for it, create the database."""
        if self.process is not None:
            raise RuntimeError("this PostgreSQL server is already running")
        bindir = ensure_postgres()
        if not self.port:
            self.port = free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        socket_path = f"{self.folder.resolve()}/.s.PGSQL.{self.port}"
        if len(socket_path.encode()) > _SOCKET_PATH_MAX:
            raise RuntimeError(f"folder path too long for a Unix socket: {socket_path}")
        account = self._account()
        if account is not None:
            _grant_search(self.folder, account)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bindir)
        self._write_config(account)
        with self.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [*self._as_owner(), str(bindir / "postgres"), "-D", str(self.data)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,  # its own process group: stop(kill=True) kills it all
            )
        try:
            self._wait_ready()
            self._create(self.database, exist_ok=True)
        except BaseException:
            self.stop(kill=True)
            raise

    def stop(self, kill: bool = False) -> None:
        """Fast shutdown (as ``pg_ctl stop -m fast``), or SIGKILL to every server process."""
        process, self.process = self.process, None
        if process is None:
            return
        if not kill:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill = True
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            # Backends whose postmaster died first go down with their process group too.
            deadline = time.monotonic() + 10
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def create_database(self, name: str) -> str:
        """Create a fresh, empty database and return its SQLAlchemy URL."""
        self._create(name, exist_ok=False)
        return self.url_for(name)

    @contextlib.contextmanager
    def admin(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """An autocommit psycopg connection to the ``postgres`` maintenance database."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=_SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
            options="-c statement_timeout=30000",
        ) as conn:
            yield conn

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _account() -> pwd.struct_passwd | None:
        """The system user to run the server as when we are root, else None (ourselves)."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root but there is no 'postgres' system user") from None

    def _as_owner(self) -> list[str]:
        if self._account() is None:
            return []
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]

    def _initdb(self, bindir: Path) -> None:
        command = [
            *self._as_owner(),
            str(bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            _SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",  # exists everywhere, even on a machine without generated locales
            "--no-sync",
        ]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=self.folder,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{output}")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'amr-tests.conf'\n")

    def _write_config(self, account: pwd.struct_passwd | None) -> None:
        """The test settings, rewritten at every start (the port may be a new one)."""
        folder = str(self.folder.resolve()).replace("'", "''")
        config = self.data / "amr-tests.conf"
        config.write_text(
            "# Written by tests/support/postgres.py at every start: test settings only.\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{folder}'\n"
            f"max_connections = {self.max_connections}\n"
            "fsync = off  # tests only: survives a killed server, not a crashed machine\n"
            "timezone = 'UTC'\n"
        )
        if account is not None:
            os.chown(config, account.pw_uid, account.pw_gid)

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with self.admin() as conn:
                    conn.execute("SELECT 1")
                    return
            except psycopg.OperationalError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text(errors="replace")[-4000:]
                    raise RuntimeError(
                        f"PostgreSQL did not start on port {self.port} ({exc}):\n{log}"
                    ) from None
                time.sleep(0.05)

    def _create(self, name: str, exist_ok: bool) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        with self.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is not None:
                if exist_ok:
                    return
                raise ValueError(f"database {name!r} already exists")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies, already exited, do not count)."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False
