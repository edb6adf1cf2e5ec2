"""Claims: which worker computes a stage, so that no stage is ever computed by two processes at once.

A stage directory's ``claim`` file names its holder (a unique token, worker, host, pid) and a heartbeat
count. Protocol:

- **create**: the claim is written whole to a private file and hard-linked to ``claim``; the link is
  atomic and fails if a claim exists, so of any number of creators exactly one wins, and no reader ever
  sees a half-written claim.
- **heartbeat**: the holder rewrites its claim with the count + 1 every few seconds, only after checking
  under the lock that the claim still carries its token; if not, ownership is lost and the stage stops.
- **staleness** is judged on the watcher's own clock: a claim is stale when its content has not changed
  for ``stale_after`` seconds of this process's monotonic time (no clocks of other hosts and no mtimes
  are compared), or at once when its holder ran on this host and the process is gone.
- **takeover** of a stale claim happens under an exclusive ``flock`` on ``claim.lock``: the taker checks
  that the claim is still the one it judged stale, moves it aside and creates its own, then reads the
  claim back to confirm that it holds it. Whoever comes second finds a changed claim and backs off.
- **release** removes the claim under the lock, and only if it is the releaser's own.

A taker that finds the lock held backs off at once and tries again at a later poll. A holder frozen while it
holds the lock (a SIGSTOP landing inside a beat) therefore delays the takeover of its own stage until it
resumes or dies, and nothing else.

What the filesystem must provide: atomic ``link`` and ``rename`` within a directory, and ``flock`` that
is honoured across every host sharing it (any local filesystem; NFSv4, where Linux maps ``flock`` onto
NFS byte-range locks; Lustre mounted with ``-o flock``; GPFS). Scheduling (which stage to claim next)
lives in ``scaling.sweep``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from scaling.io import dumps

HOST = socket.gethostname()


@dataclass
class Claim:
    """This process's hold on a stage directory; ``lost`` is set once another worker has taken it over."""

    directory: Path
    token: str
    worker: int
    lost: threading.Event = field(default_factory=threading.Event)

    @property
    def path(self) -> Path:
        return self.directory / "claim"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _parse(content: bytes | None) -> dict | None:
    try:
        return json.loads(content) if content else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def holder(claim: Path) -> dict | None:
    """Who holds ``claim`` (token, worker, host, pid, beat); None if there is no readable claim."""
    return _parse(_read(claim))


@contextlib.contextmanager
def _locked(directory: Path, wait: bool = True):
    """An exclusive ``flock`` on ``directory/claim.lock`` (held only for a check and a rename); with
    ``wait`` False, yields False at once when another process holds it."""
    fd = os.open(directory / "claim.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _write_whole(path: Path, doc: dict, *, replace: bool) -> bool:
    """Write ``doc`` to ``path`` atomically: by hard link (fails, False, when ``path`` exists) or by
    rename over it (``replace``)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(dumps(doc, indent=None))
    try:
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


class Watcher:
    """Judges staleness on this process's clock: how long each claim's content has stayed unchanged."""

    def __init__(self):
        self._seen: dict[Path, tuple[bytes, float]] = {}

    def stale(self, path: Path, content: bytes, stale_after: float) -> bool:
        who = _parse(content)
        if who is not None and who.get("host") == HOST and not _pid_alive(int(who.get("pid", -1))):
            return True  # its process on this host is gone: no need to wait
        now = time.monotonic()
        first = self._seen.get(path)
        if first is None or first[0] != content:
            self._seen[path] = (content, now)
            return False
        return now - first[1] > stale_after


WATCHER = Watcher()


def try_claim(d: Path, worker: int, stale_after: float, watcher: Watcher = WATCHER) -> Claim | None:
    """Claim stage directory ``d``, taking over a stale claim; the Claim if this process holds it."""
    d.mkdir(parents=True, exist_ok=True)
    claim = Claim(d, uuid.uuid4().hex, worker)
    doc = {"token": claim.token, "worker": worker, "host": HOST, "pid": os.getpid(), "beat": 0}
    seen = _read(claim.path)
    if seen is None:  # free: of all creators, the first link wins
        return claim if _write_whole(claim.path, doc, replace=False) else None
    if not watcher.stale(claim.path, seen, stale_after):
        return None
    # A taker never waits for the lock: a holder frozen (e.g. SIGSTOP) inside a beat's few milliseconds
    # under it would stall this worker too; busy, it tries this stage again later and goes on meanwhile.
    with _locked(d, wait=False) as mine:
        if not mine or _read(claim.path) != seen:  # its holder beats, or another worker took it over first
            return None
        old = (_parse(seen) or {}).get("token") or uuid.uuid4().hex
        claim.path.rename(d / f"claim.stale.{old[:16]}")
        if not _write_whole(claim.path, doc, replace=False):
            return None
    return claim if owns(claim) else None


def owns(claim: Claim) -> bool:
    """Whether the claim file still carries this claim's token."""
    return (holder(claim.path) or {}).get("token") == claim.token


def release(claim: Claim) -> None:
    """Remove the claim if it is still this process's own (never another worker's)."""
    with _locked(claim.directory):
        if owns(claim):
            claim.path.unlink()


def _beat(claim: Claim, count: int) -> bool:
    """Rewrite the claim with heartbeat ``count`` if it is still ours; False (and ``lost`` set) if not."""
    with _locked(claim.directory):
        who = holder(claim.path)
        if who is None or who.get("token") != claim.token:
            claim.lost.set()
            return False
        _write_whole(claim.path, who | {"beat": count}, replace=True)
        return True


@contextlib.contextmanager
def heartbeat(claim: Claim, every: float):
    """Refresh ``claim`` every ``every`` seconds while the body runs; set ``claim.lost`` (and stop
    beating) once the claim is no longer this process's."""
    stop = threading.Event()

    def beat():
        count = 0
        while not stop.wait(every):
            count += 1
            if not _beat(claim, count):
                return

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        yield claim
    finally:
        stop.set()
        t.join()
