import os

# Several test processes (pytest -n, pytest-xdist) share the cores: each gets its share of threads, set
# before numba, torch or BLAS start their pools (oversubscribed pools spin and slow every process).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, _share)

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """../shared/data beside the checkout; tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see the brief: ../shared beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def bcf_views(shared_data, tmp_path):
    """A three-view "tilt series": test_TEM.bcf copied as view_0..2.bcf into tmp_path."""
    import shutil

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"view_{i}.bcf")
        shutil.copy(shared_data / "vendor" / "test_TEM.bcf", paths[-1])
    return paths


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _quiet_progressbar():
    from hyperspy.defaults_parser import preferences

    old = preferences.General.show_progressbar
    preferences.General.show_progressbar = False
    yield
    preferences.General.show_progressbar = old


@pytest.fixture(scope="module")
def rod32():
    """A 32-pixel rod along the tilt axis at 10^4 counts per view (Zn): ``(maps, sinograms, projector)``.
    At strong TV its optimum is flat over many voxels; at weak strengths its Poisson fit converges slowly."""
    from hyperspy_edxtomo import datasets
    from hyperspy_edxtomo.reconstruction.projector import Projector

    maps = datasets.simulate_scene("rod_along", size=32, counts_per_tilt=10000, seed=1)
    zn = maps.element("Zn")
    sino = np.ascontiguousarray(zn.to_numpy()[0].transpose(1, 0, 2).astype(np.float32))
    return zn, sino, Projector(maps.tilts, n_x=32)
