"""Claims: which worker computes a stage. A stage is computed by whoever first creates its ``claim`` file
(``O_CREAT | O_EXCL``); the holder's heartbeat touches it while the stage runs. A claim whose process is
gone (same host) or whose heartbeat is older than ``stale_after`` seconds is taken over, so a killed
worker's stage is redone. Scheduling (which stage to claim next) lives in ``scaling.sweep``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from scaling.io import dumps

HOST = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(claim: Path) -> dict | None:
    """Who holds ``claim`` (worker, host, pid, time); None if it is gone or being written."""
    try:
        return json.loads(claim.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _stale(claim: Path, stale_after: float) -> bool:
    try:
        age = time.time() - claim.stat().st_mtime
        who = json.loads(claim.read_text())
    except FileNotFoundError:
        return True
    except json.JSONDecodeError:  # being written right now, or cut short by a kill between create and write
        return age > 5.0
    if who.get("host") == HOST and not _pid_alive(int(who.get("pid", -1))):
        return True
    return age > stale_after


def try_claim(d: Path, worker: int, stale_after: float) -> bool:
    """Atomically claim stage directory ``d``; take over a stale claim. True if this process holds it."""
    d.mkdir(parents=True, exist_ok=True)
    claim = d / "claim"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not _stale(claim, stale_after):
                return False
            with contextlib.suppress(FileNotFoundError):  # only one taker wins the rename
                claim.rename(d / f"claim.stale.{uuid.uuid4().hex[:8]}")
            continue
        with os.fdopen(fd, "w") as f:
            f.write(dumps({"worker": worker, "host": HOST, "pid": os.getpid(), "time": time.time()}, indent=None))
        return True
    return False


def release(d: Path) -> None:
    (d / "claim").unlink(missing_ok=True)


@contextlib.contextmanager
def heartbeat(claim: Path, every: float):
    """Touch ``claim`` every ``every`` seconds while the body runs."""
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            with contextlib.suppress(FileNotFoundError):
                os.utime(claim)

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
