from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def chinchilla_df():
    from scaling.bench import chinchilla_points

    return chinchilla_points(SHARED_DATA / "chinchilla_fig4_points.csv")
