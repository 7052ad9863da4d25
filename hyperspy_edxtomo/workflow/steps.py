"""The steps of :func:`~hyperspy_edxtomo.workflow.pipeline.run_pipeline`, one function each.

Each step takes what the steps before it made and the run's
:class:`~hyperspy_edxtomo.workflow.config.PipelineConfig`, writes its files
into the run's (temporary) folder, logs its lines (shown when ``verbose``), and
returns a small summary: what the next steps need (the maps, the volume, the
FSC), its part of the report's numbers (``numbers``) and the files it wrote
(``files``), in the order the report lists them.

1. :func:`load` -- :func:`load_input`: vendor files (one per tilt), a saved
   ``.hspy``/``.zspy`` series or maps, or a signal, to element maps (raw
   counts, the X-ray background attached as a term of the forward model);
2. :func:`element_maps` -- the maps saved and drawn, their counts;
3. :func:`align` -- ``maps.align`` (integer counts stay counts);
4. :func:`denoise` -- ``maps.denoise(method)``; for an algorithm that
   denoises itself (``two_step``) the denoiser is its parameter instead, so
   the maps are never denoised twice;
5. :func:`reconstruct` -- ``maps.reconstruct(method, **parameters)``;
6. :func:`fsc_halves` -- the counts split into two halves, both reconstructed
   and correlated (:func:`hyperspy_edxtomo.analysis.fsc.fsc_from_tilt_series`);
7. :func:`analyse` -- particles and shell maps (:func:`analyse_volume`);
8. :func:`figures` and :func:`export` -- :mod:`hyperspy_edxtomo.workflow.figures`,
   :func:`hyperspy_edxtomo.io.exports.export_volume`.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hyperspy.signals import Signal1D

from hyperspy_edxtomo.alignment import Alignment
from hyperspy_edxtomo.analysis import ParticleList, ShellMaps
from hyperspy_edxtomo.analysis.fsc import (
    fsc_from_tilt_series,
    fsc_halves_parameters,
    fsc_sampling_problem,
    halves_tilts,
)
from hyperspy_edxtomo.analysis.metrics import pearson
from hyperspy_edxtomo.analysis.quality import flag_particles
from hyperspy_edxtomo.base.conventions import check_elements
from hyperspy_edxtomo.base.counts import is_counts
from hyperspy_edxtomo.base.errors import warn
from hyperspy_edxtomo.base.private_api import is_lazy, with_new_data
from hyperspy_edxtomo.base.progress import console_lines
from hyperspy_edxtomo.base.provenance import append_history, jsonable
from hyperspy_edxtomo.io.loading import load_native, load_tilt_series
from hyperspy_edxtomo.plugins.manager import get_algorithm
from hyperspy_edxtomo.signals import EDXTiltSeries, ElementMapTiltSeries, ElementVolume
from hyperspy_edxtomo.signals.background import set_background
from hyperspy_edxtomo.workflow import figures as plotting
from hyperspy_edxtomo.workflow.config import (
    BackgroundMode,
    PipelineConfig,
    PipelineError,
    background_mode,
)

__all__ = ["log", "load_input", "analyse_volume", "fsc_numbers", "load", "element_maps", "align", "denoise",
           "reconstruct", "fsc_halves", "record_fsc", "analyse", "figures", "export", "StepSummary", "LoadSummary",
           "MapsSummary", "AlignSummary", "DenoiseSummary", "ReconstructSummary", "FSCSummary", "AnalysisSummary",
           "FiguresSummary", "ExportSummary"]

_logger = logging.getLogger(__name__)


def log(message: str) -> None:
    """One line of a run, an INFO record of this module's logger: shown on standard output while
    :func:`~hyperspy_edxtomo.base.progress.console_lines` is on (``verbose``), kept by the user's own
    ``logging`` set-up otherwise."""
    _logger.info(message)


# -- what the steps return ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StepSummary:
    """What every step returns: its part of the report's numbers and the files it wrote (name -> path)."""

    numbers: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LoadSummary(StepSummary):
    """:func:`load`: the element maps, the spectra they came from (None for maps) and the source in words."""

    maps: ElementMapTiltSeries
    spectra: EDXTiltSeries | None = None
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class MapsSummary(StepSummary):
    """:func:`element_maps`: counts per tilt per element and whether the maps are integer counts."""

    counts_per_tilt: dict[str, float]
    integer_counts: bool


@dataclass(frozen=True, kw_only=True)
class AlignSummary(StepSummary):
    """:func:`align`: the maps aligned (or the input), the unaligned maps, the method (None: not aligned)."""

    maps: ElementMapTiltSeries
    raw: ElementMapTiltSeries
    method: str | None = None


@dataclass(frozen=True, kw_only=True)
class DenoiseSummary(StepSummary):
    """:func:`denoise`: the maps to reconstruct, the denoiser (``"none"``), whether the algorithm applies it itself."""

    maps: ElementMapTiltSeries
    method: str = "none"
    inside: bool = False


@dataclass(frozen=True, kw_only=True)
class ReconstructSummary(StepSummary):
    """:func:`reconstruct`: the volume, its method and the parameters it was made with."""

    volume: ElementVolume
    method: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FSCSummary(StepSummary):
    """:func:`fsc_halves`: the FSC (None: skipped or failed; ``numbers["fsc"]`` says why), how its halves were made."""

    fsc: Signal1D | None = None
    split: str | None = None
    method: str | None = None
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    warning: str | None = None


@dataclass(frozen=True, kw_only=True)
class AnalysisSummary(StepSummary):
    """:func:`analyse`: the particles and their shell maps (None when there are none)."""

    particles: ParticleList | None = None
    shells: ShellMaps | None = None


@dataclass(frozen=True, kw_only=True)
class FiguresSummary(StepSummary):
    """:func:`figures`: the pictures of the volume (in ``files``)."""


@dataclass(frozen=True, kw_only=True)
class ExportSummary(StepSummary):
    """:func:`export`: the formats written (the files in ``files``)."""

    formats: tuple[str, ...] = ()


# -- 1. load --------------------------------------------------------------------------------------------
def _describe_files(files):
    files = [str(f) for f in files]
    return files[0] if len(files) == 1 else f"{files[0]} ... {files[-1]} ({len(files)} files)"


def _is_native(path):
    p = Path(path)
    return p.suffix.lower() in (".hspy", ".zspy", ".h5", ".hdf5") or (p.is_dir() and (p / ".zgroup").exists())


def _apply_background_mode(maps, mode):
    """Maps given as maps: subtract (``"subtract"``) or drop (``"none"``) an attached background."""

    if maps.metadata.get_item("Tomography.background", None) is None or mode == "model":
        return maps
    if mode == "subtract":
        return maps.subtract_background()
    maps = maps.deepcopy()
    set_background(maps, None)
    append_history(maps, "background", "drop", {})
    return maps


def load_input(source: str | Path | Sequence[str | Path] | EDXTiltSeries | ElementMapTiltSeries,
               elements: Sequence[str] | None = None, tilts: Sequence[float] | None = None, lazy: bool = False,
               background: BackgroundMode | bool = "model",
               show_progressbar: bool | None = None) -> tuple[ElementMapTiltSeries, EDXTiltSeries | None, str]:
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
    >>> from hyperspy_edxtomo.workflow.steps import load_input
    >>> series = datasets.quantum_dot_tilt_series(size=32, seed=0)
    >>> maps, spectra, what = load_input(series, elements=["Se", "S", "Zn"])
    >>> maps.elements, what
    (['Se', 'S', 'Zn'], 'EDXTiltSeries in memory')
    """
    mode = background_mode(background)
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
            signal = load_native(path, lazy=lazy, expected=(EDXTiltSeries, ElementMapTiltSeries),
                                 hint="give one vendor file per tilt, or a series saved by hyperspy_edxtomo "
                                      "(.hspy/.zspy).")
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


def load(source: str | Path | Sequence[str | Path] | EDXTiltSeries | ElementMapTiltSeries,
         config: PipelineConfig) -> LoadSummary:
    """Step 1: element maps from ``source`` (:func:`load_input`), with the checks that need them.

    Parameters
    ----------
    source : str, Path, list, EDXTiltSeries or ElementMapTiltSeries
        See :func:`load_input`.
    config : PipelineConfig
        ``elements``, ``tilts``, ``lazy``, ``background``, ``shell_elements``.

    Returns
    -------
    LoadSummary

    Raises
    ------
    PipelineError
        As :func:`load_input`; also a single tilt, and ``shell_elements`` not
        among the maps' elements.
    """
    log("Loading the tilt series and extracting the element maps ...")
    maps, spectra, what = load_input(source, elements=config.elements, tilts=config.tilts, lazy=config.lazy,
                                     background=config.background, show_progressbar=config.show_progressbar)
    log(f"  {what}: {maps.tilts.size} tilts, elements {maps.elements}")
    if maps.tilts.size < 2:
        raise PipelineError(f"{what} holds {maps.tilts.size} tilt: a tomogram needs several.")
    if config.shell_elements is not None:
        missing = [e for e in config.shell_elements if e not in maps.elements]
        if missing:
            raise PipelineError(f"--shell-elements {missing} are not among the elements {maps.elements} of {what}.")
    return LoadSummary(maps=maps, spectra=spectra, source=what)


def element_maps(loaded: LoadSummary, config: PipelineConfig, work: Path) -> MapsSummary:
    """Step 2: the element maps saved (``element_maps.hspy``), drawn (a montage) and counted.

    Returns
    -------
    MapsSummary
        ``numbers``: the input, elements, X-ray lines, tilts, pixel size,
        image shape, counts (in all and per tilt), whether they are integer
        counts, and the background.
    """
    maps = loaded.maps
    maps.save(work / "element_maps.hspy", overwrite=True)
    files = {"element maps": work / "element_maps.hspy",
             "tilt montage": plotting.tilt_montage(maps, work / "element_maps.png")}
    totals = maps.to_numpy().sum(axis=(2, 3))
    numbers = {
        "input": loaded.source,
        "elements": list(maps.elements),
        "xray_lines": list(maps.metadata.get_item("Sample.xray_lines", [])),
        "tilts_deg": [float(t) for t in maps.tilts],
        "pixel_size": list(maps.pixel_size),
        "image_shape": list(maps.data.shape[2:]),
        "counts_total": {el: float(totals[e].sum()) for e, el in enumerate(maps.elements)},
        "counts_per_tilt": {el: float(totals[e].mean()) for e, el in enumerate(maps.elements)},
        "integer_counts": is_counts(maps.to_numpy()),
    }
    b = maps.background
    numbers["background"] = {"mode": config.background, "attached": b is not None}
    if b is not None:
        numbers["background"]["counts_per_tilt"] = {el: float(b[e].sum(axis=(1, 2)).mean())
                                                    for e, el in enumerate(maps.elements)}
    for el in maps.elements:
        log(f"  {el:>2}: {numbers['counts_per_tilt'][el]:9.0f} counts per tilt")
    return MapsSummary(numbers=numbers, files=files, counts_per_tilt=numbers["counts_per_tilt"],
                       integer_counts=numbers["integer_counts"])


# -- 3. align -------------------------------------------------------------------------------------------
def align(maps: ElementMapTiltSeries, config: PipelineConfig, work: Path) -> AlignSummary:
    """Step 3: the views aligned (``config.align_method``) and saved, or left as they are (``config.align`` False).

    Returns
    -------
    AlignSummary
        ``numbers["alignment"]``: the method, the largest and rms shift (px),
        the tilt-axis offset (px) and rotation (deg); ``"none"`` when not aligned.
    """
    align_method, numbers, files = config.align_method, {}, {}
    raw = maps
    if config.align:
        log(f"Aligning {maps.tilts.size} views ({align_method}) ...")
        maps = maps.align(method=align_method, show_progressbar=config.show_progressbar)

        info = Alignment.from_metadata(maps)
        sx, sy = info.shift_x_px, info.shift_y_px
        numbers["alignment"] = {
            "method": str(info.method if info.method is not None else align_method),
            "max_shift_px": float(np.max(np.hypot(sx, sy))) if sx.size else 0.0,
            "rms_shift_px": float(np.sqrt(np.mean(sx ** 2 + sy ** 2))) if sx.size else 0.0,
            "axis_offset_px": float(info.axis_offset_px if info.axis_offset_px is not None else 0.0),
            "rotation_deg": float(info.rotation_deg),
        }
        maps.save(work / "element_maps_aligned.hspy", overwrite=True)
        files["aligned element maps"] = work / "element_maps_aligned.hspy"
        a = numbers["alignment"]
        log(f"  shifts up to {a['max_shift_px']:.2f} px, tilt-axis offset {a['axis_offset_px']:.2f} px, "
                            f"rotation {a['rotation_deg']:.2f} deg")
    else:
        numbers["alignment"] = "none"
    method = numbers["alignment"]["method"] if config.align else None
    return AlignSummary(numbers=numbers, files=files, maps=maps, raw=raw, method=method)


# -- 4. denoise -----------------------------------------------------------------------------------------
def denoise(maps: ElementMapTiltSeries, config: PipelineConfig, work: Path) -> DenoiseSummary:
    """Step 4: the maps denoised (``config.denoiser``) and saved, unless the algorithm denoises them itself.

    Returns
    -------
    DenoiseSummary
        ``maps``: what is reconstructed (the input when not denoised here).
        ``numbers["denoiser"]``: the method and its parameters, ``"inside
        METHOD: DENOISER"`` for an algorithm that denoises itself, or ``"none"``.
    """
    denoiser, inside = config.denoiser, config.internal_denoiser
    if denoiser != "none" and not inside:
        log(f"Denoising with {denoiser} ...")
        denoised = maps.denoise(denoiser, show_progressbar=config.show_progressbar, **config.denoiser_parameters)
        path = work / f"element_maps_denoised_{denoiser}.hspy"
        denoised.save(path, overwrite=True)
        return DenoiseSummary(numbers={"denoiser": {"method": denoiser, **config.denoiser_parameters}},
                              files={"denoised element maps": path}, maps=denoised, method=denoiser)
    if inside:

        parameters = config.reconstruction_parameters
        own = parameters.get("denoiser", get_algorithm(config.method).class_traits()["denoiser"].default)
        return DenoiseSummary(numbers={"denoiser": f"inside {config.method}: {own}"}, maps=maps, method=str(own),
                              inside=True)
    return DenoiseSummary(numbers={"denoiser": "none"}, maps=maps)


# -- 5. reconstruct -------------------------------------------------------------------------------------
def reconstruct(maps: ElementMapTiltSeries, config: PipelineConfig, work: Path) -> ReconstructSummary:
    """Step 5: the volume (``maps.reconstruct(config.method, ...)``), saved as ``volume.hspy``.

    Returns
    -------
    ReconstructSummary
        ``numbers``: the method, the parameters used (per element when they
        differ), the volume's shape and, with ``config.truth``, the Pearson
        correlation of each element with it.
    """
    method = config.method
    log(f"Reconstructing with {method} ...")
    volume = maps.reconstruct(method, show_progressbar=config.show_progressbar, seed=config.seed,
                              **config.reconstruction_parameters)
    volume.save(work / "volume.hspy", overwrite=True)
    used = volume.history[-1].get("parameters", {}).get("parameters", {})
    numbers = {"method": method, "parameters": used, "volume_shape": list(volume.data.shape[1:])}
    truth = config.truth
    if truth is not None:
        numbers["pearson_with_truth"] = {}
        for el in volume.elements:
            if el in truth.elements:
                r = pearson(volume.element(el).to_numpy(), truth.element(el).to_numpy())
                numbers["pearson_with_truth"][el] = float(r)
                log(f"  {el:>2}: Pearson correlation with the ground truth {r:.3f}")
    return ReconstructSummary(numbers=numbers, files={"volume": work / "volume.hspy"}, volume=volume, method=method,
                              parameters=used)


# -- 6. FSC ---------------------------------------------------------------------------------------------
def fsc_numbers(fsc: Signal1D, elements: Sequence[str], *, split: str, method: str, seed: int | str,
                parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the report says of an FSC: how its halves were made and the resolutions per element.

    Parameters
    ----------
    fsc : Signal1D
        From :func:`hyperspy_edxtomo.analysis.fourier_shell_correlation`.
    elements : list of str
    split, method : str
        How the halves were made and reconstructed (in words).
    seed : int or str
    parameters : None or dict
        The halves' parameters (per element); None: not reported.

    Returns
    -------
    dict
        ``split``, ``method``, ``seed``, (``parameters``,) ``units``,
        ``resolution_0143``, ``resolution_half_bit``, ``nyquist_limited_0143``.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.workflow.steps import fsc_numbers
    >>> vol = datasets.core_shell_phantom(size=32)
    >>> n = fsc_numbers(vol.fourier_shell_correlation(vol), ["Zn"], split="the same volume", method="none", seed="-")
    >>> n["units"], round(n["resolution_0143"]["Zn"], 3), n["nyquist_limited_0143"]["Zn"]
    ('nm', 0.378, True)
    """
    info = fsc.metadata.Tomography.FSC
    numbers = {"split": split, "method": method, "seed": seed}
    if parameters is not None:
        numbers["parameters"] = jsonable(parameters)
    numbers.update(units=info.units,
                   resolution_0143={el: float(info.resolution_0143[el]) for el in elements},
                   resolution_half_bit={el: float(info.resolution_half_bit[el]) for el in elements},
                   nyquist_limited_0143={el: bool(info.nyquist_limited_0143[el]) for el in elements})
    return numbers


def record_fsc(fsc: Signal1D, elements: Sequence[str], work: Path, *, split: str, method: str, seed: int | str,
               parameters: dict[str, dict[str, Any]] | None = None, warning: str | None = None) -> FSCSummary:
    """An FSC saved (``fsc.hspy``), drawn (``fsc.png``) and summarised (:func:`fsc_numbers`).

    Parameters
    ----------
    fsc : Signal1D
    elements : list of str
    work : Path
        Folder.
    split, method, seed, parameters
        See :func:`fsc_numbers`.
    warning : None or str
        Why the FSC may not mean much (``numbers["fsc"]["warning"]``).

    Returns
    -------
    FSCSummary
    """
    numbers = fsc_numbers(fsc, elements, split=split, method=method, seed=seed, parameters=parameters)
    if warning:
        numbers["warning"] = warning
    fsc.save(work / "fsc.hspy", overwrite=True)
    files = {"FSC": work / "fsc.hspy", "FSC curves": plotting.fsc_plot(fsc, work / "fsc.png")}
    return FSCSummary(numbers={"fsc": numbers}, files=files, fsc=fsc, split=split, method=method,
                      parameters=dict(parameters or {}), warning=warning)


def fsc_halves(aligned: AlignSummary, volume: ElementVolume, config: PipelineConfig, work: Path) -> FSCSummary:
    """Step 6: the resolution by Fourier shell correlation of two halves of the data.

    The counts are split binomially when they are integer counts (else even
    and odd tilts, from 4 tilts on); each half is reconstructed per element
    with the parameters of
    :func:`~hyperspy_edxtomo.analysis.fsc.fsc_halves_parameters` by
    :func:`~hyperspy_edxtomo.analysis.fsc.fsc_from_tilt_series`. An FSC that
    fails (e.g. a view left empty in a half) is reported, not fatal.

    Parameters
    ----------
    aligned : AlignSummary
        The aligned maps, and the unaligned counts the halves are split from.
    volume : ElementVolume
        The full reconstruction, whose parameters the halves reuse.
    config : PipelineConfig
    work : Path

    Returns
    -------
    FSCSummary
        ``numbers["fsc"]``: :func:`fsc_numbers` (with ``"warning"`` when the
        halves are too sparsely sampled to mean much), or why there is none.
    """
    maps, raw = aligned.maps, aligned.raw
    if not config.fsc:
        return FSCSummary(numbers={"fsc": "skipped (--no-fsc)"})
    method, per_element = fsc_halves_parameters(volume, config.method, config.fsc_method, config.fsc_parameters)
    split = "counts" if is_counts(raw.to_numpy()) else "tilts"
    if split == "tilts" and maps.tilts.size < 4:
        log("Skipping the FSC: the maps are not integer counts and there are under 4 tilts to split.")
        return FSCSummary(numbers={"fsc": "skipped: no integer counts to split and under 4 tilts"})
    log(f"Fourier shell correlation: two {split} halves reconstructed with {method} ...")
    try:
        fsc = fsc_from_tilt_series(maps, method, split, config.seed,
                                   raw=raw if (config.align and split == "counts") else None,
                                   element_parameters=per_element, show_progressbar=config.show_progressbar)
    except ValueError as err:
        # e.g. a view left empty in a half of an element with a few counts per view: the volume
        # is worth keeping, the report says why there is no resolution

        warn(f"The Fourier shell correlation failed ({err}); the volume and the rest are written, "
             "and the report says so.")
        log(f"  no FSC: {err}")
        return FSCSummary(numbers={"fsc": f"failed: {err}"}, split=split, method=method, parameters=per_element)
    # warned by split_tilt_series; the report says it beside the numbers
    problem = fsc_sampling_problem(*halves_tilts(maps.tilts, split), split)
    summary = record_fsc(fsc, list(volume.elements), work, split=split, method=method, seed=config.seed,
                         parameters=per_element, warning=problem)
    if problem:
        log(f"  warning: {problem}")
    n, units = summary.numbers["fsc"], fsc.metadata.Tomography.FSC.units
    for el in volume.elements:
        log(f"  {el:>2}: {n['resolution_0143'][el]:.2f} {units} (0.143), "
                     f"{n['resolution_half_bit'][el]:.2f} {units} (1/2-bit)")
    return summary


# -- 7. particles and shells ----------------------------------------------------------------------------
def analyse(volume: ElementVolume, work: Path | None, *, shell_elements: Sequence[str] | None = None,
            fsc: str | dict[str, Any] | None = None, truth: ElementVolume | None = None, max_particles: int = 10,
            verbose: bool = True, keep_going: bool = True) -> AnalysisSummary:
    """Step 7: particles and shell maps of the volume (:func:`analyse_volume`), with their pictures.

    Parameters
    ----------
    volume : ElementVolume
    work : None or Path
        Folder for the pictures (none written when None).
    shell_elements : None or list of str
        Elements whose shells are mapped; None: all.
    fsc : None, str or dict
        The FSC's numbers (:func:`fsc_numbers`): particles smaller than its
        resolution are flagged.
    truth : None or ElementVolume
        Its shell coverage is added as ``"shells_truth"``.
    max_particles : int
        Shells of at most this many (the largest) particles.
    verbose : bool
        Show the particles' flags and the first particle's shells on standard
        output (they are ``logging`` records of this module either way).
    keep_going : bool
        An analysis that fails is reported (``numbers["shells"]``, a warning)
        and the run goes on: the volume and the FSC are worth keeping.
        False: the error is raised.

    Returns
    -------
    AnalysisSummary

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.workflow.steps import analyse
    >>> done = analyse(datasets.core_shell_phantom(size=32), None, shell_elements=["S"], verbose=False)
    >>> len(done.numbers["particles"]), done.numbers["shells"][0]["element"]
    (1, 'S')
    """
    with console_lines(verbose):
        return _analyse(volume, work, shell_elements, fsc, truth, max_particles, keep_going)


def _analyse(volume, work, shell_elements, fsc, truth, max_particles, keep_going):
    log("Finding particles and mapping their shells ...")
    numbers, files = {}, {}
    try:
        particles, shells = analyse_volume(volume, shell_elements, numbers, files, work, truth=truth,
                                           max_particles=max_particles, fsc=fsc)
    except Exception as err:  # noqa: BLE001 - the volume and the FSC are worth keeping whatever fails here
        if not keep_going:
            raise

        particles, shells = None, None
        numbers.setdefault("particles", [])
        numbers["shells"] = f"the particle analysis failed ({type(err).__name__}: {err})"
        warn(f"The particle and shell analysis failed ({type(err).__name__}: {err}); the volume, FSC and "
             "pictures are written, and the report says so.")
    for p in numbers.get("particles", []):
        for flag in p.get("flags", []):
            log(f"  particle {p['label']}: check: {flag}")
    if isinstance(numbers.get("shells"), list) and numbers["shells"]:
        first = numbers["shells"][0]["particle"]
        for row in numbers["shells"]:
            if row["particle"] == first:
                log(f"  particle {row['particle']} {row['element']:>2}: "
                             f"{100 * row['absent_fraction']:5.1f} % absent, mean thickness "
                             f"{row['mean_thickness_where_present']:.2f} {volume.voxel_size[1]}")
    else:
        log(f"  no particle analysis: {numbers.get('shells')}; the report says so")
    for label, reason in numbers.get("shells_skipped", {}).items():
        log(f"  particle {label} not analysed: {reason}")
    return AnalysisSummary(numbers=numbers, files=files, particles=particles, shells=shells)


# -- 8. pictures and exports ----------------------------------------------------------------------------
def _overlay_elements(elements, shell_elements):
    chosen = [e for e in (shell_elements or elements) if e in elements]
    return (chosen if len(chosen) >= 2 else list(elements))[-3:]


def figures(volume: ElementVolume, particles: ParticleList | None, config: PipelineConfig,
            work: Path) -> FiguresSummary:
    """Step 8: cuts through the volume (and the truth), maximum projections and an RGB overlay.

    The cuts pass through the largest particle's centre (the box centre may
    miss every particle); the overlay shows up to three of the shell elements.

    Returns
    -------
    FiguresSummary
    """
    centre = tuple(particles[0].centre) if particles else None
    files = {"volume cuts": plotting.volume_cuts(volume, work / "volume_cuts.png", truth=config.truth,
                                                 position=centre),
             "maximum projections": plotting.max_projections(volume, work / "max_projections.png")}
    if len(volume.elements) >= 2:
        files["RGB overlay"] = plotting.rgb_overlay(volume, work / "rgb_overlay.png", position=centre,
                                                    elements=_overlay_elements(volume.elements, config.shell_elements))
    return FiguresSummary(files=files)


def export(volume: ElementVolume, formats: Sequence[str], work: Path) -> ExportSummary:
    """Step 9: the volume in the extra formats (``volume.mrc``, ``volume.tif``, ...; ``volume.hspy`` is written anyway).

    Returns
    -------
    ExportSummary
        ``files``: ``"export NAME"`` for every file written (``.mrc`` writes one per element).
    """
    files = {}
    for fmt in formats:
        for p in volume.export(work / f"volume.{fmt}"):
            files[f"export {p.name}"] = p
    return ExportSummary(files=files, formats=tuple(formats))


def analyse_volume(volume: ElementVolume, shell_elements: Sequence[str] | None = None,
                   numbers: dict[str, Any] | None = None, files: dict[str, Path] | None = None,
                   out: str | Path | None = None, truth: ElementVolume | None = None, max_particles: int = 10,
                   fsc: str | dict[str, Any] | None = None) -> tuple[ParticleList | None, ShellMaps | None]:
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
        measures behind them). An FSC already in ``numbers["fsc"]`` (or
        given as ``fsc``) flags particles smaller than its resolution.
    out : None or Path
        Folder for the pictures (none written when None).
    truth : None or ElementVolume
        Its shell coverage is added as ``"shells_truth"``.
    max_particles : int
        Shells of at most this many (the largest) particles.
    fsc : None, str or dict
        The FSC's numbers (:func:`fsc_numbers`); None: ``numbers.get("fsc")``.

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
    >>> from hyperspy_edxtomo.workflow.steps import analyse_volume
    >>> numbers = {}
    >>> particles, shells = analyse_volume(datasets.core_shell_phantom(size=32), ["S"], numbers)
    >>> len(numbers["particles"]), numbers["shells"][0]["element"]
    (1, 'S')
    """
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
    f = numbers.get("fsc") if fsc is None else fsc
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
