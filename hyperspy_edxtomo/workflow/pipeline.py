"""The whole job in one call: vendor files (or saved maps) to volume, numbers, pictures and a report.

:func:`run_pipeline` runs the steps of :mod:`hyperspy_edxtomo.workflow.steps`
that a user would otherwise call one by one:

1. **load** -- :func:`hyperspy_edxtomo.load_tilt_series` (vendor files, one
   per tilt) or ``hs.load`` of a saved ``.hspy``/``.zspy`` holding an
   :class:`~hyperspy_edxtomo.signals.EDXTiltSeries` or element maps;
2. **maps** -- :meth:`EDXTiltSeries.get_element_maps
   <hyperspy_edxtomo.signals.EDXTiltSeries.get_element_maps>`: raw counts with
   the X-ray background attached as a term of the forward model (``background=``);
3. **align** -- :meth:`ElementMapTiltSeries.align
   <hyperspy_edxtomo.signals.ElementMapTiltSeries.align>` (integer counts stay
   counts);
4. **denoise** (optional) -- ``maps.denoise(method)``; for ``two_step`` the
   denoiser is handed to the algorithm (its Q^D stage) instead, so the maps are
   never denoised twice;
5. **reconstruct** -- ``maps.reconstruct(method, **parameters)``;
6. **FSC** -- the counts are split binomially into two halves, both are
   reconstructed and correlated (:func:`hyperspy_edxtomo.analysis.fsc.fsc_from_tilt_series`);
7. **shells** -- :meth:`ElementVolume.find_particles
   <hyperspy_edxtomo.signals.ElementVolume.find_particles>` and
   :meth:`ElementVolume.shell_maps <hyperspy_edxtomo.signals.ElementVolume.shell_maps>`;
8. **pictures and exports** -- :mod:`hyperspy_edxtomo.workflow.figures`,
   :func:`hyperspy_edxtomo.io.exports.export_volume`;

and :func:`~hyperspy_edxtomo.workflow.report.write_report` writes
``report.md`` and ``report.html`` (figures linked, a table of parameters and
numbers). The options are a :class:`~hyperspy_edxtomo.workflow.config.PipelineConfig`,
checked before any work; the results a :class:`~hyperspy_edxtomo.workflow.results.Results`.
``edxtomo run`` and ``edxtomo demo`` are thin wrappers around
:func:`run_pipeline`.
"""

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hyperspy_edxtomo.analysis.fsc import fsc_halves_parameters
from hyperspy_edxtomo.base.progress import console_lines
from hyperspy_edxtomo.base.provenance import jsonable, run_record
from hyperspy_edxtomo.io.staging import (
    check_inputs_outside,
    input_files,
    saved_as,
    staged_output,
)
from hyperspy_edxtomo.workflow import steps
from hyperspy_edxtomo.workflow.config import (
    BACKGROUND_MODES,
    EXPORT_FORMATS,
    PipelineConfig,
    PipelineError,
)
from hyperspy_edxtomo.workflow.report import (
    write_report,
    write_results_json,
)
from hyperspy_edxtomo.workflow.results import Results, Stopwatch
from hyperspy_edxtomo.workflow.steps import analyse_volume, load_input

__all__ = ["run_pipeline", "write_report", "load_input", "analyse_volume", "PipelineError", "PipelineConfig",
           "Results", "RESULT_FILES", "EXPORT_FORMATS", "BACKGROUND_MODES", "fsc_halves_parameters",
           "earlier_results"]

#: files whose presence in the output folder means "results are already there"
RESULT_FILES = ("report.md", "report.html", "volume.hspy", "element_maps.hspy", "results.json")


def run_pipeline(source: Any, config: PipelineConfig | str | os.PathLike | None = None, **options: Any) -> Results:
    """Run the whole job: load, maps, align, denoise, reconstruct, FSC, shells, pictures, exports, report.

    Parameters
    ----------
    source : str, Path, list, EDXTiltSeries or ElementMapTiltSeries
        Vendor files (one per tilt; a glob works), one saved ``.hspy``/``.zspy``
        (EDX tilt series or element maps), or such a signal (see :func:`load_input`).
    config : None or PipelineConfig
        The options (see :class:`~hyperspy_edxtomo.workflow.config.PipelineConfig`,
        which describes each); None: the defaults. A path here is ``out``.
    **options
        Any option by name -- ``out``, ``elements``, ``tilts``, ``method``,
        ``parameters``, ``align``, ``align_method``, ``denoiser``,
        ``denoiser_parameters``, ``fsc``, ``fsc_method``, ``fsc_parameters``,
        ``seed``, ``shell_elements``, ``exports``, ``background``, ``lazy``,
        ``overwrite``, ``truth``, ``show_progressbar``, ``verbose``,
        ``report`` -- in place of that of ``config``.

    Returns
    -------
    Results
        ``"out"``, ``"maps"``, ``"volume"``, ``"fsc"`` (or None),
        ``"particles"``, ``"shells"``, ``"files"`` (name -> path),
        ``"numbers"`` (what the report tabulates), ``"timings"`` (seconds
        per step), ``"record"``, ``"config"`` and ``"steps"`` (each step's
        summary), as attributes or by key. A volume where no particle is
        found, or whose analysis fails, still gives a complete run:
        ``"particles"``/``"shells"`` are None and ``numbers["shells"]`` says
        why (also in the report); a particle that cannot be analysed while
        others can is listed in ``numbers["shells_skipped"]``. An FSC from
        halves too sparsely sampled to mean much carries
        ``numbers["fsc"]["warning"]``.

    Raises
    ------
    PipelineError
        Bad input: unknown element or method, bad parameters (``lam`` NaN,
        infinite or not positive), tilts that do not fit, a file that holds
        no tilt series; the message names it.
    hyperspy_edxtomo.io.staging.OutputError
        An input file lies inside ``out`` (a ValueError).
    FileExistsError
        ``out`` holds results and ``overwrite`` is False.
    FileNotFoundError, OSError
        Missing, empty or corrupt files (the message names the file).

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.workflow.pipeline import PipelineConfig, run_pipeline
    >>> series = datasets.quantum_dot_tilt_series("CdSe/ZnS", size=32, seed=0)
    >>> res = run_pipeline(series, out="qd_run", elements=["Se", "S", "Zn"], method="sirt",
    ...                    parameters={"iterations": 20}, verbose=False)  # doctest: +SKIP
    >>> sorted(res["numbers"]["fsc"]["resolution_0143"])  # doctest: +SKIP
    ['S', 'Se', 'Zn']
    >>> quick = PipelineConfig(method="fbp", align=False, fsc=False, verbose=False)
    >>> res = run_pipeline(series, quick, out="qd_fbp", elements=["Se", "Zn"])  # doctest: +SKIP
    >>> res.timings["reconstruct"] <= res.timings["total"]  # doctest: +SKIP
    True
    """
    t_start = time.perf_counter()
    config = PipelineConfig.from_options(config, **options)
    out = config.out
    _check_out(out, config.overwrite)
    inputs = input_files(source)
    check_inputs_outside(inputs, out)
    record = run_record("hyperspy_edxtomo.workflow.pipeline.run_pipeline", jsonable(config.arguments(source)), inputs)
    # everything is written into a temporary sibling of out and moved into place at the end: an error or
    # Ctrl-C leaves an earlier run's results as they were, never half replaced
    guard = () if config.overwrite else RESULT_FILES
    with console_lines(config.verbose), staged_output(out, "folder", stale=earlier_results(out), guard=guard) as work:
        clock = Stopwatch()  # the timing names are those the report has always shown
        loaded = clock.time("load and maps", steps.load, source, config)
        saved_maps = clock.time("pictures", steps.element_maps, loaded, config, work)
        aligned = clock.time("align", steps.align, loaded.maps, config, work)
        denoised = clock.time("denoise", steps.denoise, aligned.maps, config, work)
        reconstructed = clock.time("reconstruct", steps.reconstruct, denoised.maps, config, work)
        volume = reconstructed.volume
        fsc = clock.time("fsc", steps.fsc_halves, aligned, volume, config, work)
        analysed = clock.time("shells", steps.analyse, volume, work, shell_elements=config.shell_elements,
                              fsc=fsc.numbers["fsc"], truth=config.truth, verbose=config.verbose)
        pictures = clock.time("pictures", steps.figures, volume, analysed.particles, config, work)
        exported = clock.time("exports", steps.export, volume, config.exports, work)
        timings = {**clock.timings, "total": round(time.perf_counter() - t_start, 2)}
        done = {"load": loaded, "element maps": saved_maps, "align": aligned, "denoise": denoised,
                "reconstruct": reconstructed, "fsc": fsc, "analyse": analysed, "figures": pictures,
                "export": exported}
        results = _results(out, work, done, timings, record, config)
        write_results_json(results, work)
        if config.report:
            write_report(results, work)
    _point_at_out((results.maps, results.volume, results.fsc), work, out)
    with console_lines(config.verbose):
        steps.log(f"Wrote {len(results.files)} files to {out} in {timings['total']:.1f} s; see {out / 'report.html'}")
    return results


def _check_out(out, overwrite):
    """Before any work: ``out`` is a folder, and holds no results unless they are to be replaced."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: choose another --out.")
    present = [out / f for f in RESULT_FILES if (out / f).exists()]
    if present and not overwrite:
        raise FileExistsError(f"{present[0]} exists: {out} holds earlier results; choose another --out or pass "
                              "--overwrite.")


def _results(out, work, done, timings, record, config):
    """The steps' summaries as one Results: numbers and files in step order, the files where they will be."""
    def moved(files):
        # the paths the files will have once the folder is in place
        return {key: out / Path(path).relative_to(work) for key, path in files.items()}

    done = {name: replace(summary, files=moved(summary.files)) for name, summary in done.items()}
    numbers, files = {}, {}
    for summary in done.values():
        numbers.update(summary.numbers)
        files.update(summary.files)
    files["results"] = out / "results.json"
    if config.report:
        files["report"], files["report (HTML)"] = out / "report.md", out / "report.html"
    return Results(out=out, maps=done["align"].maps, volume=done["reconstruct"].volume, fsc=done["fsc"].fsc,
                   particles=done["analyse"].particles, shells=done["analyse"].shells, files=files,
                   numbers=numbers, timings=timings, record=record, config=config, steps=done)


def _point_at_out(signals, work, out):
    """The signals returned remember the files they were saved to, in out, not in the temporary folder."""
    for signal in signals:
        folder = signal.tmp_parameters.get_item("folder", None) if signal is not None else None
        if folder is not None and Path(folder) == Path(work):
            tp = signal.tmp_parameters
            saved_as(signal, out / f"{tp.filename}{tp.extension}")


def earlier_results(out: str | Path) -> set[str]:
    """Names in ``out`` written by an earlier run (its ``results.json``): replaced, never kept beside new ones."""
    names = set(RESULT_FILES)
    try:
        listed = json.loads((Path(out) / "results.json").read_text()).get("files", {})
        names.update(Path(v).name for v in listed.values())
    except (OSError, ValueError, AttributeError):
        pass
    return names
