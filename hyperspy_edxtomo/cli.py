"""The ``edxtomo`` command line.

``edxtomo demo`` runs the main job on simulated data; ``edxtomo maps`` turns
vendor files (one per tilt) into element maps; ``edxtomo algorithms`` lists the
installed reconstruction algorithms (built-in and plugins) and their parameters.
"""

import argparse
import sys
import time
from pathlib import Path


def _save_maps(maps, out, stem, overwrite=True):
    from .plotting import tilt_montage

    out.mkdir(parents=True, exist_ok=True)
    hspy = out / f"{stem}.hspy"
    if not overwrite:
        existing = [p for p in (hspy, out / f"{stem}.png") if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists: choose another --out or pass --overwrite")
    maps.save(hspy, overwrite=True)
    png = tilt_montage(maps, out / f"{stem}.png")
    return hspy, png


def cmd_demo(args):
    import numpy as np

    from . import datasets
    from .plotting import volume_cuts

    t0 = time.perf_counter()
    out = Path(args.out)
    print(f"Simulating a {args.kind} quantum-dot tilt series ({args.size} px, seed {args.seed}) ...")
    series = datasets.quantum_dot_tilt_series(kind=args.kind, size=args.size, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    series.save(out / "tilt_series.hspy", overwrite=True)
    elements = list(series.metadata.Sample.elements)
    print(f"Extracting element maps of {elements} from {len(series.tilts)} tilts ...")
    maps = series.get_element_maps(elements, show_progressbar=not args.quiet)
    hspy, png = _save_maps(maps, out, "element_maps")
    totals = maps.to_numpy().sum(axis=(2, 3)).mean(axis=1)
    for el, n in zip(maps.elements, totals):
        print(f"  {el:>2}: {n:7.0f} counts per tilt")
    print(f"Reconstructing with {args.method} ...")
    volume = maps.reconstruct(args.method, show_progressbar=not args.quiet)
    volume.save(out / "volume.hspy", overwrite=True)
    truth = series.metadata.Simulation.ground_truth
    cuts = volume_cuts(volume, out / "volume_cuts.png", truth=truth)
    for el in volume.elements:
        r = np.corrcoef(volume.element(el).to_numpy().ravel(), truth.element(el).to_numpy().ravel())[0, 1]
        print(f"  {el:>2}: Pearson correlation with the ground truth {r:.3f}")
    written = ", ".join(str(p) for p in (out / "tilt_series.hspy", hspy, png, out / "volume.hspy", cuts))
    print(f"Wrote {written} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_maps(args):
    from .loading import load_tilt_series

    out = Path(args.out)
    series = load_tilt_series(args.files, tilts=args.tilts, lazy=args.lazy, show_progressbar=not args.quiet)
    maps = series.get_element_maps(args.elements, show_progressbar=not args.quiet)
    if args.lazy:
        maps.compute()
    hspy, png = _save_maps(maps, out, "element_maps", overwrite=args.overwrite)
    print(f"Wrote {hspy} and {png}")
    return 0


def cmd_algorithms(args):
    from .reconstruction import format_algorithms, list_algorithms

    print(format_algorithms(list_algorithms()))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="edxtomo",
        description="STEM-EDX tomography of nanocrystals (HyperSpy extension hyperspy_edxtomo).",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulate a quantum-dot tilt series, extract element maps, reconstruct them, write results and PNGs",
    )
    demo.add_argument("--out", default="demo_output", help="output folder; its demo files are replaced (default: demo_output)")
    demo.add_argument("--kind", default="InP/ZnSe/ZnS", help="quantum-dot kind: InP/ZnSe/ZnS or CdSe/ZnS")
    demo.add_argument("--size", type=int, default=64, help="field of view in pixels (default: 64)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--method", default="tv", help="reconstruction method (see: edxtomo algorithms; default: tv)")
    demo.set_defaults(func=cmd_demo)

    maps = sub.add_parser("maps", help="element maps from vendor files, one file per tilt")
    maps.add_argument("files", nargs="+", help="files or a glob: .bcf, .emd, .pts, .emi, .hspy, .zspy")
    maps.add_argument("--elements", nargs="+", default=None, help="chemical symbols, e.g. Se S Zn (default: from the files)")
    maps.add_argument("--tilts", nargs="+", type=float, default=None, help="tilt angles in degrees, one per file")
    maps.add_argument("--lazy", action="store_true", help="read lazily (large series)")
    maps.add_argument("--out", default="edxtomo_output", help="output folder")
    maps.add_argument("--overwrite", action="store_true", help="replace element_maps.hspy/.png already in --out")
    maps.set_defaults(func=cmd_maps)

    algorithms = sub.add_parser(
        "algorithms", help="list the installed reconstruction algorithms (built-in and plugins) and their parameters"
    )
    algorithms.set_defaults(func=cmd_algorithms)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quiet:
        from hyperspy.defaults_parser import preferences

        preferences.General.show_progressbar = False
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError) as err:
        print(f"edxtomo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
