"""Every command of the README and the tutorial runs as written, on real vendor files and on QD1.

The code is read from README.md and docs/tutorial.rst themselves, so a change
there is tested. Four substitutions make it run here, and only these: the
series ``qd_*.bcf`` becomes 13 copies of a real Velox ``.emd`` spectrum image
(../shared/data/vendor, 16 x 16 pixels: fast); the elements Se, S, Zn become
O, Ca, Cu, the elements that file holds (with about 20, 30 and 3 counts per
view: harsher than a quantum dot); a command that reads the files
without ``--tilts`` gets them (the copies share one stage tilt); and the
real-data demo runs at ``--size 48`` (the command as written, at 128 px, takes
about a minute, most of it the alignment: ``tests/test_cli.py`` runs it at 96). The
whole-job command and the step-by-step commands each start in a folder of
their own, as a user would run one or the other. The tutorial's steps 3-8
(align to exports) run on QD1 as shipped (``datasets.qd1()``), binned 8 x 8
to 32 pixels; on the vendor copies the tutorial runs its reading, its maps
and its whole job (``run_pipeline``, which calls the same steps).
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from hyperspy_edxtomo.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EMD = DATA / "vendor" / "Test_SI_16x16_215_kx.emd"
TILTS = [-60, -50, -40, -30, -20, -10, 0, 10, 20, 30, 40, 50, 60]
ELEMENTS = {"Se": "O", "S": "Ca", "Zn": "Cu"}

needs_vendor = pytest.mark.skipif(not EMD.is_file(), reason=f"real vendor file absent: {EMD} (../shared/data)")


def _readme_blocks(kind):
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


def _rst_blocks(path):
    """The literal blocks (after ``::``) of an rst file, dedented, in order."""
    lines = (ROOT / path).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::"):
            indent = len(lines[i]) - len(lines[i].lstrip())
            j, block = i + 1, []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                block.append(lines[j])
                j += 1
            body = [b for b in block]
            while body and not body[-1].strip():
                body.pop()
            strip = min(len(b) - len(b.lstrip()) for b in body if b.strip()) if body else 0
            blocks.append("\n".join(b[strip:] for b in body).strip("\n"))
            i = j
        else:
            i += 1
    return [b for b in blocks if b]


def _python(code):
    code = code.replace("qd_*.bcf", "qd_*.emd")
    code = code.replace('load_tilt_series("qd_*.emd")', f'load_tilt_series("qd_*.emd", tilts={TILTS})')
    for old, new in ELEMENTS.items():
        code = code.replace(f'"{old}"', f'"{new}"')
    return code


def _commands(block):
    """The ``edxtomo`` command lines of a shell block (continuations joined, comments dropped)."""
    text = block.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if not line.startswith("edxtomo "):
            continue
        line = line.replace("qd_*.bcf", "qd_*.emd").replace("--elements Se S Zn", "--elements O Ca Cu")
        line = line.replace("--tilts ...", "--tilts " + " ".join(map(str, TILTS)))
        line = line.replace("--real --size 128", "--real --size 48")
        if "qd_*.emd" in line and "--tilts" not in line:
            line += " --tilts " + " ".join(map(str, TILTS))
        out.append(line)
    return out


def _series(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(13):
        shutil.copy(EMD, folder / f"qd_{i + 1:02d}.emd")
    return folder


@pytest.fixture
def vendor_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(_series(tmp_path))
    return tmp_path


_DONE = set()  # whole-job command lines already run (the README and the tutorial share one)


def _run(line, monkeypatch, fresh):
    """Run one documented command; ``run`` starts in a folder of its own (``fresh``)."""
    import glob

    args = shlex.split(line)[1:]
    if args[0] == "demo" and "--real" not in args:
        return  # the simulated demo is the install command itself (README set-up), run by CI
    if args[0] == "run":
        key = " ".join(line.split())
        if key in _DONE:
            return
        _DONE.add(key)
    here = Path.cwd()
    if args[0] == "run":
        monkeypatch.chdir(_series(fresh))
    if args[0] in ("run", "demo"):
        args.insert(0, "--quiet")
    expanded = []
    for a in args:
        expanded += sorted(glob.glob(a)) if "*" in a else [a]
    rc = main(expanded)
    monkeypatch.chdir(here)
    assert rc == 0, f"{line!r} exited with {rc}"


@needs_vendor
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_python_and_command_lines_run_on_vendor_files(vendor_folder, monkeypatch):
    (python,) = _readme_blocks("python")
    exec(compile(_python(python), "README.md", "exec"), {})
    assert (vendor_folder / "maps.hspy").exists() and list(vendor_folder.glob("volume*.mrc"))
    lines = [c for block in _readme_blocks("bash") for c in _commands(block)]
    assert any(c.startswith("edxtomo run ") for c in lines) and any("--real" in c for c in lines)
    for line in lines:
        _run(line, monkeypatch, vendor_folder / "whole_job")
    assert (vendor_folder / "whole_job" / "qd1" / "report.html").exists()
    assert (vendor_folder / "qd1_demo" / "report.html").exists() and (vendor_folder / "qd1" / "volume_tv.hspy").exists()


@needs_vendor
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tutorial_python_and_command_lines_run_on_vendor_files(vendor_folder, monkeypatch):
    blocks = _rst_blocks("docs/tutorial.rst")
    shell = [b for b in blocks if b.lstrip().startswith("edxtomo ")]
    python = [b for b in blocks if b not in shell]
    assert len(python) >= 9 and len(shell) == 2
    # steps 3-8 (align ... exports) run on QD1 (the next test); here the reading, the maps and the whole job
    start = next(i for i, b in enumerate(python) if "maps.align()" in b)
    stop = next(i for i, b in enumerate(python) if "run_pipeline" in b)
    namespace = {}
    for code in python[:start] + python[stop:]:
        exec(compile(_python(code), "docs/tutorial.rst", "exec"), namespace)
    assert namespace["res"]["numbers"]["method"] == "two_step"
    assert (vendor_folder / "qd1" / "report.html").exists() and (vendor_folder / "maps.hspy").exists()
    monkeypatch.chdir(_series(vendor_folder / "steps"))  # run_pipeline above wrote qd1 here
    for line in [c for b in shell for c in _commands(b)]:
        _run(line, monkeypatch, vendor_folder / "whole_job")
    assert (vendor_folder / "steps" / "qd1" / "analysis").is_dir()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tutorial_steps_3_to_8_run_on_qd1(tmp_path, monkeypatch):
    """From step 3 on, the tutorial's Python runs on the shipped QD1 maps (binned to 32 pixels)."""
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in _rst_blocks("docs/tutorial.rst") if not b.lstrip().startswith("edxtomo ")]
    intro, steps = blocks[0], blocks[1:]
    namespace = {}
    exec(compile(intro, "docs/tutorial.rst", "exec"), namespace)
    namespace["maps"] = namespace["maps"].rebin(scale=(1, 1, 8, 8))
    start = next(i for i, b in enumerate(steps) if "maps.align()" in b)
    stop = next(i for i, b in enumerate(steps) if "run_pipeline" in b)
    for code in steps[start:stop]:
        exec(compile(code, "docs/tutorial.rst", "exec"), namespace)
    assert namespace["vol"].elements == ["Se", "S", "Zn"] and namespace["vol"].data.shape[1:] == (32, 32, 32)
    assert (tmp_path / "shells.png").exists() and (tmp_path / "fsc.png").exists()
