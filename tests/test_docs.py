"""The Sphinx documentation builds without a single warning."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install -e '.[test]')")
    pytest.importorskip("numpydoc", reason="numpydoc is not installed (pip install -e '.[test]')")
    out = tmp_path / "html"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", "-d", str(tmp_path / "doctrees"),
         str(DOCS), str(out)],
        capture_output=True, text=True, timeout=600,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"sphinx-build failed ({seconds:.0f} s):\n{proc.stderr[-6000:]}"
    # -W makes any Sphinx warning fail the build; Python warnings of imported packages may still be printed
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-6000:]
    for page in ("index", "tutorial", "gallery", "cli", "algorithms", "api", "benchmarks", "paper", "plugins", "conventions"):
        assert (out / f"{page}.html").exists(), page
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("load_tilt_series", "ElementVolume", "run_pipeline", "train_end_to_end", "EndToEndModel",
                 "shell_maps", "export_volume", "edxtomo_reconstruction_algorithms", "Projector", "list_denoisers"):
        assert name in api, name
    algorithms = (out / "algorithms.html").read_text(encoding="utf-8")
    assert "two_step" in algorithms and "angle_step" in algorithms and "enhancer_steps" in algorithms
    assert "bench_analysis.py" in (out / "benchmarks.html").read_text(encoding="utf-8")
    # the gallery's figures of the real QD1 run travel with the pages
    assert len(list((out / "_images").glob("qd1_*.png"))) == 6
    assert "edxtomo run" in (out / "cli.html").read_text(encoding="utf-8")
