"""A real PostgreSQL 15 server for the tests, started from the machine's binaries.

initdb refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.embedded_broker import free_port, wait_for_port

PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]


def find_pg_bin() -> Path | None:
    for candidate in PG_BIN_DIRS:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresServer:
    bin_dir: Path
    port: int = 0
    data_dir: Path | None = None

    def _as_server_user(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def start(self) -> PostgresServer:
        self.port = self.port or free_port()
        base = Path(tempfile.mkdtemp(prefix="expertmatch-pg-"))
        self.data_dir = base / "data"
        self.data_dir.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(base, user.pw_uid, user.pw_gid)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        subprocess.run(
            self._as_server_user(
                [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", "postgres"]
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            self._as_server_user(
                [
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "log"),
                    "-o", f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "-w", "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        wait_for_port("127.0.0.1", self.port, 30)
        return self

    def stop(self) -> None:
        if self.data_dir is None:
            return
        subprocess.run(
            self._as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
        self.data_dir = None

    def create_database(self, name: str) -> str:
        """A fresh database; returns its SQLAlchemy asyncpg URL."""
        subprocess.run(
            [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"
