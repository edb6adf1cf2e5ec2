import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Sweeps enable the persistent XLA cache; tests (and the CLI subprocesses they start) use a private one,
# removed when the test session ends.
os.environ["SCALING_JAX_CACHE"] = tempfile.mkdtemp(prefix="scaling-xla-cache-")
atexit.register(shutil.rmtree, os.environ["SCALING_JAX_CACHE"], ignore_errors=True)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def chinchilla_df():
    from scaling.bench import chinchilla_points

    return chinchilla_points(SHARED_DATA / "chinchilla_fig4_points.csv")


def documented_json_fields(command: str) -> set[str]:
    """The field names (backticked) that the README's table of ``--json`` outputs gives for ``command``."""
    import re

    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith(f"| `{command}` |"):
            return set(re.findall(r"`(\w+)`", line.split("|")[2]))
    raise AssertionError(f"README has no --json row for {command!r}")


def json_keys(doc) -> set[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in json_keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in json_keys(v)}
    return set()
