"""The ``edxtomo`` command line.

``edxtomo run`` does the whole job from vendor files (load, element maps,
alignment, optional denoising, reconstruction, Fourier shell correlation,
particles and shells, pictures, exports and a report; see
:mod:`hyperspy_edxtomo.workflow.pipeline`); ``edxtomo demo`` runs it on a simulated
quantum dot. One sub-command per step: ``maps``, ``align``, ``denoise``,
``reconstruct``, ``analyse``, ``export``, ``train-end-to-end``; ``algorithms``
and ``denoisers`` list the installed methods and their parameters.

Every command writes into a temporary sibling of its output and moves the
result into place only at the end (see :mod:`hyperspy_edxtomo.io.staging`): an
error or Ctrl-C leaves earlier results as they were. ``run`` and ``demo`` own
their folder (an earlier run's results there are replaced as a whole, with
``--overwrite``; an input inside it is refused); the step commands write
their named files into a shared folder and refuse to write over their input.

Exit codes: 0 success; 2 bad input (missing or corrupt file, unknown element
or method, tilts that do not fit, results already in the output folder, an
output that would replace an input), the message naming the file or option;
1 any other failure (``--debug`` or ``EDXTOMO_DEBUG=1`` shows the
traceback); 130 interrupted (Ctrl-C), the output left unchanged.
"""

import argparse
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from hyperspy_edxtomo.alignment import Alignment
from hyperspy_edxtomo.alignment.api import check_rotation
from hyperspy_edxtomo.analysis import fourier_shell_correlation
from hyperspy_edxtomo.base.errors import EdxtomoError, InputError
from hyperspy_edxtomo.base.private_api import is_lazy
from hyperspy_edxtomo.base.provenance import record_command_line
from hyperspy_edxtomo.denoising.api import get_denoiser, list_denoisers
from hyperspy_edxtomo.io.exports import FORMATS, export_targets
from hyperspy_edxtomo.io.loading import load_native
from hyperspy_edxtomo.io.staging import check_not_inputs, input_files, staged_output
from hyperspy_edxtomo.plugins.manager import get_algorithm
from hyperspy_edxtomo.reconstruction.api import (
    DEFAULT_METHOD,
    format_algorithms,
    list_algorithms,
)
from hyperspy_edxtomo.reconstruction.deep_models import check_e2e_settings, train_end_to_end
from hyperspy_edxtomo.signals import ElementMapTiltSeries, ElementVolume


# -- argument types: bad numbers are refused by argparse (exit 2, usage shown), before any work ---------
def _int_at_least(low, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


#: an integer >= 1 (argparse type)
positive_int = _int_at_least(1, "a positive whole number")
#: an integer >= 0 (argparse type; random seeds)
non_negative_int = _int_at_least(0, "a whole number >= 0")


def finite_float(text):
    """A finite number (argparse type; angles in degrees)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def rotation_deg(text):
    """A finite angle in degrees within (-180, 180] (argparse type; the in-plane rotation)."""
    value = finite_float(text)
    try:
        return check_rotation(value)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _save_maps(maps, out, stem):
    from hyperspy_edxtomo.workflow.figures import tilt_montage

    hspy = out / f"{stem}.hspy"
    maps.save(hspy, overwrite=True)
    png = tilt_montage(maps, out / f"{stem}.png")
    return hspy, png


def _targets_free(targets, inputs, overwrite):
    """Before any work: no target may be an input; without --overwrite none may exist."""
    check_not_inputs(targets, inputs)
    _check_free(targets, overwrite)


#: the quantum dot the simulated demo makes unless --kind names another
DEMO_KIND = "InP/ZnSe/ZnS"


def cmd_demo(args):
    from hyperspy_edxtomo import datasets
    from hyperspy_edxtomo.workflow.config import PipelineConfig
    from hyperspy_edxtomo.workflow.pipeline import run_pipeline

    t0 = time.perf_counter()
    out = Path(args.out)
    params = _parse_params(args.param)
    if args.real:
        if args.kind is not None:
            raise InputError(f"--kind {args.kind} applies to the simulated demo; --real runs the real QD1 series "
                             "(an InP/ZnSe/ZnS dot): leave --kind out.")
        series = datasets.qd1()
        full = series.data.shape[-1]
        if args.size is not None and args.size > full:
            # --real crops the shipped series; it cannot make a larger field of view
            raise InputError(f"--size {args.size} is larger than the real QD1 series ({full} x {full} px): with "
                             f"--real, --size crops a central region; give --size {full} or less, or leave --size "
                             f"out for all {full} px.")
        if args.size is not None and args.size < full:
            lo = (full - args.size) // 2
            series = series.isig[lo : lo + args.size, lo : lo + args.size]
        print(f"QD1, a real quantum dot ({datasets.QD1_CITATION}): {series.data.shape[-1]} px, not aligned; "
              "the whole pipeline, alignment included ...")
        elements, truth, align, keep_spectra = list(series.elements), None, True, False
    else:
        size = 64 if args.size is None else args.size
        args.kind = args.kind or DEMO_KIND
        print(f"Simulating a {args.kind} quantum-dot tilt series ({size} px, seed {args.seed}) ...")
        series = datasets.quantum_dot_tilt_series(kind=args.kind, size=size, seed=args.seed)
        elements = list(series.metadata.Sample.elements)
        truth, align, keep_spectra = series.metadata.Simulation.ground_truth, args.align, True
        print(f"Element maps of {elements} from {len(series.tilts)} tilts, then the whole pipeline ...")
    # keep the demo quick: the FSC halves reuse the chosen strength (halved) with half the iterations
    quick = get_algorithm(args.method).quick_parameters
    fsc_params = {k: v for k, v in quick.items() if k not in params} or None
    config = PipelineConfig(out=out, elements=elements, method=args.method, parameters=params,
                            fsc_parameters=fsc_params, align=align, fsc=not args.no_fsc, seed=args.seed,
                            overwrite=True, truth=truth, show_progressbar=not args.quiet, exports=args.export)
    # run_pipeline writes the folder whole (temporary folder, then rename); the simulated spectra follow
    run_pipeline(series, config)
    if keep_spectra:
        with staged_output(out, "files") as work:
            series.save(work / "tilt_series.hspy", overwrite=True)
    print(f"Demo done in {time.perf_counter() - t0:.1f} s: {out / 'report.html'}")
    return 0


def cmd_maps(args):
    from hyperspy_edxtomo.workflow.steps import load_input

    out = Path(args.out)
    _targets_free([out / "element_maps.hspy", out / "element_maps.png"], input_files(args.files), args.overwrite)
    # vendor files (one per tilt) or a saved EDX tilt series, as for `run`
    source = args.files[0] if len(args.files) == 1 else args.files
    maps, _, _ = load_input(source, elements=args.elements, tilts=args.tilts, lazy=args.lazy,
                            background=_background(args), show_progressbar=not args.quiet)
    if is_lazy(maps):
        maps.compute()
    with staged_output(out, "files", protect=input_files(args.files)) as work:
        _save_maps(maps, work, "element_maps")
    print(f"Wrote {out / 'element_maps.hspy'} and {out / 'element_maps.png'}")
    return 0


def _parse_params(items):
    """``["lam=0.5", "denoiser=gaussian", "denoiser_parameters={'steps': 200}"]`` to a dict."""
    import ast

    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param needs NAME=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a plain string, e.g. denoiser=gaussian
    return out


def _load_maps(path):
    return load_native(path, expected=ElementMapTiltSeries,
                       hint="make element maps with 'edxtomo maps' or get_element_maps() and save them as .hspy/.zspy.")


def cmd_reconstruct(args):
    from hyperspy_edxtomo.workflow.figures import volume_cuts

    params = _parse_params(args.param)
    if args.weights:
        params["weights"] = args.weights
    out = Path(args.out)
    stem = f"volume_{args.method}"
    inputs = input_files([args.maps] + ([args.weights] if args.weights else []))
    _targets_free([out / f"{stem}.hspy", out / f"{stem}.png"], inputs, args.overwrite)
    maps = _load_maps(args.maps)
    t0 = time.perf_counter()
    volume = maps.reconstruct(args.method, show_progressbar=not args.quiet, **params)
    with staged_output(out, "files", protect=inputs) as work:
        volume.save(work / f"{stem}.hspy", overwrite=True)
        volume_cuts(volume, work / f"{stem}.png")
    print(f"Wrote {out / f'{stem}.hspy'} and {out / f'{stem}.png'} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_train_end_to_end(args):
    # checked before the two_step reconstructions (``steps=0`` would save an untrained network)
    settings = check_e2e_settings(_parse_params(args.param), prefix="--param ")
    out = Path(args.out)
    inputs = input_files(args.maps)
    check_not_inputs([out], inputs)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists: choose another path or pass --overwrite")
    series = [_load_maps(p) for p in args.maps]
    with staged_output(out.parent, "files", protect=inputs) as work:
        model = train_end_to_end(series, out=work / out.name, two_step=_parse_params(args.two_step_param),
                                 show_progressbar=not args.quiet, **settings)
    print(f"Wrote {out}: {model!r} ({model.training_log['seconds_total']:.1f} s)")
    return 0


def _load_volume(path):
    return load_native(path, expected=ElementVolume,
                       hint="make an element volume with 'edxtomo reconstruct' or 'edxtomo run'.")


def _check_free(paths, overwrite):
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise FileExistsError(f"{p} exists: choose another --out or pass --overwrite")


def _background(args):
    """The pipeline's ``background=`` from --no-background / --subtract-background."""
    if args.no_background:
        return "none"
    return "subtract" if args.subtract_background else "model"


def _add_background_options(p):
    group = p.add_mutually_exclusive_group()
    group.add_argument("--no-background", action="store_true",
                       help="no background at all: the raw window counts under each X-ray line, nothing attached")
    group.add_argument("--subtract-background", action="store_true",
                       help="subtract the background (exspy's side windows) from the counts: the maps "
                            "are then no longer counts, so lam=auto, the count-split FSC and two_step cannot use "
                            "them. Default: raw integer counts, with the background kept beside them "
                            "(metadata.Tomography.background) as a term of the model y ~ Poisson(A x + b)")


def cmd_run(args):
    from hyperspy_edxtomo.workflow.config import PipelineConfig
    from hyperspy_edxtomo.workflow.pipeline import run_pipeline

    config = PipelineConfig(
        out=args.out, elements=args.elements, tilts=args.tilts, method=args.method,
        parameters=_parse_params(args.param), align=not args.no_align, align_method=args.align_method,
        denoiser=args.denoiser, denoiser_parameters=_parse_params(args.denoiser_param),
        fsc=not args.no_fsc, fsc_method=args.fsc_method, fsc_parameters=_parse_params(args.fsc_param),
        seed=args.seed, shell_elements=args.shell_elements, exports=args.export, background=_background(args),
        lazy=args.lazy, overwrite=args.overwrite, show_progressbar=not args.quiet,
    )
    run_pipeline(args.files if len(args.files) > 1 else args.files[0], config)
    return 0


def _se_text(info):
    """What the validation of ``auto`` concluded (or the rotation's standard error of ``axis``)."""
    if info.has_item("validation.result"):
        v = info.validation
        if v.has_item("difference_vs_start"):
            return (f"; validated on held-out counts: {v.result}, held-out deviance "
                    f"{float(v.difference_vs_start):+.1f} +- {float(v.se_vs_start):.1f} against {v.start}")
        return f"; {v.result}: {v.get_item('reason', '')}"
    se = info.get_item("rotation_se_deg", None)
    return f" (standard error {float(se):.2f} deg)" if se is not None else ""


def cmd_align(args):
    import numpy as np

    out = Path(args.out)
    stem = "element_maps_aligned"
    inputs = input_files(args.maps)
    _targets_free([out / f"{stem}.hspy", out / f"{stem}.png"], inputs, args.overwrite)
    maps = _load_maps(args.maps)
    t0 = time.perf_counter()
    aligned = maps.align(method=args.method, show_progressbar=not args.quiet, rotation=args.rotation)
    info = Alignment.from_metadata(aligned)
    with staged_output(out, "files", protect=inputs) as work:
        _save_maps(aligned, work, stem)
    shifts = np.hypot(info.shift_x_px, info.shift_y_px)
    offset = info.axis_offset_px if info.axis_offset_px is not None else 0.0
    print(f"Aligned {len(maps.tilts)} views ({info.method or args.method}): shifts up to "
          f"{shifts.max():.2f} px, tilt-axis offset {float(offset):.2f} px, "
          f"rotation {info.rotation_deg:.2f} deg{_se_text(aligned.metadata.Tomography.alignment)} "
          f"({time.perf_counter() - t0:.1f} s)")
    print(f"Wrote {out / f'{stem}.hspy'} and {out / f'{stem}.png'}")
    return 0


def cmd_denoise(args):
    params = _parse_params(args.param)
    get_denoiser(args.method).create(**params)  # unknown method or parameter: exit 2 before loading
    out = Path(args.out)
    stem = f"element_maps_denoised_{args.method}"
    inputs = input_files(args.maps)
    _targets_free([out / f"{stem}.hspy", out / f"{stem}.png"], inputs, args.overwrite)
    maps = _load_maps(args.maps)
    t0 = time.perf_counter()
    den = maps.denoise(args.method, show_progressbar=not args.quiet, **params)
    with staged_output(out, "files", protect=inputs) as work:
        _save_maps(den, work, stem)
    print(f"Wrote {out / f'{stem}.hspy'} and {out / f'{stem}.png'} ({time.perf_counter() - t0:.1f} s)")
    return 0


#: what ``edxtomo analyse`` may write into its folder
ANALYSIS_FILES = ("report.md", "report.html", "results.json", "fsc.hspy", "fsc.png", "volume_cuts.png",
                  "max_projections.png", "shell_thickness.png", "shell_thickness_histogram.png")


def cmd_analyse(args):
    from hyperspy_edxtomo.workflow import figures as plotting
    from hyperspy_edxtomo.workflow import steps
    from hyperspy_edxtomo.workflow.report import write_report, write_results_json
    from hyperspy_edxtomo.workflow.results import Results

    out = Path(args.out)
    inputs = input_files([args.volume] + ([args.half2] if args.half2 else []))
    check_not_inputs([out / name for name in ANALYSIS_FILES], inputs)
    _check_free([out / "report.md", out / "report.html"], args.overwrite)
    vol = _load_volume(args.volume)
    other = _load_volume(args.half2) if args.half2 else None
    t0 = time.perf_counter()
    numbers = {"input": str(args.volume), "elements": list(vol.elements), "method": vol.history[-1].get("method", "?")
               if vol.history else "?", "volume_shape": list(vol.data.shape[1:]), "pixel_size": list(vol.voxel_size)}
    files, timings, fsc = {}, {}, None
    with staged_output(out, "files", protect=inputs) as work:
        if other is not None:
            fsc = fourier_shell_correlation(vol, other)
            done = steps.record_fsc(fsc, list(vol.elements), work, method=numbers["method"], seed="-",
                                    split=f"given volumes {Path(args.volume).name} and {Path(args.half2).name}")
            numbers.update(done.numbers)
            files.update(done.files)
            units = fsc.metadata.Tomography.FSC.units
            for el in vol.elements:
                print(f"  {el:>2}: FSC {numbers['fsc']['resolution_0143'][el]:.2f} {units} (0.143), "
                      f"{numbers['fsc']['resolution_half_bit'][el]:.2f} {units} (1/2-bit)")
        else:
            numbers["fsc"] = "skipped: give the reconstruction of the other half with --half2"
        timings["fsc"] = round(time.perf_counter() - t0, 2)
        # the report's table per element has these columns; a volume alone has no counts
        numbers["counts_per_tilt"] = {el: float("nan") for el in vol.elements}
        numbers["counts_total"] = {el: float("nan") for el in vol.elements}
        t1 = time.perf_counter()
        analysed = steps.analyse(vol, work, shell_elements=args.shell_elements, fsc=numbers["fsc"],
                                 max_particles=args.max_particles, verbose=False, keep_going=False)
        numbers.update(analysed.numbers)
        files.update(analysed.files)
        timings["shells"] = round(time.perf_counter() - t1, 2)
        if analysed.particles is not None:
            print(analysed.particles)
        if analysed.shells is not None:
            print(analysed.shells)
        else:
            print(f"No shell maps: {numbers.get('shells')}")
        for label, reason in numbers.get("shells_skipped", {}).items():
            print(f"Particle {label} not analysed: {reason}")
        files["volume cuts"] = plotting.volume_cuts(vol, work / "volume_cuts.png")
        files["maximum projections"] = plotting.max_projections(vol, work / "max_projections.png")
        timings["total"] = round(time.perf_counter() - t0, 2)
        results = Results(out=out, volume=vol, fsc=fsc, particles=analysed.particles, shells=analysed.shells,
                          files=files, numbers=numbers, timings=timings, steps={"analyse": analysed})
        write_results_json(results, work, keys=("numbers", "timings"))
        write_report(results, work, title=f"Analysis of {Path(args.volume).name}")
    print(f"Wrote {out / 'report.md'} and {out / 'report.html'} ({timings['total']:.1f} s)")
    return 0


def cmd_export(args):
    vol = _load_volume(args.volume)
    out = Path(args.out) if args.out else Path(args.volume).parent
    if args.name is not None and (Path(args.name).name != args.name or args.name in ("", ".", "..")):
        # a name, not a path: the files go into --out, never beside or above it
        raise InputError(f"--name {args.name!r} must be a file name without folders; choose the folder with --out.")
    stem = args.name or Path(args.volume).stem
    inputs = input_files(args.volume)
    suffixes = []
    for fmt in args.format:
        suffix = "." + fmt.lower().lstrip(".")
        if suffix not in FORMATS:
            raise InputError(f"Unknown format {fmt!r}: choose among {', '.join(f.lstrip('.') for f in FORMATS)}.")
        suffixes.append(suffix)
    elements = [args.element] if args.element else list(vol.elements)
    if args.element and args.element not in vol.elements:
        raise InputError(f"--element {args.element!r} is not in the volume's elements {vol.elements}.")
    targets = [t for s in suffixes for t in export_targets(out / f"{stem}{s}", s, elements)]
    _targets_free(targets, inputs, args.overwrite)
    with staged_output(out, "files", protect=inputs) as work:
        for s in suffixes:
            vol.export(work / f"{stem}{s}", element=args.element, overwrite=True)
    print("Wrote " + ", ".join(str(p) for p in targets))
    return 0


def cmd_denoisers(args):
    lines = []
    for name, summary in list_denoisers().items():
        cls = get_denoiser(name)
        lines.append(f"{name}: {summary}  [{cls.__module__}]")
        for p, d in cls.describe_parameters().items():
            lines.append(f"    {p} = {d['default']!r}  ({d['allowed']}): {d['description']}")
    print("\n".join(lines))
    return 0


def cmd_algorithms(args):
    print(format_algorithms(list_algorithms()))
    return 0


_EPILOG = """examples:
  edxtomo demo                                   # the whole job on a simulated quantum dot
  edxtomo demo --real                            # the whole job on QD1, a real quantum dot
  edxtomo run qd_*.bcf --elements Se S Zn --tilts -60 -40 -20 0 20 40 60 --method two_step --out qd1
  edxtomo maps qd_*.bcf --elements Se S Zn --out qd1
  edxtomo align qd1/element_maps.hspy --out qd1
  edxtomo reconstruct qd1/element_maps_aligned.hspy --method tv --param lam=3 --out qd1
  edxtomo analyse qd1/volume_tv.hspy --out qd1/analysis
  edxtomo export qd1/volume_tv.hspy --format mrc tif vti

Outputs appear whole or not at all: each command writes into a temporary
folder beside its output and moves the result into place at the end, so an
error or Ctrl-C leaves earlier results unchanged. An output that would replace
an input is refused ('run' refuses an input inside --out, which it replaces).

exit codes: 0 success; 2 bad input (missing or corrupt file, unknown element or
method, tilts that do not fit, results already in the output folder, an output
that would replace an input), with a message naming the file or option; 1 any
other failure (--debug or EDXTOMO_DEBUG=1 shows the traceback); 130 interrupted.
"""


def _add_common(p, out_default="edxtomo_output", overwrite_help="replace earlier results in --out"):
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    if out_default is not None:
        p.add_argument("--out", default=out_default, help=f"output folder (default: {out_default})")
    if overwrite_help:
        p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def _sub(sub, name, help, description=None):
    return sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="edxtomo",
        description="STEM-EDX tomography of nanocrystals (HyperSpy extension hyperspy_edxtomo): vendor "
                    "spectrum-image tilt series to 3D element volumes, resolution and shell maps.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars (also accepted after the command)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also accepted after the command, or EDXTOMO_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _sub(sub, "run", "the whole job: load, maps, align, denoise, reconstruct, FSC, shells, pictures, report",
               description="Run the whole pipeline on one spectrum-image file per tilt (or one saved .hspy/.zspy "
                           "of an EDX tilt series or of element maps) and write into --out: element maps, the "
                           "aligned maps, the volume (volume.hspy and any --export), the FSC (fsc.hspy, fsc.png), "
                           "particle and shell-thickness pictures, results.json, report.md and report.html "
                           "(parameters, counts, alignment, FSC resolutions at 0.143 and 1/2-bit, particle sizes, "
                           "shell coverage, timings).")
    run.add_argument("files", nargs="+", help="vendor files, one per tilt, or a glob (.bcf, .emd, .pts, .emi); or one "
                                              ".hspy/.zspy holding an EDX tilt series or element maps")
    run.add_argument("--elements", nargs="+", default=None, help="chemical symbols, e.g. Se S Zn (default: from the files)")
    run.add_argument("--tilts", nargs="+", type=finite_float, default=None,
                     help="tilt angles in degrees, one per file in the order given (default: the files' stage tilts)")
    run.add_argument("--method", default=DEFAULT_METHOD, help="reconstruction algorithm, e.g. tv, sirt, two_step (see: edxtomo "
                                                    "algorithms; default: tv)")
    run.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="an algorithm parameter, repeatable: --param lam=0.5 --param iterations=100")
    run.add_argument("--no-align", action="store_true", help="skip the alignment (views already aligned)")
    run.add_argument("--align-method", default="auto",
                     help="auto, xcorr, com, axis or projection_matching (default: auto)")
    run.add_argument("--denoiser", default="none",
                     help="denoise the maps first: none, deep, gaussian, ... (see: edxtomo denoisers; default: none). "
                          "two_step denoises inside (its Q^D stage): for it this sets that stage's denoiser")
    run.add_argument("--denoiser-param", action="append", metavar="NAME=VALUE", help="a denoiser parameter, repeatable")
    run.add_argument("--no-fsc", action="store_true", help="skip the Fourier shell correlation (two extra reconstructions)")
    run.add_argument("--fsc-method", default=None,
                     help="algorithm for the two count-split halves (default: --method with its parameters and lam "
                          "halved, unless it trains networks (two_step, end_to_end): then tv)")
    run.add_argument("--fsc-param", action="append", metavar="NAME=VALUE", help="a parameter of the halves' algorithm")
    run.add_argument("--seed", type=non_negative_int, default=0,
                     help="seed of the reconstruction (reconstruct(seed=)) and of the FSC's count split (default: 0)")
    run.add_argument("--shell-elements", nargs="+", default=None,
                     help="elements whose shell thickness and coverage are mapped (default: all)")
    run.add_argument("--export", nargs="+", default=[], metavar="FORMAT",
                     help="extra volume files: mrc tif vti npy zspy (volume.hspy is always written)")
    _add_background_options(run)
    run.add_argument("--lazy", action="store_true", help="read the vendor files lazily (large series)")
    _add_common(run, overwrite_help="replace the results of an earlier run in --out (as a whole, once the new run "
                                    "has finished; other files in the folder are kept)")
    run.set_defaults(func=cmd_run)

    demo = _sub(sub, "demo", "the whole pipeline on a simulated quantum-dot tilt series, with its report",
                description="Simulate a core-shell quantum-dot spectrum-image tilt series and run the whole pipeline "
                            "on it (maps, reconstruction, FSC, particles and shells, pictures, report); "
                            "the report compares with the ground truth. Files of an earlier demo in --out are replaced.")
    demo.add_argument("--out", default="demo_output", help="output folder; its demo files are replaced (default: demo_output)")
    demo.add_argument("--kind", default=None,
                      help="quantum-dot kind of the simulated demo: InP/ZnSe/ZnS (default) or CdSe/ZnS")
    demo.add_argument("--real", action="store_true",
                      help="the real QD1 series shipped with the package (Han et al. 2021, Apache-2.0) instead of "
                           "a simulation; always aligned")
    demo.add_argument("--size", type=positive_int, default=None,
                      help="field of view in pixels (default: 64 simulated; --real: all 256, or a central crop "
                           "of at most 256)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    demo.add_argument("--method", default=DEFAULT_METHOD, help=f"reconstruction method (see: edxtomo algorithms; default: {DEFAULT_METHOD})")
    demo.add_argument("--param", action="append", metavar="NAME=VALUE", help="an algorithm parameter, repeatable")
    demo.add_argument("--align", action="store_true",
                      help="also align the views (the simulated views are aligned already: off by default)")
    demo.add_argument("--no-fsc", action="store_true", help="skip the Fourier shell correlation")
    demo.add_argument("--export", nargs="+", default=[], metavar="FORMAT", help="extra volume files: mrc tif vti npy zspy")
    demo.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    maps = _sub(sub, "maps", "element maps from vendor files (one per tilt) or a saved EDX tilt series",
                description="Element maps from vendor files, one file per tilt, written to element_maps.hspy/.png in "
                            "--out: the raw integer X-ray counts in a window around each element's line, with the "
                            "background under the line (exspy's two side windows) kept beside them in "
                            "metadata.Tomography.background, the b of y ~ Poisson(A x + b). --subtract-background "
                            "subtracts it instead; --no-background leaves it out.")
    maps.add_argument("files", nargs="+", help="files or a glob: .bcf, .emd, .pts, .emi, .hspy, .zspy")
    maps.add_argument("--elements", nargs="+", default=None, help="chemical symbols, e.g. Se S Zn (default: from the files)")
    maps.add_argument("--tilts", nargs="+", type=finite_float, default=None, help="tilt angles in degrees, one per file")
    _add_background_options(maps)
    maps.add_argument("--lazy", action="store_true", help="read lazily (large series)")
    _add_common(maps, overwrite_help="replace element_maps.hspy/.png already in --out")
    maps.set_defaults(func=cmd_maps)

    align = _sub(sub, "align", "align the views of saved element maps (writes element_maps_aligned.hspy/.png)")
    align.add_argument("maps", help="element maps (.hspy, .zspy) from 'edxtomo maps'")
    align.add_argument("--method", default="auto", help="auto, xcorr, com, axis or projection_matching (default: auto)")
    align.add_argument("--rotation", type=rotation_deg, default=None,
                       help="in-plane rotation of the tilt axis in degrees, within (-180, 180], when known "
                            "(default: estimated)")
    _add_common(align, overwrite_help="replace element_maps_aligned.hspy in --out")
    align.set_defaults(func=cmd_align)

    den = _sub(sub, "denoise", "denoise saved element maps (writes element_maps_denoised_METHOD.hspy/.png)")
    den.add_argument("maps", help="element maps (.hspy, .zspy)")
    den.add_argument("--method", default="gaussian", help="a denoiser (see: edxtomo denoisers; default: gaussian)")
    den.add_argument("--param", action="append", metavar="NAME=VALUE", help="a denoiser parameter, repeatable")
    _add_common(den, overwrite_help="replace a result of the same method in --out")
    den.set_defaults(func=cmd_denoise)

    rec = _sub(sub, "reconstruct", "reconstruct element maps (.hspy/.zspy) into a volume (writes volume_METHOD.hspy/.png)")
    rec.add_argument("maps", help="element maps saved by 'edxtomo maps' or get_element_maps() (.hspy, .zspy)")
    rec.add_argument("--method", default=DEFAULT_METHOD, help=f"reconstruction algorithm (see: edxtomo algorithms; default: {DEFAULT_METHOD})")
    rec.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="an algorithm parameter, repeatable: --param lam=0.5 --param denoiser=gaussian")
    rec.add_argument("--weights", default=None, help="weights file for end_to_end (from 'edxtomo train-end-to-end')")
    _add_common(rec, overwrite_help="replace a volume of the same method in --out")
    rec.set_defaults(func=cmd_reconstruct)

    ana = _sub(sub, "analyse", "particles, shell maps and coverage (and the FSC with --half2) of a saved volume",
               description="Analyse a saved element volume: segment the particles (centres, equivalent diameters), "
                           "map every shell's thickness over azimuth x elevation and its coverage, draw cuts, "
                           "projections and thickness maps, and write report.md/report.html. The FSC needs a second, "
                           "independent reconstruction of the same object (--half2); without it it is skipped "
                           "('edxtomo run' makes the halves itself).")
    ana.add_argument("volume", help="element volume (.hspy, .zspy) from 'edxtomo reconstruct' or 'edxtomo run'")
    ana.add_argument("--half2", default=None, help="a reconstruction of the other half of the counts: FSC of the two")
    ana.add_argument("--shell-elements", nargs="+", default=None, help="elements whose shells are mapped (default: all)")
    ana.add_argument("--max-particles", type=positive_int, default=10,
                     help="shells of at most this many particles (default: 10)")
    _add_common(ana, out_default="edxtomo_analysis", overwrite_help="replace an earlier report in --out")
    ana.set_defaults(func=cmd_analyse)

    exp = _sub(sub, "export", "write a saved volume as .mrc (IMOD, tomviz), .tif (ImageJ), .vti (ParaView), .npy, .zspy",
               description="Write a saved element volume for other programs; every format keeps the voxel size "
                           "(see hyperspy_edxtomo.io.exports).")
    exp.add_argument("volume", help="element volume (.hspy, .zspy)")
    exp.add_argument("--format", nargs="+", required=True, metavar="FORMAT",
                     help="one or more of: mrc (one file per element), tif, vti, npy (+ .json), zspy, hspy")
    exp.add_argument("--element", default=None, help="write only this element")
    exp.add_argument("--name", default=None, help="file stem (default: that of the volume)")
    exp.add_argument("--out", default=None, help="output folder (default: the volume's folder)")
    exp.add_argument("--overwrite", action="store_true", help="replace existing files")
    exp.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="(no effect: no progress bars)")
    exp.set_defaults(func=cmd_export)

    train = _sub(sub, "train-end-to-end",
                 "train the end_to_end network on your own element maps (runs two_step on each)")
    train.add_argument("maps", nargs="+", help="element maps (.hspy, .zspy), same elements and pixel size")
    train.add_argument("--out", required=True, help="weights file to write (e.g. t.pt)")
    train.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="a network setting: steps, channels, levels, batch_size, patch_size, learning_rate, seed")
    train.add_argument("--two-step-param", action="append", metavar="NAME=VALUE",
                       help="a parameter of the two_step reconstructions that make the targets")
    train.add_argument("--overwrite", action="store_true", help="replace an existing weights file")
    train.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    train.set_defaults(func=cmd_train_end_to_end)

    algorithms = _sub(sub, "algorithms",
                      "list the installed reconstruction algorithms (built-in and plugins) and their parameters")
    algorithms.set_defaults(func=cmd_algorithms)
    denoisers = _sub(sub, "denoisers", "list the installed denoisers (built-in and plugins) and their parameters")
    denoisers.set_defaults(func=cmd_denoisers)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error (or set EDXTOMO_DEBUG=1)")
    return parser


#: exceptions that mean bad input (the message names the file or option): exit code 2. The package's
#: own errors (bad data or arguments, damaged files, refused outputs) and the file system's; anything
#: else is a failure of the package, exit code 1
BAD_INPUT = (EdxtomoError, OSError)


def _where(args):
    """The output a command was writing, for the message after Ctrl-C."""
    out = getattr(args, "out", None)
    if out is None and getattr(args, "volume", None):
        out = Path(args.volume).parent  # export's default folder
    return out


def _written_since(out, started):
    """Whether ``out`` received an entry since ``started`` (results appear there only once complete)."""
    try:
        return any(p.stat().st_mtime >= started for p in Path(out).iterdir() if ".tmp-" not in p.name)
    except OSError:
        return False


def main(argv=None):
    """Run ``edxtomo``; returns the exit code (0, 1, 2 or 130; see the module's docstring)."""
    started = time.time()
    args = build_parser().parse_args(argv)
    record_command_line(sys.argv[1:] if argv is None else argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("EDXTOMO_DEBUG", "") not in ("", "0")
    from hyperspy.defaults_parser import preferences

    # --quiet: no bars for this command; the user's preference is put back afterwards (main may be
    # called from Python, and HyperSpy saves its preferences when asked)
    shown = preferences.General.show_progressbar
    if args.quiet:
        preferences.General.show_progressbar = False
    try:
        with warnings.catch_warnings():
            # a warning is one line naming the command, not a pointer into the edxtomo script
            warnings.showwarning = lambda message, category, *rest, **kw: print(
                f"edxtomo {args.command}: warning: {message}", file=sys.stderr)
            return args.func(args)
    except KeyboardInterrupt:
        out = _where(args)
        if out and _written_since(out, started):
            # Ctrl-C after the results were moved into place: they are complete, say so
            print(f"edxtomo {args.command}: interrupted after its results were written to {out} (complete)",
                  file=sys.stderr)
        else:
            print(f"edxtomo {args.command}: interrupted; " + (f"{out} left unchanged" if out else "nothing written"),
                  file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a user sees one line, never a traceback, unless --debug
        if debug:
            traceback.print_exc()
        if isinstance(err, BAD_INPUT):
            print(f"edxtomo {args.command}: error: {err}", file=sys.stderr)
            return 2
        print(f"edxtomo {args.command}: error: {type(err).__name__}: {err or 'no message'}"
              + ("" if debug else " (an unexpected failure: run again with --debug for the traceback)"),
              file=sys.stderr)
        return 1
    finally:
        preferences.General.show_progressbar = shown


if __name__ == "__main__":
    sys.exit(main())
