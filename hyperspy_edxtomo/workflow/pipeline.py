"""The whole job in one call: vendor files (or saved maps) to volume, numbers, pictures and a report.

:func:`run_pipeline` chains the steps a user would otherwise call one by one:

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
   reconstructed and correlated (:func:`hyperspy_edxtomo.analysis.fourier_shell_correlation`);
7. **shells** -- :meth:`ElementVolume.find_particles
   <hyperspy_edxtomo.signals.ElementVolume.find_particles>` and
   :meth:`ElementVolume.shell_maps <hyperspy_edxtomo.signals.ElementVolume.shell_maps>`;
8. **pictures and exports** -- :mod:`hyperspy_edxtomo.workflow.figures`,
   :func:`hyperspy_edxtomo.io.exports.export_volume`;

and :func:`write_report` writes ``report.md`` and ``report.html`` (figures
linked, a table of parameters and numbers). ``edxtomo run`` and ``edxtomo
demo`` are thin wrappers around these two functions.
"""

import html
import json
import time
from pathlib import Path

import numpy as np

from hyperspy_edxtomo.base.conventions import check_elements
from hyperspy_edxtomo.base.counts import is_counts
from hyperspy_edxtomo.base.private_api import is_lazy, with_new_data
from hyperspy_edxtomo.base.provenance import jsonable, run_record
from hyperspy_edxtomo.io.staging import (
    check_inputs_outside,
    input_files,
    saved_as,
    staged_output,
)
from hyperspy_edxtomo.reconstruction.api import DEFAULT_METHOD

__all__ = ["run_pipeline", "write_report", "load_input", "PipelineError", "RESULT_FILES", "EXPORT_FORMATS",
           "fsc_halves_parameters"]

#: formats ``exports=`` accepts (the volume is always saved as ``volume.hspy``)
EXPORT_FORMATS = ("mrc", "tif", "vti", "npy", "zspy")

#: files whose presence in the output folder means "results are already there"
RESULT_FILES = ("report.md", "report.html", "volume.hspy", "element_maps.hspy", "results.json")

#: what ``background=`` accepts: raw counts with the background attached as a term of the forward
#: model (``"model"``, the default), counts minus the background (``"subtract"``), or no background
BACKGROUND_MODES = ("model", "subtract", "none")

#: algorithms whose parameters can be reused as they are for the FSC halves


class PipelineError(ValueError):
    """Bad input for the pipeline; the message names the file or option at fault."""


def _log(verbose, message):
    if verbose:
        print(message, flush=True)


def _describe_files(files):
    files = [str(f) for f in files]
    return files[0] if len(files) == 1 else f"{files[0]} ... {files[-1]} ({len(files)} files)"


def _is_native(path):
    p = Path(path)
    return p.suffix.lower() in (".hspy", ".zspy", ".h5", ".hdf5") or (p.is_dir() and (p / ".zgroup").exists())


def _background_mode(background):
    """``background=`` as one of :data:`BACKGROUND_MODES` (True: ``"model"``; False, None: ``"none"``)."""
    if background is True:
        return "model"
    if background is False or background is None:
        return "none"
    if isinstance(background, str) and background in BACKGROUND_MODES:
        return background
    raise PipelineError(f"background must be one of {BACKGROUND_MODES} (or True for 'model', False for 'none'), "
                        f"got {background!r}.")


def _apply_background_mode(maps, mode):
    """Maps given as maps: subtract (``"subtract"``) or drop (``"none"``) an attached background."""
    from hyperspy_edxtomo.base.provenance import append_history
    from hyperspy_edxtomo.signals.background import set_background

    if maps.metadata.get_item("Tomography.background", None) is None or mode == "model":
        return maps
    if mode == "subtract":
        return maps.subtract_background()
    maps = maps.deepcopy()
    set_background(maps, None)
    append_history(maps, "background", "drop", {})
    return maps


def load_input(source, elements=None, tilts=None, lazy=False, background="model", show_progressbar=None):
    """Element maps from vendor files, a saved series or maps, or a signal in memory.

    Parameters
    ----------
    source : str, Path, list of str/Path, EDXTiltSeries or ElementMapTiltSeries
        Vendor files (one per tilt, or a glob), a single ``.hspy``/``.zspy``
        holding an EDX tilt series or element maps, or such a signal.
    elements : None or list of str
        Chemical symbols; None: those of the file's metadata. For element maps,
        a subset of the maps' elements.
    tilts : None or list of float
        Tilt angles in degrees, one per file (vendor files). For a saved series
        they must match the stored ones.
    lazy : bool
        Read the vendor files lazily.
    background : {"model", "subtract", "none"} or bool
        The X-ray background under each line (exspy's side windows).
        ``"model"`` (default, or True): the maps are raw integer counts and the
        background is attached (``maps.background``) as the ``b`` of
        ``y ~ Poisson(A x + b)``: count splitting (``lam="auto"``, the FSC,
        ``two_step``) applies. ``"subtract"``: counts minus background (no
        longer counts). ``"none"`` (or False): raw counts, no background.
        Element maps given as maps keep theirs with ``"model"``; with
        ``"subtract"`` an attached background is subtracted, with ``"none"``
        it is dropped.
    show_progressbar : None or bool

    Returns
    -------
    (ElementMapTiltSeries, EDXTiltSeries or None, str)
        The maps, the spectra they came from (None when maps were given) and a
        description of the source for messages and the report.

    Raises
    ------
    PipelineError
        Unknown element, tilts that do not fit, a file that holds neither a
        tilt series nor element maps; the message names the file.
    FileNotFoundError, OSError
        Missing or unreadable files (from :func:`hyperspy_edxtomo.load_tilt_series`).

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.workflow.pipeline import load_input
    >>> series = datasets.quantum_dot_tilt_series(size=32, seed=0)
    >>> maps, spectra, what = load_input(series, elements=["Se", "S", "Zn"])
    >>> maps.elements, what
    (['Se', 'S', 'Zn'], 'EDXTiltSeries in memory')
    """
    from hyperspy_edxtomo.io.loading import load_native, load_tilt_series
    from hyperspy_edxtomo.signals import EDXTiltSeries, ElementMapTiltSeries
    from hyperspy_edxtomo.signals.background import set_background

    mode = _background_mode(background)
    if elements is not None:
        try:
            elements = check_elements(elements)
        except ValueError as err:
            raise PipelineError(f"--elements: {err}") from None
    signal, what = None, None
    if isinstance(source, (EDXTiltSeries, ElementMapTiltSeries)):
        signal, what = source, f"{type(source).__name__} in memory"
    else:
        files = [source] if isinstance(source, (str, Path)) else list(source)
        if not files:
            raise PipelineError("No input files given.")
        what = _describe_files(files)
        if len(files) == 1 and _is_native(files[0]) and "*" not in str(files[0]):
            path = Path(files[0])
            loaded = load_native(path, lazy=lazy)
            if isinstance(loaded, (EDXTiltSeries, ElementMapTiltSeries)):
                signal = loaded
            else:
                raise PipelineError(
                    f"{path} holds a {type(loaded).__name__}, neither an EDX tilt series nor element maps: give "
                    "one vendor file per tilt, or a series saved by hyperspy_edxtomo (.hspy/.zspy)."
                )
        else:
            try:
                signal = load_tilt_series([str(f) for f in files], tilts=tilts, lazy=lazy,
                                          show_progressbar=show_progressbar)
            except (FileNotFoundError, OSError):
                raise
            except ValueError as err:
                raise PipelineError(f"{what}: {err}") from None
            tilts = None  # used by the loader
    if tilts is not None:
        stored = signal.tilts
        if len(tilts) != stored.size:
            raise PipelineError(f"{what} holds {stored.size} tilts, but --tilts gives {len(tilts)} angles.")
        if not np.allclose(np.sort(np.asarray(tilts, float)), stored):
            raise PipelineError(f"--tilts {list(tilts)} differ from the tilts stored in {what} {stored.tolist()}: "
                                "leave --tilts out for a saved series.")
    if isinstance(signal, ElementMapTiltSeries):
        maps = signal
        if is_lazy(maps):
            maps.compute()
        if elements is not None:
            missing = [e for e in elements if e not in maps.elements]
            if missing:
                raise PipelineError(f"{what} holds element maps of {maps.elements}, not of {missing}.")
            if elements != maps.elements:
                idx = [maps.elements.index(e) for e in elements]
                b = maps.background
                sub = with_new_data(maps, np.ascontiguousarray(maps.data[idx]))
                sub.get_dimensions_from_data()
                sub.metadata.Sample.elements = list(elements)
                lines = list(maps.metadata.get_item("Sample.xray_lines", []))
                if len(lines) == len(maps.elements):
                    sub.metadata.Sample.xray_lines = [lines[i] for i in idx]
                set_background(sub, None if b is None else np.ascontiguousarray(b[idx]))
                maps = sub
        return _apply_background_mode(maps, mode), None, what
    try:
        maps = signal.get_element_maps(elements, background_windows=None if mode == "none" else "auto",
                                       subtract_background=mode == "subtract", show_progressbar=show_progressbar)
    except ValueError as err:
        raise PipelineError(f"{what}: {err}") from None
    if is_lazy(maps):
        maps.compute()
    return maps, signal, what


def _is_integer(maps):
    return is_counts(maps.to_numpy())


def fsc_halves_parameters(volume, method, fsc_method=None, fsc_parameters=None):
    """The method and per-element parameters that reconstruct the FSC halves.

    Parameters
    ----------
    volume : ElementVolume
        The full reconstruction (its history holds the parameters used).
    method : str
        The method that made ``volume``.
    fsc_method : None or str
        None: ``method`` itself when it is one of ``fbp``, ``sirt``, ``tv``,
        ``l1``, else ``tv``.
    fsc_parameters : None or dict
        Parameters for the halves; they replace what is reused.

    Returns
    -------
    (str, dict)
        The method and ``{element: parameters}``. When the halves use the same
        classical method, the parameters of the full reconstruction are reused
        per element, with a strength ``lam`` chosen from the data halved (each
        half holds half the counts, and the data term scales with the counts):
        no second strength search.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.workflow.pipeline import fsc_halves_parameters
    >>> maps = datasets.quantum_dot_element_maps(size=32, seed=0)
    >>> vol = maps.reconstruct("tv", lam=4.0, iterations=20)
    >>> fsc_halves_parameters(vol, "tv")[1]["Zn"]["lam"]
    2.0
    """
    from hyperspy_edxtomo.plugins.manager import get_algorithm

    if fsc_method is None:
        # an algorithm that trains networks is not run twice more: its halves get the default method
        fsc_method = DEFAULT_METHOD if get_algorithm(method).learned else method
    names = get_algorithm(fsc_method).parameter_names()
    per_element = {el: {} for el in volume.elements}
    if fsc_method == method:
        used = volume.history[-1].get("parameters", {}).get("parameters", {})
        for el in volume.elements:
            p = used.get(el, used) if isinstance(used, dict) else {}
            p = {k: v for k, v in p.items() if k in names}
            if isinstance(p.get("lam"), (int, float)):
                p["lam"] = float(p["lam"]) / 2
            per_element[el] = p
    else:
        quick = get_algorithm(fsc_method).quick_parameters
        for el in volume.elements:
            per_element[el] = dict(quick)
    for el in volume.elements:
        per_element[el].update(fsc_parameters or {})
    return fsc_method, per_element


def _reconstruct_per_element(maps, method, per_element, show_progressbar):
    from hyperspy_edxtomo.signals.volume import volume_from_array

    data = []
    for el in maps.elements:
        v = maps.element(el).reconstruct(method, show_progressbar=show_progressbar, **per_element[el])
        data.append(v.to_numpy()[0])
    scale, units = maps.pixel_size
    return volume_from_array(np.stack(data), maps.elements, voxel_size_nm=scale if units == "nm" else None,
                             history=v.history, title=f"{method} reconstruction of an FSC half")


def _describe_source(source):
    """A source as text for the record: paths as given, a signal by its class and title."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (list, tuple)):
        return [_describe_source(s) for s in source]
    title = getattr(getattr(source, "metadata", None), "General", None)
    title = getattr(title, "title", "")
    return f"{type(source).__name__} in memory" + (f": {title}" if title else "")


def run_pipeline(source, out="edxtomo_output", elements=None, tilts=None, method=DEFAULT_METHOD, parameters=None,
                 align=True, align_method="auto", denoiser="none", denoiser_parameters=None,
                 fsc=True, fsc_method=None, fsc_parameters=None, seed=0, shell_elements=None,
                 exports=(), background="model", lazy=False, overwrite=False, truth=None,
                 show_progressbar=None, verbose=True, report=True):
    """Run the whole job: load, maps, align, denoise, reconstruct, FSC, shells, pictures, exports, report.

    Parameters
    ----------
    source : str, Path, list, EDXTiltSeries or ElementMapTiltSeries
        Vendor files (one per tilt; a glob works), one saved ``.hspy``/``.zspy``
        (EDX tilt series or element maps), or such a signal (see :func:`load_input`).
    out : str or Path
        Output folder. Everything is written into a temporary sibling folder
        and moved into place only when the run has finished (see
        :mod:`hyperspy_edxtomo.io.staging`): an error or Ctrl-C on the way
        leaves an earlier run's results in ``out`` as they were. A finished
        run replaces the earlier run's results as a whole and keeps any other
        file in the folder. An input file inside ``out`` is refused.
    elements : None or list of str
        Chemical symbols, e.g. ``["Se", "S", "Zn"]``; None: from the metadata.
    tilts : None or list of float
        Tilt angles in degrees, one per vendor file; None: the files' stage tilts.
    method : str
        Reconstruction algorithm (``hyperspy_edxtomo.list_algorithms()``).
    parameters : None or dict
        The algorithm's parameters.
    align : bool
        Align the views (``maps.align(align_method)``).
    align_method : str
        ``"auto"``, ``"xcorr"``, ``"com"``, ``"axis"`` or ``"projection_matching"``.
    denoiser : str
        ``"none"`` or an installed denoiser (``"deep"``, ``"gaussian"``, ...).
        For ``two_step`` it becomes the algorithm's own ``denoiser`` parameter
        (its Q^D stage) rather than a separate step.
    denoiser_parameters : None or dict
    fsc : bool
        Measure the resolution by Fourier shell correlation of two halves.
    fsc_method : None or str
        Algorithm for the two halves; None: the same method when it is
        ``fbp``/``sirt``/``tv``/``l1`` (its parameters reused, ``lam``
        halved), otherwise ``tv`` (strength chosen per half, 100 iterations).
        See :func:`fsc_halves_parameters`.
    fsc_parameters : None or dict
        Parameters of the halves' reconstructions.
    seed : int
        Seed of the count split (FSC).
    shell_elements : None or list of str
        Elements whose shell maps and coverage are measured; None: all.
    exports : sequence of str
        Extra volume formats among ``mrc``, ``tif``, ``vti``, ``npy``, ``zspy``.
    background : {"model", "subtract", "none"} or bool
        The X-ray background under the lines (see :func:`load_input`):
        ``"model"`` (default, True) keeps raw counts and attaches the
        background as a term of the forward model; ``"subtract"`` subtracts
        it; ``"none"`` (False) ignores it.
    lazy : bool
        Read vendor files lazily.
    overwrite : bool
        Replace the results of an earlier run in ``out``; without it a folder
        holding results raises FileExistsError before any work is done.
    truth : None or ElementVolume
        A ground truth (simulations): correlations and its own shell coverage
        go into the report.
    show_progressbar : None or bool
        HyperSpy progress bars on the long steps; None: HyperSpy's preference.
    verbose : bool
        Print one line per step.
    report : bool
        Write ``report.md`` and ``report.html``.

    Returns
    -------
    dict
        ``"out"``, ``"maps"``, ``"volume"``, ``"fsc"`` (or None),
        ``"particles"``, ``"shells"``, ``"files"`` (name -> path),
        ``"numbers"`` (what the report tabulates) and ``"timings"`` (seconds
        per step). A volume where no particle is found, or whose analysis
        fails, still gives a complete run: ``"particles"``/``"shells"`` are
        None and ``numbers["shells"]`` says why (also in the report); a
        particle that cannot be analysed while others can is listed in
        ``numbers["shells_skipped"]``. An FSC from halves too sparsely
        sampled to mean much carries ``numbers["fsc"]["warning"]``.

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
    >>> from hyperspy_edxtomo.workflow.pipeline import run_pipeline
    >>> series = datasets.quantum_dot_tilt_series("CdSe/ZnS", size=32, seed=0)
    >>> res = run_pipeline(series, out="qd_run", elements=["Se", "S", "Zn"], method="sirt",
    ...                    parameters={"iterations": 20}, verbose=False)  # doctest: +SKIP
    >>> sorted(res["numbers"]["fsc"]["resolution_0143"])  # doctest: +SKIP
    ['S', 'Se', 'Zn']
    """
    from hyperspy_edxtomo.denoising.api import get_denoiser
    from hyperspy_edxtomo.plugins.manager import get_algorithm
    from hyperspy_edxtomo.workflow import figures as plotting

    t_start = time.perf_counter()
    out = Path(out)
    for name, value in (("parameters", parameters), ("denoiser_parameters", denoiser_parameters),
                        ("fsc_parameters", fsc_parameters)):
        if value is not None and not isinstance(value, dict):
            raise PipelineError(f"{name} must be a dict of NAME: value, got {type(value).__name__} {value!r}.")
    parameters = dict(parameters or {})
    denoiser_parameters = dict(denoiser_parameters or {})
    exports = list(dict.fromkeys(e.lower().lstrip(".") for e in (exports or ())))  # a format asked twice: once

    # -- check everything cheap before any long step ---------------------------------------
    background = _background_mode(background)
    bad = [e for e in exports if e not in EXPORT_FORMATS]
    if bad:
        raise PipelineError(f"Unknown export format(s) {bad}: choose among {', '.join(EXPORT_FORMATS)}.")
    try:
        cls = get_algorithm(method)
    except ValueError as err:
        raise PipelineError(f"--method: {err}") from None
    if denoiser != "none":
        try:
            get_denoiser(denoiser).create(**denoiser_parameters)
        except ValueError as err:
            raise PipelineError(f"--denoiser: {err}") from None
    internal_denoiser = cls.denoises
    if internal_denoiser and denoiser != "none":
        if "denoiser" in parameters:
            raise PipelineError(f"{method} denoises itself: give its denoiser once, either --denoiser "
                                f"{denoiser} or --param denoiser=..., not both.")
        parameters["denoiser"] = denoiser
        if denoiser_parameters:
            parameters["denoiser_parameters"] = denoiser_parameters
    try:
        cls.create(**parameters)
    except ValueError as err:
        raise PipelineError(f"--param: {err}") from None
    if fsc_method is not None:
        try:
            get_algorithm(fsc_method)
        except ValueError as err:
            raise PipelineError(f"--fsc-method: {err}") from None
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: choose another --out.")
    present = [out / f for f in RESULT_FILES if (out / f).exists()]
    if present and not overwrite:
        raise FileExistsError(f"{present[0]} exists: {out} holds earlier results; choose another --out or pass "
                              "--overwrite.")

    inputs = input_files(source)
    check_inputs_outside(inputs, out)
    arguments = dict(source=_describe_source(source), out=str(out), elements=elements, tilts=tilts, method=method,
                     parameters=parameters, align=align, align_method=align_method, denoiser=denoiser,
                     denoiser_parameters=denoiser_parameters, fsc=fsc, fsc_method=fsc_method,
                     fsc_parameters=fsc_parameters, seed=seed, shell_elements=shell_elements, exports=exports,
                     background=background, lazy=lazy, overwrite=overwrite,
                     truth=None if truth is None else _describe_source(truth))
    record = run_record("hyperspy_edxtomo.workflow.pipeline.run_pipeline", jsonable(arguments), inputs)
    # everything is written into a temporary sibling of out and moved into place at the end: an error or
    # Ctrl-C leaves an earlier run's results as they were, never half replaced
    with staged_output(out, "folder", stale=earlier_results(out), guard=() if overwrite else RESULT_FILES) as work:
        timings, files, numbers = {}, {}, {}
        clock = [time.perf_counter()]

        def lap(step):
            now = time.perf_counter()
            timings[step] = round(timings.get(step, 0.0) + now - clock[0], 2)
            clock[0] = now

        # -- 1-2. load and maps --------------------------------------------------------------------
        _log(verbose, "Loading the tilt series and extracting the element maps ...")
        maps, spectra, what = load_input(source, elements=elements, tilts=tilts, lazy=lazy, background=background,
                                         show_progressbar=show_progressbar)
        _log(verbose, f"  {what}: {maps.tilts.size} tilts, elements {maps.elements}")
        if maps.tilts.size < 2:
            raise PipelineError(f"{what} holds {maps.tilts.size} tilt: a tomogram needs several.")
        if shell_elements is not None:
            missing = [e for e in shell_elements if e not in maps.elements]
            if missing:
                raise PipelineError(f"--shell-elements {missing} are not among the elements {maps.elements} of {what}.")
        lap("load and maps")
        maps.save(work / "element_maps.hspy", overwrite=True)
        files["element maps"] = work / "element_maps.hspy"
        files["tilt montage"] = plotting.tilt_montage(maps, work / "element_maps.png")
        totals = maps.to_numpy().sum(axis=(2, 3))
        numbers["input"] = what
        numbers["elements"] = list(maps.elements)
        numbers["xray_lines"] = list(maps.metadata.get_item("Sample.xray_lines", []))
        numbers["tilts_deg"] = [float(t) for t in maps.tilts]
        numbers["pixel_size"] = list(maps.pixel_size)
        numbers["image_shape"] = list(maps.data.shape[2:])
        numbers["counts_total"] = {el: float(totals[e].sum()) for e, el in enumerate(maps.elements)}
        numbers["counts_per_tilt"] = {el: float(totals[e].mean()) for e, el in enumerate(maps.elements)}
        integer = _is_integer(maps)
        numbers["integer_counts"] = integer
        b = maps.background
        numbers["background"] = {"mode": background, "attached": b is not None}
        if b is not None:
            numbers["background"]["counts_per_tilt"] = {el: float(b[e].sum(axis=(1, 2)).mean())
                                                        for e, el in enumerate(maps.elements)}
        for el in maps.elements:
            _log(verbose, f"  {el:>2}: {numbers['counts_per_tilt'][el]:9.0f} counts per tilt")
        lap("pictures")

        # -- 3. align ------------------------------------------------------------------------------
        raw = maps
        if align:
            _log(verbose, f"Aligning {maps.tilts.size} views ({align_method}) ...")
            maps = maps.align(method=align_method, show_progressbar=show_progressbar)
            info = maps.metadata.Tomography.alignment
            sx, sy = np.asarray(info.shift_x_px, float), np.asarray(info.shift_y_px, float)
            numbers["alignment"] = {
                "method": str(info.get_item("method", align_method)),
                "max_shift_px": float(np.max(np.hypot(sx, sy))) if sx.size else 0.0,
                "rms_shift_px": float(np.sqrt(np.mean(sx ** 2 + sy ** 2))) if sx.size else 0.0,
                "axis_offset_px": float(info.get_item("axis_offset_px", 0.0)),
                "rotation_deg": float(info.get_item("rotation_deg", 0.0)),
            }
            maps.save(work / "element_maps_aligned.hspy", overwrite=True)
            files["aligned element maps"] = work / "element_maps_aligned.hspy"
            a = numbers["alignment"]
            _log(verbose, f"  shifts up to {a['max_shift_px']:.2f} px, tilt-axis offset {a['axis_offset_px']:.2f} px, "
                          f"rotation {a['rotation_deg']:.2f} deg")
        else:
            numbers["alignment"] = "none"
        lap("align")

        # -- 4. denoise ----------------------------------------------------------------------------
        recon_input = maps
        if denoiser != "none" and not internal_denoiser:
            _log(verbose, f"Denoising with {denoiser} ...")
            recon_input = maps.denoise(denoiser, show_progressbar=show_progressbar, **denoiser_parameters)
            recon_input.save(work / f"element_maps_denoised_{denoiser}.hspy", overwrite=True)
            files["denoised element maps"] = work / f"element_maps_denoised_{denoiser}.hspy"
            numbers["denoiser"] = {"method": denoiser, **denoiser_parameters}
        elif internal_denoiser:
            numbers["denoiser"] = f"inside {method}: {parameters.get('denoiser', cls.class_traits()['denoiser'].default)}"
        else:
            numbers["denoiser"] = "none"
        lap("denoise")

        # -- 5. reconstruct ------------------------------------------------------------------------
        _log(verbose, f"Reconstructing with {method} ...")
        volume = recon_input.reconstruct(method, show_progressbar=show_progressbar, **parameters)
        volume.save(work / "volume.hspy", overwrite=True)
        files["volume"] = work / "volume.hspy"
        used = volume.history[-1].get("parameters", {})
        numbers["method"] = method
        numbers["parameters"] = used.get("parameters", {})
        numbers["volume_shape"] = list(volume.data.shape[1:])
        lap("reconstruct")
        if truth is not None:
            numbers["pearson_with_truth"] = {}
            for el in volume.elements:
                if el in truth.elements:
                    r = np.corrcoef(volume.element(el).to_numpy().ravel(), truth.element(el).to_numpy().ravel())[0, 1]
                    numbers["pearson_with_truth"][el] = float(r)
                    _log(verbose, f"  {el:>2}: Pearson correlation with the ground truth {r:.3f}")

        # -- 6. FSC --------------------------------------------------------------------------------
        fsc_signal = None
        if fsc:
            from hyperspy_edxtomo.analysis.fsc import (
                fourier_shell_correlation,
                fsc_sampling_problem,
                split_tilt_series,
            )

            f_method, per_element = fsc_halves_parameters(volume, method, fsc_method, fsc_parameters)
            raw_integer = _is_integer(raw)
            split = "counts" if raw_integer else "tilts"
            if split == "tilts" and maps.tilts.size < 4:
                _log(verbose, "Skipping the FSC: the maps are not integer counts and there are under 4 tilts to split.")
                numbers["fsc"] = "skipped: no integer counts to split and under 4 tilts"
            else:
                _log(verbose, f"Fourier shell correlation: two {split} halves reconstructed with {f_method} ...")
                halves = split_tilt_series(maps, split, seed, raw=raw if (align and split == "counts") else None)
                try:
                    v1 = _reconstruct_per_element(halves[0], f_method, per_element, show_progressbar)
                    v2 = _reconstruct_per_element(halves[1], f_method, per_element, show_progressbar)
                    fsc_signal = fourier_shell_correlation(v1, v2)
                except ValueError as err:
                    # e.g. a view left empty in a half of an element with a few counts per view: the volume
                    # is worth keeping, the report says why there is no resolution
                    from hyperspy_edxtomo.base.errors import warn

                    warn(f"The Fourier shell correlation failed ({err}); the volume and the rest are written, "
                         "and the report says so.")
                    numbers["fsc"] = f"failed: {err}"
                    _log(verbose, f"  no FSC: {err}")
            if fsc_signal is not None:
                for key, value in (("split", split), ("seed", seed), ("method", f_method)):
                    fsc_signal.metadata.set_item(f"Tomography.FSC.{key}", value)
                info = fsc_signal.metadata.Tomography.FSC
                numbers["fsc"] = {
                    "split": split, "method": f_method, "seed": seed,
                    "parameters": jsonable(per_element),
                    "units": info.units,
                    "resolution_0143": {el: float(info.resolution_0143[el]) for el in volume.elements},
                    "resolution_half_bit": {el: float(info.resolution_half_bit[el]) for el in volume.elements},
                    "nyquist_limited_0143": {el: bool(info.nyquist_limited_0143[el]) for el in volume.elements},
                }
                problem = fsc_sampling_problem(halves[0].tilts, halves[1].tilts, split)
                if problem:  # warned by split_tilt_series; the report says it beside the numbers
                    numbers["fsc"]["warning"] = problem
                    _log(verbose, f"  warning: {problem}")
                fsc_signal.save(work / "fsc.hspy", overwrite=True)
                files["FSC"] = work / "fsc.hspy"
                files["FSC curves"] = plotting.fsc_plot(fsc_signal, work / "fsc.png")
                for el in volume.elements:
                    _log(verbose, f"  {el:>2}: {numbers['fsc']['resolution_0143'][el]:.2f} {info.units} (0.143), "
                                  f"{numbers['fsc']['resolution_half_bit'][el]:.2f} {info.units} (1/2-bit)")
        else:
            numbers["fsc"] = "skipped (--no-fsc)"
        lap("fsc")

        # -- 7. particles and shells ---------------------------------------------------------------
        _log(verbose, "Finding particles and mapping their shells ...")
        try:
            particles, shells = analyse_volume(volume, shell_elements, numbers, files, work, truth=truth)
        except Exception as err:  # noqa: BLE001 - the volume and the FSC are worth keeping whatever fails here
            from hyperspy_edxtomo.base.errors import warn

            particles, shells = None, None
            numbers.setdefault("particles", [])
            numbers["shells"] = f"the particle analysis failed ({type(err).__name__}: {err})"
            warn(f"The particle and shell analysis failed ({type(err).__name__}: {err}); the volume, FSC and "
                 "pictures are written, and the report says so.")
        for p in numbers.get("particles", []):
            for flag in p.get("flags", []):
                _log(verbose, f"  particle {p['label']}: check: {flag}")
        if isinstance(numbers.get("shells"), list) and numbers["shells"]:
            first = numbers["shells"][0]["particle"]
            for row in numbers["shells"]:
                if row["particle"] == first:
                    _log(verbose, f"  particle {row['particle']} {row['element']:>2}: "
                                  f"{100 * row['absent_fraction']:5.1f} % absent, mean thickness "
                                  f"{row['mean_thickness_where_present']:.2f} {volume.voxel_size[1]}")
        else:
            _log(verbose, f"  no particle analysis: {numbers.get('shells')}; the report says so")
        for label, reason in numbers.get("shells_skipped", {}).items():
            _log(verbose, f"  particle {label} not analysed: {reason}")
        lap("shells")

        # -- 8. pictures and exports ---------------------------------------------------------------
        # cuts through the largest particle's centre (the box centre may miss every particle)
        centre = tuple(particles[0].centre) if particles else None
        files["volume cuts"] = plotting.volume_cuts(volume, work / "volume_cuts.png", truth=truth, position=centre)
        files["maximum projections"] = plotting.max_projections(volume, work / "max_projections.png")
        if len(volume.elements) >= 2:
            files["RGB overlay"] = plotting.rgb_overlay(volume, work / "rgb_overlay.png", position=centre,
                                                        elements=_overlay_elements(volume.elements, shell_elements))
        lap("pictures")
        for fmt in exports:
            written = volume.export(work / f"volume.{fmt}")
            for p in written:
                files[f"export {p.name}"] = p
        lap("exports")

        timings["total"] = round(time.perf_counter() - t_start, 2)
        results = {"out": out, "maps": maps, "volume": volume, "fsc": fsc_signal, "particles": particles,
                   "shells": shells, "files": files, "numbers": numbers, "timings": timings, "record": record}
        files["results"] = work / "results.json"
        if report:
            files["report"], files["report (HTML)"] = work / "report.md", work / "report.html"
        # the paths the files will have once the folder is in place
        for key, path in files.items():
            files[key] = out / Path(path).relative_to(work)
        (work / "results.json").write_text(json.dumps(jsonable({"record": record, "numbers": numbers,
                                                                 "timings": timings,
                                                                 "files": {k: str(v) for k, v in files.items()}}),
                                                     indent=1))
        if report:
            write_report(results, work)
    # the signals returned remember the files they were saved to, in out, not in the temporary folder
    for signal in (maps, volume, fsc_signal):
        folder = signal.tmp_parameters.get_item("folder", None) if signal is not None else None
        if folder is not None and Path(folder) == Path(work):
            tp = signal.tmp_parameters
            saved_as(signal, out / f"{tp.filename}{tp.extension}")
    _log(verbose, f"Wrote {len(files)} files to {out} in {timings['total']:.1f} s; see {out / 'report.html'}")
    return results


def earlier_results(out):
    """Names in ``out`` written by an earlier run (its ``results.json``): replaced, never kept beside new ones."""
    names = set(RESULT_FILES)
    try:
        listed = json.loads((Path(out) / "results.json").read_text()).get("files", {})
        names.update(Path(v).name for v in listed.values())
    except (OSError, ValueError, AttributeError):
        pass
    return names


def _overlay_elements(elements, shell_elements):
    chosen = [e for e in (shell_elements or elements) if e in elements]
    return (chosen if len(chosen) >= 2 else list(elements))[-3:]


def analyse_volume(volume, shell_elements=None, numbers=None, files=None, out=None, truth=None, max_particles=10):
    """Particles and shell maps of a volume, with their pictures; numbers for the report.

    Parameters
    ----------
    volume : ElementVolume
    shell_elements : None or list of str
        Elements whose shells are mapped; None: all.
    numbers, files : None or dict
        Filled in place (``"particles"``, ``"shells"``; picture paths).
        Every particle row gets ``"flags"`` (sentences saying why its numbers
        need a look; empty when none applies, see
        :mod:`hyperspy_edxtomo.analysis.quality`) and ``"quality"`` (the
        measures behind them). An FSC already in ``numbers["fsc"]`` flags
        particles smaller than its resolution.
    out : None or Path
        Folder for the pictures (none written when None).
    truth : None or ElementVolume
        Its shell coverage is added as ``"shells_truth"``.
    max_particles : int
        Shells of at most this many (the largest) particles.

    Returns
    -------
    (ParticleList or None, ShellMaps or None)
        None for the particles when none is found (``numbers["shells"]`` and
        ``numbers["particles_note"]`` then say why), None for the shells when
        no particle can be analysed. Particles that cannot be analysed while
        others can are listed in ``numbers["shells_skipped"]`` (label:
        reason).

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.workflow.pipeline import analyse_volume
    >>> numbers = {}
    >>> particles, shells = analyse_volume(datasets.core_shell_phantom(size=32), ["S"], numbers)
    >>> len(numbers["particles"]), numbers["shells"][0]["element"]
    (1, 'S')
    """
    from hyperspy_edxtomo.analysis.quality import flag_particles
    from hyperspy_edxtomo.workflow import figures as plotting

    numbers = {} if numbers is None else numbers
    files = {} if files is None else files
    if shell_elements is not None:
        missing = [e for e in shell_elements if e not in volume.elements]
        if missing:
            raise PipelineError(f"--shell-elements {missing} are not in the volume's elements {volume.elements}.")
    try:
        particles = volume.find_particles()
    except ValueError as err:
        numbers["particles"] = []
        numbers["particles_note"] = f"no particle found: {err}"
        numbers["shells"] = f"no particle found ({err})"
        return None, None
    numbers["particles"] = [{k: jsonable(v) for k, v in row.items()} for row in particles.as_table()]
    numbers["length_units"] = particles.units
    # artefacts segment like particles: flag those whose numbers need a look before use
    f = numbers.get("fsc")
    resolution = f["resolution_0143"] if isinstance(f, dict) and f.get("units") == particles.units else None
    quality = flag_particles(particles, resolution)
    for row in numbers["particles"]:
        q = quality[row["label"]]
        row["flags"] = q["flags"]
        row["quality"] = {k: jsonable(v) for k, v in q.items() if k != "flags"}
    try:
        # each particle on its own: one that cannot be analysed (an irregular particle whose centroid
        # lies outside it) is listed in shells.skipped, with a warning, and the others are kept
        shells = volume.shell_maps(elements=shell_elements, particles=particles, max_particles=max_particles)
    except ValueError as err:
        numbers["shells"] = f"shell maps failed: {err}"
        return particles, None
    numbers["shells"] = shells.as_table()
    notes = []
    if shells.skipped:
        numbers["shells_skipped"] = {str(k): v for k, v in shells.skipped.items()}
        notes.append("not analysed: " + "; ".join(f"particle {k}: {v}" for k, v in shells.skipped.items()))
    moved = shells.parameters.get("origin_moved_inside") or {}
    if moved:
        notes.append("measured from inside: " + "; ".join(f"particle {k}: {v}" for k, v in moved.items()))
    if notes:
        numbers["shells_note"] = " | ".join(notes)
    if truth is not None:
        try:
            t_shells = truth.shell_maps(elements=shell_elements, max_particles=1)
            numbers["shells_truth"] = t_shells.as_table()
        except ValueError:
            pass
    if out is not None:
        files["shell thickness maps"] = plotting.shell_thickness_maps(shells, Path(out) / "shell_thickness.png")
        files["shell thickness histogram"] = plotting.shell_thickness_histogram(
            shells, Path(out) / "shell_thickness_histogram.png")
    return particles, shells


# -- report -------------------------------------------------------------------------------------------
def _fmt(value, digits=3):
    if isinstance(value, float):
        return f"{value:.{digits}g}" if np.isfinite(value) else "n/a"
    return str(value)


def _fmt_counts(value):
    return f"{value:.0f}" if np.isfinite(value) else "n/a"


def _tables(results):
    """The report as a list of (heading, header row, rows)."""
    n = results["numbers"]
    t = results["timings"]
    units = n.get("pixel_size", [1, "px"])[1]
    out = []
    rows = [("input", n.get("input", "")), ("elements", ", ".join(n.get("elements", []))),
            ("X-ray lines", ", ".join(n.get("xray_lines", [])) or "n/a"),
            ("tilts (deg)", f"{len(n.get('tilts_deg', []))} views: " + ", ".join(_fmt(x, 4) for x in n.get("tilts_deg", []))),
            ("pixel size", f"{_fmt(n['pixel_size'][0], 4)} {units}" if "pixel_size" in n else "n/a"),
            ("image size (y, x)", " x ".join(map(str, n.get("image_shape", [])))),
            ("integer counts", str(n.get("integer_counts", "")))]
    a = n.get("alignment")
    if isinstance(a, dict):
        rows.append(("alignment", f"{a['method']}: shifts up to {a['max_shift_px']:.2f} px (rms {a['rms_shift_px']:.2f}), "
                                  f"tilt-axis offset {a['axis_offset_px']:.2f} px, rotation {a['rotation_deg']:.2f} deg"))
    else:
        rows.append(("alignment", str(a)))
    rows += _flat_rows("denoising", n.get("denoiser", "none"))
    rows.append(("method", n.get("method", "")))
    params = n.get("parameters", {})
    if params and all(isinstance(v, dict) for v in params.values()):
        for el, p in params.items():
            rows += _flat_rows(f"parameters ({el})", p)
    else:
        rows += _flat_rows("parameters", params)
    rows.append(("volume (z, y, x)", " x ".join(map(str, n.get("volume_shape", [])))))
    out.append(("Parameters", ["", "value"], rows))

    els = n.get("elements", [])
    header = ["element", "counts per tilt", "counts in all"]
    f = n.get("fsc")
    if isinstance(f, dict):
        header += [f"FSC 0.143 ({f['units']})", f"FSC 1/2-bit ({f['units']})"]
    if "pearson_with_truth" in n:
        header.append("correlation with truth")
    rows = []
    for el in els:
        row = [el, _fmt_counts(n["counts_per_tilt"][el]), _fmt_counts(n["counts_total"][el])]
        if isinstance(f, dict):
            lim = "<= " if f["nyquist_limited_0143"][el] else ""
            row += [lim + _fmt(f["resolution_0143"][el]), _fmt(f["resolution_half_bit"][el])]
        if "pearson_with_truth" in n:
            row.append(_fmt(n["pearson_with_truth"].get(el, float("nan"))))
        rows.append(row)
    out.append(("Per element", header, rows))
    if isinstance(f, dict):
        hp = f.get("parameters") or {}
        hp = {el: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()} for el, p in hp.items()}
        out.append(("FSC", ["", ""], [("halves", f"{f['split']} split (seed {f['seed']}), each reconstructed with "
                                                  f"{f['method']}"),
                                      *_flat_rows("parameters of the halves", hp),
                                      ("note", "resolution of half the data; the full reconstruction resolves "
                                               "somewhat finer")]
                    + ([("warning", f["warning"])] if f.get("warning") else [])))
    elif f is not None:
        out.append(("FSC", ["", ""], [("FSC", str(f))]))

    lu = n.get("length_units", units)
    parts = n.get("particles", [])
    if parts:
        rows = [[p["label"], _fmt(p["x"]), _fmt(p["y"]), _fmt(p["z"]), _fmt(p["equivalent_diameter"]), p["n_voxels"],
                 "; ".join(p.get("flags", [])) or "no flag"] for p in parts]
        flagged = [p["label"] for p in parts if p.get("flags")]
        if flagged:
            rows.append(["note", f"do not trust the numbers of particle(s) {', '.join(map(str, flagged))} "
                                  "(size, shells) without a look at the volume cuts: see their flags", "", "", "", "",
                         ""])
        out.append(("Particles", ["#", f"x ({lu})", f"y ({lu})", f"z ({lu})", f"equivalent diameter ({lu})", "voxels",
                                  "quality"], rows))
    elif n.get("particles_note"):
        out.append(("Particles", ["", ""], [("particles", n["particles_note"])]))
    shells = n.get("shells")
    if isinstance(shells, list) and shells:
        truth = {(r["element"]): r for r in n.get("shells_truth", [])}
        header = ["particle", "element", "coverage", "absent", f"mean thickness ({lu})"]
        if truth:
            header.append("absent in the truth")
        rows = []
        flagged = {p["label"] for p in parts if p.get("flags")}
        for r in shells:
            row = [f"{r['particle']} (flagged)" if r["particle"] in flagged else r["particle"], r["element"], f"{100 * r['coverage']:.1f} %", f"{100 * r['absent_fraction']:.1f} %",
                   _fmt(r["mean_thickness_where_present"])]
            if truth:
                tr = truth.get(r["element"])
                row.append(f"{100 * tr['absent_fraction']:.1f} %" if tr and r["particle"] == parts[0]["label"] else "")
            rows.append(row)
        out.append(("Shell coverage", header, rows))
        if n.get("shells_note"):
            rows.append(["note", n["shells_note"]] + [""] * (len(header) - 2))
    elif shells:
        out.append(("Shell coverage", ["", ""], [("shells", str(shells))]))
    out.append(("Timings", ["step", "seconds"], [(k, f"{v:.1f}") for k, v in t.items()]))
    rec = results.get("record")
    if rec:
        rows = [("date", rec["date"]), ("command line", rec.get("command_line") or "none (called from Python)"),
                ("call", rec["call"])]
        rows += _flat_rows("argument", rec.get("arguments", {}))
        for i, f in enumerate(rec.get("inputs", [])):
            rows.append((f"input file {i + 1}", f"{f['path']} ({f['bytes']} bytes), SHA-256 {f['sha256']}"))
        if not rec.get("inputs"):
            rows.append(("input files", "none (a signal in memory)"))
        rows += [(f"version of {k}", v) for k, v in rec.get("versions", {}).items()]
        out.append(("Record", ["", ""], rows))
    return out


def _flat_rows(name, value):
    """Rows ``(name.key..., value)`` of a nested parameter record, in full (never cut)."""
    if isinstance(value, dict):
        if not value:
            return [(name, "(none)")]
        return [row for k, v in value.items() for row in _flat_rows(f"{name}: {k}" if ":" not in name
                                                                    else f"{name}.{k}", v)]
    if isinstance(value, (list, tuple, np.ndarray)) and any(isinstance(v, (dict, list, tuple, np.ndarray))
                                                            for v in value):
        return [row for i, v in enumerate(value) for row in _flat_rows(f"{name}[{i}]", v)]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [(name, "[" + ", ".join(_fmt(float(v), 6) if isinstance(v, (float, np.floating)) else str(v)
                                        for v in value) + "]")]
    return [(name, _fmt(float(value), 6) if isinstance(value, (float, np.floating)) else str(value))]


def write_report(results, out=None, title="hyperspy_edxtomo report"):
    """Write ``report.md`` and ``report.html``: tables of parameters and numbers, and the figures.

    Parameters
    ----------
    results : dict
        As returned by :func:`run_pipeline` (``"numbers"``, ``"timings"``,
        ``"files"``).
    out : None, str or Path
        Folder; None: ``results["out"]``.
    title : str

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The Markdown and the HTML report. Figures are linked by relative path
        (they sit beside the reports).

    Examples
    --------
    >>> import tempfile
    >>> from hyperspy_edxtomo.workflow.pipeline import write_report
    >>> res = {"numbers": {"elements": ["Zn"], "counts_per_tilt": {"Zn": 1e3}, "counts_total": {"Zn": 1.3e4}},
    ...        "timings": {"total": 1.0}, "files": {}}
    >>> md, page = write_report(res, tempfile.mkdtemp())
    >>> "| Zn | 1000 | 13000 |" in md.read_text()
    True
    """
    out = Path(out if out is not None else results["out"])
    out.mkdir(parents=True, exist_ok=True)
    tables = _tables(results)
    order = ("volume cuts", "RGB overlay", "maximum projections", "FSC curves", "shell thickness maps")
    pictures = [(name, Path(p)) for name, p in results.get("files", {}).items() if str(p).endswith(".png")]
    pictures.sort(key=lambda item: order.index(item[0]) if item[0] in order else len(order))
    others = [(name, Path(p)) for name, p in results.get("files", {}).items() if not str(p).endswith(".png")]

    md = [f"# {title}", ""]
    for heading, header, rows in tables:
        md += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        md.append("")
    if pictures:
        md += ["## Figures", ""]
        md += [f"![{name}]({p.name})" for name, p in pictures]
        md.append("")
    if others:
        md += ["## Files", ""] + [f"- {name}: `{p.name}`" for name, p in others] + [""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    e = html.escape
    page = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
            "table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
            "text-align:left;font-size:90%}img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}</style>",
            "</head><body>", f"<h1>{e(title)}</h1>"]
    for heading, header, rows in tables:
        page.append(f"<h2>{e(heading)}</h2><table>")
        page.append("<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>")
        for row in rows:
            page.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
        page.append("</table>")
    if pictures:
        page.append("<h2>Figures</h2>")
        for name, p in pictures:
            page.append(f"<figure><img src='{e(p.name)}' alt='{e(name)}'><figcaption>{e(name)}</figcaption></figure>")
    if others:
        page.append("<h2>Files</h2><ul>" + "".join(f"<li>{e(name)}: <a href='{e(p.name)}'>{e(p.name)}</a></li>"
                                                   for name, p in others) + "</ul>")
    page.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(page), encoding="utf-8")
    return md_path, html_path
