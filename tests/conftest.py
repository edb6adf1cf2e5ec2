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
