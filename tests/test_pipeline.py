"""The whole-job pipeline (``edxtomo run``), its report, the step sub-commands and their errors."""

import json
from pathlib import Path

import hyperspy.api as hs
import numpy as np
import pytest

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.cli import build_parser, main
from hyperspy_edxtomo.signals import ElementMapTiltSeries, ElementVolume
from hyperspy_edxtomo.workflow.pipeline import (
    PipelineConfig,
    PipelineError,
    run_pipeline,
    write_report,
)

FAST = ["--method", "sirt", "--param", "iterations=15"]


@pytest.fixture(scope="module")
def series_file(tmp_path_factory):
    """A simulated CdSe/ZnS spectrum-image tilt series (32 px, 13 tilts) saved as .hspy."""
    path = tmp_path_factory.mktemp("series") / "series.hspy"
    datasets.quantum_dot_tilt_series("CdSe/ZnS", size=32, seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(series_file, tmp_path_factory):
    """One full ``edxtomo run`` on the saved series, shared by the report tests."""
    out = tmp_path_factory.mktemp("run") / "out"
    rc = main(["--quiet", "run", str(series_file), "--elements", "Se", "S", "Zn", *FAST, "--out", str(out),
               "--export", "mrc", "vti", "MRC"])  # a format asked twice is written once, not refused
    assert rc == 0
    return out


def test_run_writes_volume_maps_fsc_and_exports(run_dir):
    maps = hs.load(run_dir / "element_maps_aligned.hspy")
    assert isinstance(maps, ElementMapTiltSeries) and maps.elements == ["Se", "S", "Zn"]
    assert maps.metadata.has_item("Tomography.alignment")
    vol = hs.load(run_dir / "volume.hspy")
    assert isinstance(vol, ElementVolume) and vol.history[-1]["method"] == "sirt"
    assert vol.data.shape == (3, 32, 32, 32)
    fsc = hs.load(run_dir / "fsc.hspy")
    assert fsc.metadata.Tomography.FSC.split == "counts"
    for name in ("element_maps.png", "volume_cuts.png", "fsc.png", "shell_thickness.png", "rgb_overlay.png",
                 "max_projections.png", "shell_thickness_histogram.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for el in ("Se", "S", "Zn"):
        assert (run_dir / f"volume_{el}.mrc").stat().st_size > 32 ** 3 * 4
    assert (run_dir / "volume.vti").exists()


def test_report_holds_the_numbers(run_dir):
    numbers = json.loads((run_dir / "results.json").read_text())["numbers"]
    md = (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    fsc = numbers["fsc"]
    assert fsc["split"] == "counts" and fsc["method"] == "sirt"
    for el in ("Se", "S", "Zn"):
        r143, rhb = fsc["resolution_0143"][el], fsc["resolution_half_bit"][el]
        # at least two voxels (0.189 nm), at most the box
        assert 2 * 0.189 - 1e-6 <= r143 < 32 * 0.189 and 2 * 0.189 - 1e-6 <= rhb < 32 * 0.189
        assert f"{r143:.3g}" in md and f"{rhb:.3g}" in page
        assert f"| {el} | {numbers['counts_per_tilt'][el]:.0f} |" in md
    assert len(numbers["particles"]) == 1
    d = numbers["particles"][0]["equivalent_diameter"]
    assert 2.5 < d < 6.0  # the simulated dot is about 4 nm across
    assert f"{d:.3g}" in md
    shells = {row["element"]: row for row in numbers["shells"]}
    assert set(shells) == {"Se", "S", "Zn"} and shells["Se"]["absent_fraction"] < 0.05
    assert f"{100 * shells['S']['coverage']:.1f} %" in md
    for text in ("13 views", "0.189 nm", "sirt", "| parameters: iterations | 15 |", "Timings", "alignment"):
        assert text in md, text
    # particles carry their quality flags: the simulated dot sits in the middle of the box
    assert numbers["particles"][0]["flags"] == [] and "| no flag |" in md
    assert 0 <= numbers["particles"][0]["quality"]["outer_fraction"] < 0.5
    assert "<img src='volume_cuts.png'" in page and "<table>" in page
    # the timings name every step, in the order they ran, and the steps took no longer than the whole run
    timings = json.loads((run_dir / "results.json").read_text())["timings"]
    steps = ["load and maps", "pictures", "align", "denoise", "reconstruct", "fsc", "shells", "exports"]
    assert list(timings) == steps + ["total"]
    assert min(timings[s] for s in steps) >= 0 and timings["reconstruct"] > 0 and timings["fsc"] > 0
    assert sum(timings[s] for s in steps) <= timings["total"] + 0.01 * len(steps)  # each rounded to 10 ms
    assert all(f"| {s} | {timings[s]:.1f} |" in md for s in steps + ["total"])


def test_report_is_a_record(run_dir, series_file):
    """Versions, the command line, the date, the input's SHA-256 and every argument, in full."""
    import hashlib

    import hyperspy

    record = json.loads((run_dir / "results.json").read_text())["record"]
    md = (run_dir / "report.md").read_text()
    digest = hashlib.sha256(Path(series_file).read_bytes()).hexdigest()
    assert record["inputs"] == [{"path": str(Path(series_file).resolve()), "bytes": Path(series_file).stat().st_size,
                                 "sha256": digest}]
    assert digest in md and record["versions"]["hyperspy"] == hyperspy.__version__
    assert f"| version of hyperspy | {hyperspy.__version__} |" in md
    assert record["command_line"].startswith("edxtomo --quiet run ") and "--export mrc vti MRC" in record["command_line"]
    assert record["arguments"]["method"] == "sirt" and record["arguments"]["parameters"] == {"iterations": 15}
    assert record["arguments"]["exports"] == ["mrc", "vti"]
    assert "| argument: parameters.iterations | 15 |" in md and "| date | 20" in md
    # nothing is cut: every strength tried is in the report
    assert "..." not in md


def test_quality_flags_mark_particles_cut_by_the_box_or_at_the_circle_edge():
    from hyperspy_edxtomo.analysis import flag_particles

    vol = datasets.core_shell_phantom(size=32)
    assert all(not q["flags"] for q in flag_particles(vol.find_particles()).values())
    # the same dot moved against the x face: cut by the box and at the edge of the reconstruction circle
    moved = vol._deepcopy_with_new_data(np.roll(vol.data, 14, axis=-1))
    flags = flag_particles(moved.find_particles())[1]["flags"]
    assert any("cut by the box" in f for f in flags) and any("reconstruction circle" in f for f in flags)
    # a particle smaller than the resolution
    found = vol.find_particles()
    d = found[0].equivalent_diameter
    assert any("FSC resolution" in f for f in flag_particles(found, {"Zn": 2 * d})[1]["flags"])
    assert not flag_particles(found, {"Zn": d / 2})[1]["flags"]


def test_run_does_not_overwrite_without_flag(run_dir, series_file, capsys):
    before = (run_dir / "report.md").read_text()
    rc = main(["--quiet", "run", str(series_file), *FAST, "--out", str(run_dir)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("edxtomo run: error:") and "--overwrite" in err and str(run_dir) in err
    assert (run_dir / "report.md").read_text() == before


def test_run_from_element_maps_subset_and_overwrite(tmp_path):
    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=32, seed=1)
    path = tmp_path / "maps.hspy"
    maps.save(path)
    out = tmp_path / "out"
    args = ["--quiet", "run", str(path), "--elements", "S", "Zn", "--method", "fbp", "--no-align", "--no-fsc",
            "--out", str(out)]
    assert main(args) == 0
    vol = hs.load(out / "volume.hspy")
    assert vol.elements == ["S", "Zn"] and vol.history[-1]["method"] == "fbp"
    md = (out / "report.md").read_text()
    assert "skipped (--no-fsc)" in md and "| alignment | none |" in md
    assert main(args) == 2  # results there
    assert main(args + ["--overwrite", "--shell-elements", "S"]) == 0
    numbers = json.loads((out / "results.json").read_text())["numbers"]
    assert [row["element"] for row in numbers["shells"]] == ["S"]


def test_run_pipeline_api_denoises_once_and_returns_results(tmp_path):
    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=32, seed=2)
    res = run_pipeline(maps, out=tmp_path, elements=["Se", "Zn"], method="sirt", parameters={"iterations": 10},
                       align=False, denoiser="gaussian", fsc=False, verbose=False)
    assert isinstance(res["volume"], ElementVolume)
    steps = [h["step"] for h in res["volume"].history]
    assert steps.count("denoising") == 1 and steps[-1] == "reconstruction"
    assert res["numbers"]["denoiser"]["method"] == "gaussian"
    assert res["fsc"] is None and res.volume is res["volume"] and res["numbers"] is res.numbers
    # the denoise step recorded its method, and the maps it handed on differ from those it was given
    denoised = res.steps["denoise"]
    assert denoised.method == "gaussian" and not denoised.inside
    assert denoised.files == {"denoised element maps": tmp_path / "element_maps_denoised_gaussian.hspy"}
    given, handed_on = res["maps"].to_numpy(), denoised.maps.to_numpy()
    assert handed_on.shape == given.shape and not np.allclose(handed_on, given)
    np.testing.assert_allclose(hs.load(tmp_path / "element_maps_denoised_gaussian.hspy").data, handed_on)
    # every step is timed (the skipped ones too), and together they took no longer than the whole run
    timings = res["timings"]
    names = ["load and maps", "pictures", "align", "denoise", "reconstruct", "fsc", "shells", "exports"]
    assert list(timings) == names + ["total"]
    assert sum(timings[s] for s in names) <= timings["total"] + 0.01 * len(names)  # each rounded to 10 ms
    # written through a temporary folder, the volume still remembers its file in out (a plain save() goes there)
    tp = res["volume"].tmp_parameters
    assert Path(tp.folder) == tmp_path and tp.filename == "volume" and tp.extension == ".hspy"


def test_two_step_takes_the_denoiser_as_its_own_stage():
    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=32, seed=0)
    # the conflict is caught before any work
    with pytest.raises(PipelineError, match="denoises itself"):
        run_pipeline(maps, method="two_step", denoiser="gaussian", parameters={"denoiser": "deep"}, verbose=False)
    # given once, the denoiser is the algorithm's parameter, and no step of its own
    config = PipelineConfig(method="two_step", denoiser="gaussian", denoiser_parameters={"sigma": 1.5})
    assert config.internal_denoiser and config.parameters == {}
    assert config.reconstruction_parameters == {"denoiser": "gaussian", "denoiser_parameters": {"sigma": 1.5}}
    assert config.arguments(maps)["parameters"] == config.reconstruction_parameters


def test_pipeline_config_is_checked_before_any_work_and_options_replace_its_fields(tmp_path):
    for options, message in [({"background": "both"}, "background must be one of"),
                             ({"parameters": [("lam", 1)]}, "parameters must be a dict of NAME: value"),
                             ({"exports": ["docx"]}, r"Unknown export format\(s\) \['docx'\]"),
                             ({"method": "nope"}, "--method:"), ({"denoiser": "nope"}, "--denoiser:"),
                             ({"fsc_method": "nope"}, "--fsc-method:"), ({"parameters": {"nope": 1}}, "--param:")]:
        with pytest.raises(PipelineError, match=message):
            PipelineConfig(**options)
    with pytest.raises(TypeError, match="no_such_option"):
        PipelineConfig(no_such_option=1)
    config = PipelineConfig(method="fbp", align=False, fsc=False, verbose=False, exports=[".NPY", "npy"],
                            background=True)
    assert config.exports == ("npy",) and config.background == "model" and config.out == Path("edxtomo_output")
    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, seed=1)
    res = run_pipeline(maps, config, out=tmp_path / "o", elements=["S", "Zn"])
    assert res.config.out == tmp_path / "o" and res.config.method == "fbp" and config.out == Path("edxtomo_output")
    assert res.record["arguments"]["exports"] == ["npy"] and res.record["arguments"]["out"] == str(tmp_path / "o")
    assert res.files["export volume.npy"] == tmp_path / "o" / "volume.npy" and res.files["export volume.npy"].exists()
    assert res["numbers"]["fsc"] == "skipped (--no-fsc)" and res.steps["fsc"].fsc is None
    # the folder as second argument, as before there was a PipelineConfig
    again = run_pipeline(maps, tmp_path / "p", method="fbp", align=False, fsc=False, verbose=False)
    assert again.out == tmp_path / "p" and (tmp_path / "p" / "report.md").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--elements", "Se", "Xx"], "Xx"),
        (["--method", "no_such_method"], "no_such_method"),
        (["--param", "no_such_param=1"], "no_such_param"),
        (["--export", "docx"], "docx"),
        (["--tilts", "0", "10"], "--tilts"),
        (["--shell-elements", "Cu", "--method", "fbp", "--no-fsc", "--no-align"], "Cu"),
    ],
)
def test_bad_options_exit_2_with_a_message(series_file, tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    assert main(["--quiet", "run", str(series_file), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edxtomo run: error:") and expected in err
    assert not (out / "report.md").exists()


def test_bad_files_exit_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.bcf"
    assert main(["--quiet", "run", str(missing), "--out", str(tmp_path / "a")]) == 2
    assert "nope.bcf" in capsys.readouterr().err
    corrupt = tmp_path / "broken.hspy"
    corrupt.write_bytes(b"not an hdf5 file at all" * 10)
    assert main(["--quiet", "run", str(corrupt), "--out", str(tmp_path / "b")]) == 2
    assert "broken.hspy" in capsys.readouterr().err
    other = tmp_path / "spectrum.hspy"
    hs.signals.Signal1D(np.zeros((4, 8))).save(other)
    assert main(["--quiet", "run", str(other), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "spectrum.hspy" in err and "Signal1D" in err


def test_run_on_vendor_files(bcf_views, tmp_path):
    paths = bcf_views
    out = tmp_path / "out"
    # wrong number of tilts: exit 2, the message names the files
    assert main(["--quiet", "run", *map(str, paths), "--tilts", "20", "-20", "--elements", "Cu", "--out", str(out)]) == 2
    rc = main(["--quiet", "run", *map(str, paths), "--tilts", "20", "-20", "0", "--elements", "Cu", "Pd",
               "--no-background", "--method", "sirt", "--param", "iterations=5", "--out", str(out)])
    assert rc == 0
    numbers = json.loads((out / "results.json").read_text())["numbers"]
    assert numbers["elements"] == ["Cu", "Pd"] and numbers["tilts_deg"] == [-20.0, 0.0, 20.0]
    assert numbers["counts_total"]["Cu"] > 0 and numbers["integer_counts"] is True
    assert isinstance(numbers["fsc"], dict) and numbers["fsc"]["split"] == "counts"
    md = (out / "report.md").read_text()
    assert "view_0.bcf" in md and "Cu_Ka" in md


def test_run_vendor_wrong_tilt_count_names_the_files(bcf_views, tmp_path, capsys):
    assert main(["--quiet", "run", *map(str, bcf_views), "--tilts", "20", "-20", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "view_0.bcf" in err and "tilt" in err


def test_step_commands(run_dir, tmp_path, capsys):
    maps = run_dir / "element_maps.hspy"
    out = tmp_path / "steps"
    assert main(["--quiet", "align", str(maps), "--method", "xcorr", "--out", str(out)]) == 0
    aligned = hs.load(out / "element_maps_aligned.hspy")
    assert aligned.metadata.Tomography.alignment.method == "xcorr"
    assert "shifts up to" in capsys.readouterr().out
    assert main(["--quiet", "align", str(maps), "--out", str(out)]) == 2  # already there
    # a known axis direction: kept, only the shifts estimated
    assert main(["--quiet", "align", str(maps), "--method", "axis", "--rotation", "1.5", "--overwrite",
                 "--out", str(out)]) == 0
    given = hs.load(out / "element_maps_aligned.hspy").metadata.Tomography.alignment
    assert given.rotation_deg == 1.5 and given.rotation_given
    assert "rotation 1.50 deg" in capsys.readouterr().out

    assert main(["--quiet", "denoise", str(maps), "--method", "gaussian", "--param", "sigma=1.5", "--out", str(out)]) == 0
    den = hs.load(out / "element_maps_denoised_gaussian.hspy")
    np.testing.assert_allclose(den.data.sum(axis=(2, 3)), hs.load(maps).data.sum(axis=(2, 3)), rtol=1e-4)
    assert main(["--quiet", "denoise", str(maps), "--method", "nope", "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err

    vol = run_dir / "volume.hspy"
    assert main(["--quiet", "analyse", str(vol), "--half2", str(vol), "--shell-elements", "S", "Zn",
                 "--out", str(out / "analysis")]) == 0
    md = (out / "analysis" / "report.md").read_text()
    assert "FSC 0.143" in md and "| 1 | S |" in md and "Shell coverage" in md
    fsc = hs.load(out / "analysis" / "fsc.hspy")
    assert np.all(np.abs(fsc.data[:, 1:8] - 1) < 1e-6)  # a volume with itself: FSC 1
    # the same FSC numbers and report as a run's, the halves named by their files; no record of a run
    saved = json.loads((out / "analysis" / "results.json").read_text())
    assert list(saved) == ["numbers", "timings"] and list(saved["timings"]) == ["fsc", "shells", "total"]
    assert saved["numbers"]["fsc"]["split"] == "given volumes volume.hspy and volume.hspy"
    assert saved["numbers"]["fsc"]["seed"] == "-" and "parameters" not in saved["numbers"]["fsc"]
    assert main(["--quiet", "analyse", str(vol), "--out", str(out / "analysis2")]) == 0
    assert "skipped" in (out / "analysis2" / "report.md").read_text()

    assert main(["export", str(vol), "--format", "mrc", "tif", "npy", "--out", str(out / "exp")]) == 0
    import mrcfile
    import tifffile

    with mrcfile.open(out / "exp" / "volume_Se.mrc") as mrc:
        assert abs(float(mrc.voxel_size.x) - 1.89) < 1e-3  # angstrom
    assert tifffile.imread(out / "exp" / "volume.tif").shape == (32, 3, 32, 32)
    assert np.load(out / "exp" / "volume.npy").shape == (3, 32, 32, 32)
    assert main(["export", str(vol), "--format", "doc", "--out", str(out / "exp")]) == 2
    assert main(["export", str(tmp_path / "missing.hspy"), "--format", "mrc"]) == 2
    assert "missing.hspy" in capsys.readouterr().err


def test_listings(capsys):
    assert main(["denoisers"]) == 0
    text = capsys.readouterr().out
    assert "gaussian:" in text and "deep:" in text and "sigma" in text
    assert main(["algorithms"]) == 0
    text = capsys.readouterr().out
    assert "two_step:" in text and "end_to_end:" in text and "iterations" in text


@pytest.mark.parametrize("command", ["run", "demo", "maps", "align", "denoise", "reconstruct", "analyse", "export",
                                     "train-end-to-end", "algorithms", "denoisers"])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: edxtomo {command}" in text and len(text) > 150


def test_write_report_tables(tmp_path):
    res = {"numbers": {"elements": ["S"], "counts_per_tilt": {"S": 512.0}, "counts_total": {"S": 6656.0},
                       "fsc": {"split": "counts", "method": "tv", "seed": 0, "units": "nm",
                               "resolution_0143": {"S": 0.61}, "resolution_half_bit": {"S": 0.72},
                               "nyquist_limited_0143": {"S": True}}},
           "timings": {"total": 3.5}, "files": {"volume cuts": tmp_path / "volume_cuts.png"}}
    md, page = write_report(res, tmp_path)
    text = md.read_text()
    assert "| S | 512 | 6656 | <= 0.61 | 0.72 |" in text and "![volume cuts](volume_cuts.png)" in text
    assert "<td>&lt;= 0.61</td>" in page.read_text()


# ---------------------------------------------------------------------------------------
# a first real series never crashes: no particle, interrupted runs, outputs over inputs


@pytest.fixture(scope="module")
def background_only_file(tmp_path_factory):
    """Element maps of a field with no particle at all: a flat background, no counts from the dot."""
    path = tmp_path_factory.mktemp("empty") / "empty.hspy"
    datasets.simulate_scene("dot", size=32, counts_per_tilt=0, background=2.0, seed=0).save(path)
    return path


def test_run_without_a_particle_completes_and_says_so(background_only_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--quiet", "run", str(background_only_file), "--elements", "Se", "Zn", "--method", "sirt",
               "--param", "iterations=10", "--no-align", "--out", str(out)])
    assert rc == 0
    numbers = json.loads((out / "results.json").read_text())["numbers"]
    text, report = capsys.readouterr().out, (out / "report.md").read_text()
    # noise leaves either nothing above the threshold, said, or blobs that are flagged, never trusted silently
    reason = numbers["shells"]
    if isinstance(reason, str):
        assert reason.startswith(("no particle found", "shell maps failed"))
        assert f"no particle analysis: {reason}" in text and f"| shells | {reason} |" in report
    else:
        assert numbers["particles"] and all(p["flags"] for p in numbers["particles"])
        assert "check: " in text and "do not trust the numbers of particle(s)" in report
    assert isinstance(numbers["fsc"], dict)  # the steps before the analysis are all there
    assert isinstance(hs.load(out / "volume.hspy"), ElementVolume)


def test_a_volume_without_particles_is_reported_not_fatal(tmp_path):
    from hyperspy_edxtomo.signals import volume_from_array
    from hyperspy_edxtomo.workflow.pipeline import analyse_volume

    numbers = {}
    empty = volume_from_array(np.zeros((2, 16, 16, 16)), ["Se", "Zn"], voxel_size_nm=0.2)
    assert analyse_volume(empty, numbers=numbers) == (None, None)
    assert numbers["particles"] == [] and numbers["particles_note"].startswith("no particle found: The volume is empty")
    md, _ = write_report({"numbers": {**numbers, "elements": []}, "timings": {}, "files": {}}, tmp_path)
    assert "| particles | no particle found: The volume is empty" in md.read_text()


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_interrupted_or_failed_run_leaves_earlier_results_untouched(tmp_path, monkeypatch, capsys):
    from hyperspy_edxtomo.workflow import (
        steps,  # the analysis step calls analyse_volume from here
    )

    maps_file = tmp_path / "maps.hspy"
    datasets.quantum_dot_element_maps("CdSe/ZnS", size=32, seed=1).save(maps_file)
    out = tmp_path / "D"
    args = ["--quiet", "run", str(maps_file), "--elements", "S", "Zn", "--method", "fbp", "--no-align", "--no-fsc",
            "--out", str(out)]
    assert main(args + ["--export", "npy"]) == 0
    (out / "notes.txt").write_text("the user's own notes")
    before = _snapshot(out)
    assert "volume.npy" in before and "report.md" in before

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "analyse_volume", interrupted)  # after the new volume is written
    assert main(args + ["--method", "sirt", "--overwrite"]) == 130
    assert capsys.readouterr().err.strip() == f"edxtomo run: interrupted; {out} left unchanged"
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "maps.hspy"]  # no temporary folder left

    def broken(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.undo()
    monkeypatch.setattr("hyperspy_edxtomo.workflow.figures.volume_cuts", broken)  # the pictures, after the analysis
    assert main(args + ["--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edxtomo run: error: RuntimeError: out of memory") and "--debug" in err
    assert "Traceback" not in err
    assert main(args + ["--overwrite", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert _snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["D", "maps.hspy"]

    # a failing particle analysis does not cost the volume: the run completes and the report says why
    monkeypatch.undo()
    monkeypatch.setattr(steps, "analyse_volume", broken)
    assert main(args + ["--overwrite"]) == 0
    # the command line prints each warning as one line naming the command
    assert "edxtomo run: warning: The particle and shell analysis failed" in capsys.readouterr().err
    assert "| shells | the particle analysis failed (RuntimeError: out of memory) |" in (out / "report.md").read_text()

    # a run that completes replaces the earlier results as a whole (the export it no longer asks for
    # goes) and keeps the user's own file
    monkeypatch.undo()
    assert main(args + ["--export", "npy"]) == 2  # results there: only with --overwrite
    assert main(args + ["--overwrite", "--shell-elements", "S"]) == 0
    assert not (out / "volume.npy").exists() and (out / "notes.txt").read_text() == "the user's own notes"
    assert [r["element"] for r in json.loads((out / "results.json").read_text())["numbers"]["shells"]] == ["S"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "maps.hspy"]


def test_an_output_never_replaces_an_input(tmp_path, capsys):
    out = tmp_path / "q1"
    maps_file = tmp_path / "maps.hspy"
    datasets.quantum_dot_element_maps("CdSe/ZnS", size=32, seed=1).save(maps_file)
    assert main(["--quiet", "run", str(maps_file), "--elements", "Se", "S", "Zn", "--method", "fbp", "--no-align",
                 "--no-fsc", "--out", str(out)]) == 0
    before = _snapshot(out)
    # the run's own element maps as the input of a run into the same folder: refused before any work
    rc = main(["--quiet", "run", str(out / "element_maps.hspy"), "--elements", "Se", "S", "--method", "fbp",
               "--no-align", "--no-fsc", "--out", str(out), "--overwrite"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("edxtomo run: error:") and "element_maps.hspy" in err and "inside the output folder" in err
    assert _snapshot(out) == before
    assert hs.load(out / "element_maps.hspy").elements == ["Se", "S", "Zn"]
    lazy = hs.load(out / "element_maps.hspy", lazy=True)  # still reads its file
    with pytest.raises(ValueError, match="inside the output folder"):
        run_pipeline(lazy, out=out, overwrite=True, verbose=False)
    assert _snapshot(out) == before

    # the step commands share the folder (the README's workflow), but never write over their input
    assert main(["--quiet", "align", str(out / "element_maps.hspy"), "--method", "xcorr", "--out", str(out)]) == 0
    aligned = out / "element_maps_aligned.hspy"
    once = aligned.read_bytes()
    assert main(["--quiet", "align", str(aligned), "--method", "xcorr", "--out", str(out), "--overwrite"]) == 2
    assert "element_maps_aligned.hspy is an input" in capsys.readouterr().err
    assert aligned.read_bytes() == once
    vol = out / "volume.hspy"
    assert main(["export", str(vol), "--format", "hspy"]) == 2  # volume.hspy onto itself
    assert "is an input" in capsys.readouterr().err
    assert isinstance(hs.load(vol), ElementVolume)
    assert main(["export", str(vol), "--format", "npy"]) == 0
    assert main(["export", str(vol), "--format", "npy"]) == 2  # there: only with --overwrite
    assert "volume.npy exists" in capsys.readouterr().err
    assert not [p for p in tmp_path.rglob("*tmp-*")]


def test_non_finite_strength_is_refused_naming_lam(tmp_path, capsys, series_file):
    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, seed=0)
    for lam in (float("nan"), float("inf"), -1.0):
        with pytest.raises(PipelineError, match=r"lam.*'auto' or a positive finite number"):
            run_pipeline(maps, out=tmp_path / "x", method="tv", parameters={"lam": lam}, verbose=False)
        with pytest.raises(ValueError, match="parameter 'lam'"):
            maps.reconstruct("l1", lam=lam)
    assert not (tmp_path / "x").exists()
    assert main(["--quiet", "run", str(series_file), "--method", "tv", "--param", "lam=1e999",
                 "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "'lam'" in err and "positive finite number" in err and not (tmp_path / "y").exists()


def test_fsc_from_two_tilts_is_reported_with_a_warning(tmp_path):
    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, tilts=[-30, 30], seed=0)
    with pytest.warns(UserWarning, match="each FSC half holds only 2 tilts"):
        res = run_pipeline(maps, out=tmp_path / "o", elements=["Se", "Zn"], method="sirt",
                           parameters={"iterations": 5}, align=False, verbose=False)
    warning = res["numbers"]["fsc"]["warning"]
    assert "only 2 tilts" in warning and "streaks" in warning
    assert f"| warning | {warning} |" in (tmp_path / "o" / "report.md").read_text()


def test_run_lazy_gives_the_same_volume(series_file, run_dir, tmp_path):
    """--lazy reads the spectra lazily; maps, volume (lazy, computed during the call) and FSC come out the same."""
    out = tmp_path / "lazy"
    assert main(["--quiet", "run", str(series_file), "--elements", "Se", "S", "Zn", *FAST, "--lazy",
                 "--out", str(out)]) == 0
    lazy, eager = hs.load(out / "volume.hspy"), hs.load(run_dir / "volume.hspy")
    np.testing.assert_allclose(lazy.data, eager.data, rtol=1e-4, atol=1e-5)
    a = json.loads((out / "results.json").read_text())["numbers"]["fsc"]["resolution_0143"]
    b = json.loads((run_dir / "results.json").read_text())["numbers"]["fsc"]["resolution_0143"]
    assert a == pytest.approx(b, rel=1e-3)


def test_results_that_appear_during_a_run_are_not_replaced_without_overwrite(tmp_path, monkeypatch):
    """Two runs into one folder without --overwrite: the one that finishes second refuses, nothing lost."""
    from hyperspy_edxtomo.workflow import (
        steps,  # the analysis step calls analyse_volume from here
    )

    maps_file = tmp_path / "maps.hspy"
    datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, seed=1).save(maps_file)
    out = tmp_path / "D"
    args = ["--quiet", "run", str(maps_file), "--method", "fbp", "--no-align", "--no-fsc", "--out", str(out)]
    real = steps.analyse_volume

    def other_run_finishes_first(*a, **k):
        monkeypatch.setattr(steps, "analyse_volume", real)
        assert main(args) == 0  # the other run, started later, finishes first
        return real(*a, **k)

    monkeypatch.setattr(steps, "analyse_volume", other_run_finishes_first)
    with pytest.raises(FileExistsError, match="appeared while this run was working"):
        run_pipeline(maps_file, out=out, method="sirt", parameters={"iterations": 5}, align=False, fsc=False,
                     verbose=False)
    before = json.loads((out / "results.json").read_text())["numbers"]["method"]
    assert before == "fbp" and sorted(p.name for p in tmp_path.iterdir()) == ["D", "maps.hspy"]


def test_ctrl_c_after_the_results_are_in_place_says_they_are_complete(tmp_path, monkeypatch, capsys):
    from hyperspy_edxtomo.workflow import (
        steps,  # every line the pipeline prints goes through steps.log
    )

    maps_file = tmp_path / "maps.hspy"
    datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, seed=1).save(maps_file)
    out = tmp_path / "D"
    real_log = steps.log

    def log(message):
        if message.startswith("Wrote "):  # after the folder has been moved into place
            raise KeyboardInterrupt
        real_log(message)

    monkeypatch.setattr(steps, "log", log)
    assert main(["--quiet", "run", str(maps_file), "--method", "fbp", "--no-align", "--no-fsc", "--out", str(out)]) == 130
    assert f"interrupted after its results were written to {out} (complete)" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["numbers"]["method"] == "fbp"


def test_export_name_is_a_file_name_not_a_path(run_dir, tmp_path, capsys):
    """--name ../../x would write above --out: refused, naming the option."""
    out = tmp_path / "exp"
    rc = main(["export", str(run_dir / "volume.hspy"), "--format", "npy", "--name", "../../escaped", "--out", str(out)])
    assert rc == 2 and "--name '../../escaped' must be a file name" in capsys.readouterr().err
    assert not list(tmp_path.parent.glob("escaped*")) and not list(tmp_path.glob("escaped*"))


def test_step_lines_are_logging_records_shown_only_when_verbose(tmp_path, capsys, caplog):
    """verbose=True shows the steps on standard output; verbose=False shows nothing there, the records
    still reach logging; no handler or level of the user's logging is left changed."""
    import logging

    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, seed=0)
    logger = logging.getLogger("hyperspy_edxtomo.workflow")
    handlers, level = list(logger.handlers), logger.level
    options = dict(elements=["Se"], method="fbp", align=False, fsc=False, report=False)
    # a user's own logging that shows warnings only (basicConfig) must not print the lines a second time
    seen = []
    mine = logging.Handler()
    mine.emit = seen.append
    logging.getLogger().addHandler(mine)
    try:
        run_pipeline(maps, out=tmp_path / "a", verbose=True, **options)
    finally:
        logging.getLogger().removeHandler(mine)
    assert not [r for r in seen if r.name.startswith("hyperspy_edxtomo.workflow") and r.levelno < logging.WARNING]
    shown = capsys.readouterr().out
    assert "Reconstructing with fbp ..." in shown and f"to {tmp_path / 'a'}" in shown
    with caplog.at_level(logging.INFO, logger="hyperspy_edxtomo.workflow"):
        run_pipeline(maps, out=tmp_path / "b", verbose=False, **options)
    assert capsys.readouterr().out == ""
    assert any(r.getMessage() == "Reconstructing with fbp ..." for r in caplog.records)
    assert logger.handlers == handlers and logger.level == level
