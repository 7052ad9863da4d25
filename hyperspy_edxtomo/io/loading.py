"""Read one vendor file per tilt into an :class:`EDXTiltSeries`.

The files are read by HyperSpy's own readers (RosettaSciIO) through
``hyperspy.api.load``; this module only picks the EDX spectrum image (and the
HAADF/ADF image) out of each file, checks that the files fit together and
stacks them along a tilt axis.

Vendor files are read in a child process (:mod:`hyperspy_edxtomo.io.vendor_read`):
the compiled readers crash on damaged files, and a crash there is an error
naming the file here. Saved ``.zspy`` stores are checked for codecs that run
code (pickle) before they are opened (:func:`check_zarr_codecs`).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyperspy_edxtomo.base.conventions import NODE, TILT_AXIS
from hyperspy_edxtomo.base.counts import DOSE_RATIO_WARN
from hyperspy_edxtomo.base.docstrings import LAZY_ARG, SHOW_PROGRESSBAR_ARG
from hyperspy_edxtomo.base.errors import FileError, InputError, InputTypeError, warn
from hyperspy_edxtomo.base.private_api import all_axes, dimension_str
from hyperspy_edxtomo.base.progress import progress_bar, show_progress
from hyperspy_edxtomo.base.provenance import append_history
from hyperspy_edxtomo.io import vendor_read
from hyperspy_edxtomo.io.damage import Spikes, energy_axis_keV, scan_spectrum_image
from hyperspy_edxtomo.signals.edx_tilt_series import (
    SIGNAL_TYPE,
    EDXTiltSeries,
    LazyEDXTiltSeries,
)
from hyperspy_edxtomo.signals.tilts import check_tilts, tilt_axis_dict

_logger = logging.getLogger(__name__)

ENERGY_UNITS = ("eV", "keV")

# Reader options that change the energy axis (or scan) so that files agree.
_ENERGY_HINTS = {
    ".bcf": "Bruker .bcf: cutoff_at_kV=<kV> (same number of channels) and/or downsample=<n>",
    ".emd": "Velox .emd: rebin_energy=<n>, SI_dtype=<dtype>, sum_frames=True",
    ".pts": "JEOL .pts: rebin_energy=<n>, cutoff_at_kV=<kV>",
}
_SCAN_HINTS = {
    ".bcf": "Bruker .bcf: downsample=<n>",
    ".pts": "JEOL .pts: downsample=<n>",
}
_FRAME_HINTS = {
    ".emd": "Velox .emd: sum_frames=True",
    ".pts": "JEOL .pts: sum_frames=True",
}

# Reference (HAADF/ADF) image titles, best first. Short detector names are
# matched case-sensitively so that an element map titled "Se" is not taken
# for a secondary-electron ("SE") image.
_IMAGE_PATTERNS = (
    re.compile(r"HAADF", re.IGNORECASE),
    re.compile(r"(?<!HA)ADF", re.IGNORECASE),
    re.compile(r"\bDF\d*\b"),
    re.compile(r"\bCh\s*\d+\b", re.IGNORECASE),
    re.compile(r"S\(T\)EM|\bSTEM\b"),
    re.compile(r"\b[AB]?BF\d*\b"),
    re.compile(r"\bBSE\b|\bSE\d*\b"),
)

# Energy axes agree when every channel energy differs by less than this
# fraction of a channel (Bruker writes slightly different calibrations from
# one acquisition to the next).
_ENERGY_TOLERANCE_CHANNELS = 0.05


@dataclass
class _View:
    """What one file contributes: its spectrum image, image and stage tilt."""
    path: str
    signal: object
    image: object = None
    file_tilt: float = None
    total: float = None  # counts in the spectrum image (None: no sum, e.g. non-numeric data)

    @property
    def ext(self):
        return os.path.splitext(self.path)[1].lower()

    @property
    def scan_shape(self):
        return tuple(int(n) for n in self.signal.data.shape[:2])

    @property
    def energy_axis(self):
        return self.signal.axes_manager.signal_axes[0]


def load_tilt_series(paths_or_glob: str | os.PathLike | Sequence[str | os.PathLike],
                     tilts: Sequence[float] | None = None, lazy: bool = False,
                     show_progressbar: bool | None = None, **reader_options) -> EDXTiltSeries:
    """Load a STEM-EDX tilt series: one spectrum-image file per tilt.

    Every file is read with ``hyperspy.api.load`` (the RosettaSciIO readers:
    Bruker ``.bcf``, Velox ``.emd``, JEOL ``.pts``, TIA ``.emi``/``.ser``,
    HyperSpy ``.hspy``/``.zspy`` and any other format HyperSpy reads). From
    each file the EDX spectrum image is taken: the EDS signal
    (``signal_type`` starting with ``"EDS"``) with two navigation axes and
    the largest scan; sum spectra without a scan are skipped. A plain
    ``Signal1D`` whose signal axis is in eV or keV (TIA ``.emi``) counts as
    EDX. The views are sorted by tilt angle and stacked: navigation
    ``(x, y, tilt)``, signal ``energy``; data ``(tilt, y, x, energy)``.

    Parameters
    ----------
    paths_or_glob : str, path or list of str/paths
        A glob pattern (``"series/*.bcf"``), one path, or a list of paths
        (list entries may be glob patterns too). The same file may be listed
        several times (give explicit ``tilts``). Glob matches are sorted by
        name with numbers compared by value (``tilt_2`` before ``tilt_10``);
        a TIA ``.ser`` matched together with its ``.emi`` is read once.
    tilts : None or array-like of float
        Tilt angles in degrees, one per file in the order of the files (the
        order given, or the sorted glob matches). None reads each file's
        stage tilt (``Acquisition_instrument.TEM.Stage.tilt_alpha``, or
        ``SEM``), in degrees as HyperSpy stores it. Readers write 0.0 when
        the tilt is not recorded, so missing, repeated or all-zero stage
        tilts raise a ValueError asking for ``tilts``. Given tilts override
        the files' values.
    %s
    %s
    **reader_options
        Passed to ``hyperspy.api.load`` for every file, e.g.
        ``cutoff_at_kV=20`` or ``downsample=2`` (``.bcf``),
        ``rebin_energy=4``, ``SI_dtype=np.uint16``, ``sum_frames=True``
        (``.emd``), ``rebin_energy``/``cutoff_at_kV`` (``.pts``): use them to
        give all files the same energy axis. A reader that does not know an
        option fails, so mix file formats only without reader options.

    Returns
    -------
    EDXTiltSeries or LazyEDXTiltSeries
        Navigation ``(x, y, tilt)``, signal ``energy``. The spatial axes are
        named ``"x"`` and ``"y"`` and keep the reader's calibration (of the
        first view); the energy axis is the first view's, unchanged (eV or
        keV). The tilt axis holds the angles, ascending.

        Metadata: ``Acquisition_instrument`` and ``Sample`` of the first view
        (lowest tilt), with ``SEM`` renamed ``TEM`` and the per-view
        ``Stage.tilt_alpha`` dropped (the angles are on the tilt axis; exspy
        then puts its default, 0, back for its take-off angle);
        ``Tomography.source_files``: the files' absolute paths in the order
        of the tilt axis; ``Tomography.history``: a ``"load"`` step with the
        tilts, the stage tilts read from the files (NaN where missing) and
        the reader options; ``Tomography.reference_images``: the HAADF (or
        else ADF/DF/BF/detector-channel) image of each tilt, a ``Signal2D``
        navigated by the same tilt axis, always read into memory. The file's
        HAADF image is preferred, then an image with the scan's shape. When
        any file has no such image, or the images differ in shape, no
        reference images are stored (``series.reference_images`` is None).

    Raises
    ------
    FileNotFoundError
        A path does not exist or a glob matches no file.
    OSError
        A file is empty, a directory, or the reader fails on it (corrupt or
        unsupported file) or crashes on it (a damaged or truncated vendor
        file); a ``.zspy`` uses a codec that would run code from the file
        (see :func:`check_zarr_codecs`). The message names the file.
    ValueError
        A file holds no EDX spectrum image, or an empty one (0 counts: a
        reader fills what a truncated file lacks with zeros); scan sizes or
        energy axes differ between files (the message lists the reader
        options that make them agree); tilts are missing, repeated, all 0.0,
        out of range or not one per file. Every file is read and checked before the series is
        built: nothing is returned half-loaded.

    Warns
    -----
    UserWarning
        A file's spectrum image holds fewer than 1/10
        (:data:`~hyperspy_edxtomo.base.counts.DOSE_RATIO_WARN`) of the counts of
        the median view: a truncated or damaged file that still reads, or
        another dose; the warning names the file(s).

    Notes
    -----
    Vendor files (``.bcf``, ``.emd``, ``.pts``, ``.emi``/``.ser``) are read
    in one child Python process per call, because the compiled readers can
    crash the interpreter (segmentation fault, bus error) on a damaged file;
    the crash becomes an ``OSError`` naming the file. The child costs about
    0.4 s per call, plus the first-use compilation of readers that use numba
    (Velox ``.emd``: about 1 s, 3 s lazy). Eagerly read data comes back
    through a pipe, copied once. A lazy
    read cannot come back (dask arrays stay in their process): the child
    reads each file lazily and sums it chunk by chunk, which runs the whole
    decoding in bounded memory, and the file is then read lazily here. That
    probe is one extra pass over each file. HyperSpy's ``.hspy``/``.zspy``
    are read here directly (``.zspy`` after :func:`check_zarr_codecs`).

    Examples
    --------
    >>> import hyperspy_edxtomo as het
    >>> s = het.load_tilt_series("series/*.bcf", tilts=[-60, -40, -20, 0, 20, 40, 60])  # doctest: +SKIP
    >>> s  # doctest: +SKIP
    <EDXTiltSeries, title: EDX tilt series (7 tilts), dimensions: (64, 64, 7|2048)>
    >>> s.tilts  # doctest: +SKIP
    array([-60., -40., -20.,   0.,  20.,  40.,  60.])
    >>> big = het.load_tilt_series(["a.emd", "b.emd"], tilts=[-30, 30], lazy=True, rebin_energy=4)  # doctest: +SKIP
    >>> maps = s.get_element_maps()  # elements from the files' metadata  # doctest: +SKIP
    """
    paths = _resolve_paths(paths_or_glob)
    given_tilts = None
    if tilts is not None:
        given_tilts = _check_given_tilts(tilts, paths)

    views = []
    cache = {}
    with _Reader(paths, lazy, reader_options) as reader:
        for path in progress_bar(paths, total=len(paths), desc="Reading tilt series",
                                 show=show_progress(show_progressbar)):
            key = os.path.realpath(path)
            if key not in cache:
                cache[key] = reader.read(path)
            views.append(_View(path=path, **cache[key]))
    _check_low_counts(views)

    file_tilts = [v.file_tilt for v in views]
    if given_tilts is None:
        tilt_values = _tilts_from_files(views)
    else:
        tilt_values = given_tilts
    order = np.argsort(tilt_values, kind="stable")
    views = [views[i] for i in order]
    tilt_values = np.asarray(tilt_values, dtype=float)[order]
    file_tilts = [file_tilts[i] for i in order]

    _check_scans(views)
    _check_energy_axes(views)
    _check_pixel_sizes(views)
    references = _reference_images(views, tilt_values)

    series = _build(views, tilt_values, lazy)
    if references is not None:
        series.metadata.set_item(f"{NODE}.reference_images", references)
    append_history(
        series,
        "load",
        "load_tilt_series",
        {
            "files": [os.path.abspath(v.path) for v in views],
            "tilts": tilt_values,
            "tilts_from": "files" if given_tilts is None else "tilts argument",
            "file_tilts": [math.nan if t is None else t for t in file_tilts],
            "lazy": bool(lazy),
            "reader_options": {k: _option_repr(v) for k, v in reader_options.items()},
        },
    )
    return series


load_tilt_series.__doc__ %= (LAZY_ARG, SHOW_PROGRESSBAR_ARG)


# -- files ----------------------------------------------------------------------------
def _has_magic(s):
    return any(c in s for c in "*?[")


def _natural_key(path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


def _is_zspy(path):
    # a .zspy (zarr) "file" is a directory
    return os.path.isdir(path) and path.rstrip("/\\").lower().endswith(".zspy")


def _expand_glob(pattern):
    matches = sorted((m for m in glob.glob(pattern) if os.path.isfile(m) or _is_zspy(m)), key=_natural_key)
    if not matches:
        raise FileNotFoundError(f"No file matches the pattern {pattern!r}.")
    # a TIA spectrum image is foo.emi + foo_1.ser: read it once, through the .emi
    emis = {os.path.splitext(m)[0] for m in matches if m.lower().endswith(".emi")}
    return [
        m
        for m in matches
        if not (m.lower().endswith(".ser") and re.sub(r"_\d+$", "", os.path.splitext(m)[0]) in emis)
    ]


def _resolve_paths(paths_or_glob):
    if isinstance(paths_or_glob, (str, os.PathLike)):
        entries = [os.fspath(paths_or_glob)]
    else:
        try:
            entries = [os.fspath(p) for p in paths_or_glob]
        except TypeError as exc:
            raise InputTypeError(
                f"paths_or_glob must be a glob pattern, a path or a list of paths, got {paths_or_glob!r}"
            ) from exc
    if not entries:
        raise InputError("No files given: paths_or_glob is an empty list.")
    paths, missing = [], []
    for entry in entries:
        if os.path.exists(entry):
            if os.path.isdir(entry) and not _is_zspy(entry):
                raise IsADirectoryError(
                    f"{entry} is a directory: give the files in it, e.g. {os.path.join(entry, '*.bcf')!r}."
                )
            paths.append(entry)
        elif _has_magic(entry):
            paths.extend(_expand_glob(entry))
        else:
            missing.append(entry)
    if missing:
        raise FileNotFoundError(f"File(s) not found: {', '.join(missing)}")
    return paths


class _Reader:
    """Reads the files of one call: vendor files in one child process, the others here.

    The child starts at once on every vendor file (each file once, in the order
    asked), so it reads ahead while this process builds the views; ``with``
    ends it, also when a read fails.
    """
    def __init__(self, paths, lazy, reader_options):
        self.lazy = lazy
        self.reader_options = reader_options
        self.load_options, self.file_options, fmt = vendor_read.split_options(reader_options)
        self.apis = {}
        jobs = []
        for path in paths:
            key = os.path.realpath(path)
            if key in self.apis:
                continue
            api = None
            if os.path.isfile(path) and os.path.getsize(path) > 0:
                api = vendor_read.reader_api(path, fmt)
            self.apis[key] = api
            if api is not None:
                jobs.append((path, api))
        self.child = None
        if jobs:
            try:
                self.child = vendor_read.ChildReader(jobs, lazy, self.file_options)
            except OSError as exc:  # no interpreter to start (frozen application, no resources)
                warn(f"Could not start a process to read the vendor files ({exc}): they are read here, without "
                     "protection against reader crashes on damaged files.")
                self.apis = dict.fromkeys(self.apis)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.child is not None:
            self.child.close()

    def read(self, path):
        """``dict(signal, image, file_tilt, total)`` of one file; errors name the file."""
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise OSError(f"{path} is empty (0 bytes): it holds no data.")
        api = self.apis.get(os.path.realpath(path))
        if api is None:
            check_zarr_codecs(path)
            return _view_dict(path, _load_here(path, self.lazy, self.reader_options))
        result = self.child.next()
        vendor_read.rewarn(path, result)
        if result["signals"] is not None:
            try:
                loaded = vendor_read.replay(path, api, result["signals"], self.load_options)
            except Exception as exc:
                raise _read_error(path, exc) from exc
        else:
            # lazy (the child's read was a probe), or a result that is not sent across: the child read
            # the file without crashing, so reading it here is safe
            loaded = _load_here(path, self.lazy, self.reader_options)
        return _view_dict(path, loaded, result["totals"], result.get("spikes"))


def _load_here(path, lazy, reader_options):
    import hyperspy.api as hs

    try:
        return hs.load(path, lazy=lazy, escape_square_brackets=True, **reader_options)
    except Exception as exc:
        raise _read_error(path, exc) from exc


def _read_error(path, exc):
    return FileError(f"Could not read {path} (corrupt or unsupported file?): "
                   f"{vendor_read.exception_str(type(exc).__name__, str(exc))}")


def _view_dict(path, loaded, totals=None, spikes=None):
    """The view of one file; refuses an empty or damaged spectrum image. ``totals``, ``spikes``: the child's
    sums and spikes (:func:`~hyperspy_edxtomo.io.damage.scan_dictionary`), one per signal."""
    signals = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
    si = _pick_spectrum_image(path, signals)
    index = next(i for i, s in enumerate(signals) if s is si)
    if totals is not None and len(totals) == len(signals):  # the child's one pass over the data
        total = totals[index]
        found = spikes[index] if spikes is not None and len(spikes) == len(signals) else None
        found = Spikes() if found is None else found  # None: no energy axis to judge spikes on
    else:  # read here: a native file, or the child could not send its result
        axis = si.axes_manager.signal_axes[0]
        energy = energy_axis_keV(axis.scale, axis.offset, axis.units) or (None, 0.0)
        try:
            total, found = scan_spectrum_image(si.data, *energy) if energy[0] is not None else (
                vendor_read.total_counts(si.data), Spikes())
        except Exception as exc:  # a lazy signal is read here: the reader fails on the file
            raise _read_error(path, exc) from exc
    if total == 0:
        shape = "x".join(str(n) for n in si.data.shape)
        raise InputError(
            f"{path} holds an empty EDX spectrum image (0 counts in all {shape} values): the file is damaged or "
            "truncated (a reader may fill what is missing with zeros), or nothing was recorded. Check the file; "
            "leave it out of the series."
        )
    if found[0]:
        _report_spikes(path, Spikes(*found), total)
    return {"signal": si, "image": _pick_image(signals, si), "file_tilt": _stage_tilt(si), "total": total}


def _report_spikes(path, spikes, total):
    """Damaged bytes read as counts (:mod:`~hyperspy_edxtomo.io.damage`): refused when they hold most of
    the file's counts, warned about otherwise (the maps may be unaffected if no line window covers them)."""
    what = (f"{path} holds {spikes.number} single-channel spike(s): one energy channel of one pixel with up to "
            f"{spikes.largest:.10g} counts while the channels beside it hold almost none, {spikes.counts:.6g} of its "
            f"{total:.6g} counts. An X-ray line always spreads over several channels, so these are damaged bytes "
            "(a file with no checksum, e.g. TIA .ser, reads them without a word), not X-rays.")
    if spikes.counts * 2 > total:
        raise FileError(f"{what} Copy the file again from the microscope computer, or leave it out of the series.")
    warn(f"{what} Check the file (copy it again from the microscope computer); element maps whose windows hold a "
         "spike are wrong there.")


def _check_low_counts(views):
    """Warn, naming the files, about views holding under 1/DOSE_RATIO_WARN of the median view's counts.

    A truncated or damaged file often still reads, with part of its counts
    (a JEOL .pts cut to 10 % keeps 7 %). The same factor flags odd views in
    :func:`hyperspy_edxtomo.reconstruction.api.check_views`.
    """
    totals = np.array([np.nan if v.total is None else v.total for v in views], dtype=float)
    finite = np.isfinite(totals)
    if finite.sum() < 2:
        return
    median = float(np.median(totals[finite]))
    low = [(v.path, t) for v, t, ok in zip(views, totals, finite) if ok and t * DOSE_RATIO_WARN < median]
    if low:
        listing = ", ".join(f"{p} ({t:.6g} counts)" for p, t in low)
        warn(
            f"The spectrum image(s) of {listing} hold fewer than 1/{DOSE_RATIO_WARN:g} of the counts of the median "
            f"view ({median:.6g}): such a file may be truncated or damaged, or was acquired at another dose or "
            "dwell time. Check it; every view is weighed alike in the reconstruction."
        )


#: numcodecs codecs whose decoding can run code from the file (unpickling)
UNSAFE_ZARR_CODECS = ("pickle",)


def _codec_ids(meta):
    """Codec identifiers of one array's zarr metadata (v2 ``.zarray`` or v3 ``zarr.json``)."""
    ids = []
    if meta.get("zarr_format") == 3 or "node_type" in meta:
        if meta.get("node_type") != "array":
            return ids

        def walk(node):  # codecs nest, e.g. inside a sharding codec's configuration
            if isinstance(node, list):
                for item in node:
                    walk(item)
            elif isinstance(node, dict):
                if isinstance(node.get("name"), str):
                    ids.append(node["name"])
                config = node.get("configuration")
                if isinstance(config, dict):
                    walk(list(config.values()))

        walk(meta.get("codecs", []))
        return ids
    for codec in [meta.get("compressor")] + list(meta.get("filters") or []):
        if isinstance(codec, dict) and isinstance(codec.get("id"), str):
            ids.append(codec["id"])
    return ids


def _zarr_metadata(path):
    """``(array name, metadata dict)`` of every array of a zarr store (directory or zip), data left alone."""
    names = (".zarray", "zarr.json", ".zmetadata")
    entries = []
    if os.path.isdir(path):
        for folder, _, files in os.walk(path):
            for name in files:
                if name in names:
                    full = os.path.join(folder, name)
                    with open(full, "rb") as f:
                        entries.append((os.path.relpath(full, path).replace(os.sep, "/"), f.read()))
    else:
        import zipfile

        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.rsplit("/", 1)[-1] in names:
                    entries.append((info.filename, z.read(info)))
    out = []
    for key, raw in entries:
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            raise OSError(f"{path}: the zarr metadata {key} is not valid JSON ({exc}): the store is damaged.") from None
        if not isinstance(meta, dict):
            continue
        array = key.rsplit("/", 1)[0] if "/" in key else "/"
        if key.endswith(".zmetadata"):  # consolidated: every node's metadata in one file
            for sub, node in (meta.get("metadata") or {}).items():
                if sub.endswith(".zarray") and isinstance(node, dict):
                    out.append((sub.rsplit("/", 1)[0] if "/" in sub else "/", node))
        else:
            out.append((array, meta))
    return out


def check_zarr_codecs(path):
    """Refuse a zarr store (``.zspy``) whose arrays decode with a codec that runs code.

    A ``.zspy`` can name ``numcodecs.Pickle`` as an array's filter or
    compressor; reading that array unpickles data from the file, which can
    run any code (numcodecs before 0.15.2 did so by default; later versions
    only when ``NUMCODECS_ALLOW_UNSAFE_PICKLE_DECODE`` is set). The arrays'
    metadata (``.zarray``, ``zarr.json``, consolidated ``.zmetadata``) is
    read as JSON, without opening the store with zarr and without decoding
    any data. HyperSpy never writes such codecs (it uses ``vlen-*``,
    ``msgpack2`` and ``json2`` for object arrays, which decode plain values).
    Paths that are not zarr stores are left alone.

    Parameters
    ----------
    path : str or path
        A ``.zspy`` folder or zip file, or any other file (ignored).

    Raises
    ------
    OSError
        An array uses a codec of :data:`UNSAFE_ZARR_CODECS`, or the
        metadata is not valid JSON; the message names the file and the array.

    Examples
    --------
    >>> from hyperspy_edxtomo.io.loading import check_zarr_codecs
    >>> check_zarr_codecs("maps.hspy")  # not a zarr store: nothing to check
    """
    path = os.fspath(path)
    is_dir = os.path.isdir(path)
    if not (is_dir or path.lower().endswith(".zspy")):
        return
    if not is_dir:
        import zipfile

        if not (os.path.isfile(path) and zipfile.is_zipfile(path)):
            return  # not a zarr zip store: the reader says what it is
    for array, meta in _zarr_metadata(path):
        bad = [c for c in _codec_ids(meta) if c.lower().rsplit(".", 1)[-1] in UNSAFE_ZARR_CODECS]
        if bad:
            raise OSError(
                f"{path} is refused: its array {array!r} is encoded with the {bad[0]!r} codec, whose decoding runs "
                "code stored in the file (unpickling). HyperSpy does not write such files; open it only if you "
                "trust its source, and re-save it without pickle-encoded arrays."
            )


def load_native(path: str | os.PathLike, lazy: bool = False, expected: type | tuple | None = None,
                hint: str = ""):
    """``hs.load`` of a file this package (or HyperSpy) saved, after the checks every such load needs.

    The file must exist, and a ``.zspy`` must not name a codec that runs code
    (:func:`check_zarr_codecs`); a reader's failure becomes an ``OSError``
    naming the file; with ``expected``, anything else than those classes is
    an InputError naming the file, what it holds and ``hint``.

    Parameters
    ----------
    path : str or path
        A ``.hspy`` or ``.zspy`` file.
    lazy : bool
        Load lazily (dask).
    expected : None, class or tuple of classes
        The signal classes the caller can use.
    hint : str
        How to make such a file (the end of the error message).

    Returns
    -------
    BaseSignal or list of BaseSignal
        What ``hs.load`` returns.
    """
    import hyperspy.api as hs

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    check_zarr_codecs(path)
    try:
        loaded = hs.load(path, lazy=lazy)
    except Exception as err:  # the readers raise many kinds for a corrupt file
        raise FileError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    if expected is not None and not isinstance(loaded, expected):
        classes = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join(c.__name__ for c in classes)
        raise InputError(f"{path} holds a {type(loaded).__name__}, not {names}" + (f": {hint}" if hint else "."))
    return loaded


def _describe(s):
    title = s.metadata.get_item("General.title", "")
    stype = s.metadata.get_item("Signal.signal_type", "") or ""
    return f"{type(s).__name__}({title!r}, signal_type={stype!r}, shape={dimension_str(s)})"


def _is_edx(s):
    if s.axes_manager.signal_dimension != 1:
        return False
    stype = s.metadata.get_item("Signal.signal_type", "") or ""
    if stype.upper().startswith("EDS"):
        return True
    # e.g. TIA: a plain Signal1D with an energy axis
    return stype == "" and s.axes_manager.signal_axes[0].units in ENERGY_UNITS


def _pick_spectrum_image(path, signals):
    edx = [s for s in signals if _is_edx(s)]
    images = [s for s in edx if s.axes_manager.navigation_dimension == 2]
    if images:
        sizes = [s.axes_manager.navigation_size for s in images]
        return images[int(np.argmax(sizes))]
    found = "; ".join(_describe(s) for s in signals)
    ext = os.path.splitext(path)[1].lower()
    if edx:
        hint = f" Try {_FRAME_HINTS[ext]}." if ext in _FRAME_HINTS else ""
        raise InputError(
            f"{path} holds EDX spectra but no spectrum image (an EDX signal with 2 navigation axes, "
            f"y and x): found {found}.{hint}"
        )
    raise InputError(
        f"{path} holds no EDX data: found {found}. An EDX spectrum image is a Signal1D with "
        "signal_type 'EDS_TEM'/'EDS_SEM' (or an energy axis in eV/keV) and 2 navigation axes."
    )


def _image_rank(s):
    title = str(s.metadata.get_item("General.title", ""))
    for rank, pattern in enumerate(_IMAGE_PATTERNS):
        if pattern.search(title):
            return rank
    return None


def _pick_image(signals, si):
    """The HAADF/ADF image of the file: HAADF first, then the scan's shape."""
    scan = tuple(si.data.shape[:2])
    best, best_key = None, None
    for i, s in enumerate(signals):
        if s is si or s.axes_manager.signal_dimension != 2 or s.axes_manager.navigation_dimension != 0:
            continue
        rank = _image_rank(s)
        if rank is None:
            continue
        key = (rank != 0, tuple(s.data.shape) != scan, rank, i)
        if best_key is None or key < best_key:
            best, best_key = s, key
    return best


def _stage_tilt(s):
    for mode in ("TEM", "SEM"):
        value = s.metadata.get_item(f"Acquisition_instrument.{mode}.Stage.tilt_alpha", None)
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            return value
    return None


# -- tilts ----------------------------------------------------------------------------
def _file_list(paths, values=None):
    if values is None:
        return ", ".join(str(p) for p in paths)
    return ", ".join(f"{p}: {v}" for p, v in zip(paths, values))


def _check_given_tilts(tilts, paths):
    flat = np.asarray(tilts, dtype=float).ravel()
    if flat.size != len(paths):
        raise InputError(
            f"{flat.size} tilts given for {len(paths)} files ({_file_list(paths)}): give one tilt angle per file, "
            "in the order of the files."
        )
    try:
        return check_tilts(flat, len(paths))
    except ValueError as exc:
        raise InputError(f"{exc} Files: {_file_list(paths, flat.tolist())}.") from None


def _tilts_from_files(views):
    paths = [v.path for v in views]
    values = [v.file_tilt for v in views]
    missing = [p for p, t in zip(paths, values) if t is None]
    ask = "pass tilts=[...] (degrees, one per file, in the order of the files)"
    if missing:
        raise InputError(f"No stage tilt in the metadata of {', '.join(missing)}: {ask}.")
    if all(t == 0 for t in values):
        raise InputError(
            f"Every file reads stage tilt 0.0 ({_file_list(paths)}); readers write 0.0 when the tilt is "
            f"not recorded, so it cannot be trusted: {ask}."
        )
    if len(set(values)) != len(values):
        raise InputError(
            f"Repeated stage tilts in the files' metadata ({_file_list(paths, values)}): every view needs "
            f"its own angle; {ask}."
        )
    try:
        return check_tilts(values, len(values))
    except ValueError as exc:
        raise InputError(f"{exc} Stage tilts read from {_file_list(paths, values)}; {ask}.") from None


# -- consistency ----------------------------------------------------------------------
def _hints(views, table):
    exts = sorted({v.ext for v in views} & set(table))
    return "; ".join(table[e] for e in exts)


def _check_scans(views):
    ref = views[0].scan_shape
    if all(v.scan_shape == ref for v in views):
        return
    listing = ", ".join(f"{v.path}: {v.scan_shape[1]}x{v.scan_shape[0]} px" for v in views)
    hint = _hints(views, _SCAN_HINTS)
    hint = f" Reader options that change the scan: {hint}." if hint else ""
    raise InputError(
        f"Scan sizes (x by y) differ between the files: {listing}. Every tilt needs the same scan; "
        f"crop or rebin the odd ones in HyperSpy and save them as .hspy.{hint}"
    )


def _energy_str(v):
    ax = v.energy_axis
    values = np.asarray(ax.axis, dtype=float)
    step = (values[-1] - values[0]) / max(values.size - 1, 1)
    return f"{v.path}: {ax.size} channels from {values[0]:.6g} {ax.units}, {step:.6g} {ax.units}/channel"


def _energy_matches(a, b):
    if a.size != b.size or a.units != b.units:
        return False
    xa = np.asarray(a.axis, dtype=float)
    xb = np.asarray(b.axis, dtype=float)
    width = np.median(np.abs(np.diff(xa))) if xa.size > 1 else 1.0
    return bool(np.max(np.abs(xa - xb)) <= _ENERGY_TOLERANCE_CHANNELS * width)


def _check_energy_axes(views):
    ref = views[0].energy_axis
    bad = [v for v in views[1:] if not _energy_matches(ref, v.energy_axis)]
    if not bad:
        return
    listing = "; ".join(_energy_str(v) for v in [views[0], *bad])
    hint = _hints(views, _ENERGY_HINTS)
    hint = f"Reader options that harmonise them: {hint}; or" if hint else "Harmonise them:"
    raise InputError(
        f"Energy axes differ between the files ({listing}). {hint} crop/rebin the energy axis in "
        "HyperSpy (crop_signal, rebin) and save as .hspy."
    )


def _check_pixel_sizes(views):
    def calib(v):
        axes = all_axes(v.signal)[:2]
        return [(float(a.scale), a.units) for a in axes]

    ref = calib(views[0])
    for v in views[1:]:
        for (s0, u0), (s1, u1) in zip(ref, calib(v)):
            if u0 != u1 or not math.isclose(s0, s1, rel_tol=0.01):
                warnings.warn(
                    f"The pixel size of {v.path} ({s1} {u1}) differs from that of {views[0].path} "
                    f"({s0} {u0}); the series uses the latter.",
                    UserWarning,
                    stacklevel=3,
                )
                return


# -- building -------------------------------------------------------------------------
def _axis_dict(axis, name=None, navigate=None):
    d = axis.get_axis_dictionary()
    if name is not None:
        d["name"] = name
    if navigate is not None:
        d["navigate"] = navigate
    return d


def _to_numpy(data):
    return np.asarray(data.compute() if hasattr(data, "compute") else data)


def _reference_images(views, tilts):
    import hyperspy.api as hs

    images = [v.image for v in views]
    if all(im is None for im in images):
        return None
    if any(im is None for im in images):
        without = [v.path for v in views if v.image is None]
        warnings.warn(
            f"No HAADF/ADF image in {', '.join(without)}: no reference images are stored.", UserWarning, stacklevel=3
        )
        return None
    shapes = {tuple(im.data.shape) for im in images}
    if len(shapes) > 1:
        listing = ", ".join(f"{v.path}: {v.image.data.shape}" for v in views)
        warnings.warn(f"The reference images differ in shape ({listing}): none are stored.", UserWarning, stacklevel=3)
        return None
    data = np.stack([_to_numpy(im.data) for im in images])
    first = images[0]
    ay, ax = all_axes(first)
    axes = [tilt_axis_dict(tilts), _axis_dict(ay, "y", False), _axis_dict(ax, "x", False)]
    title = str(first.metadata.get_item("General.title", "image"))
    md = {"General": {"title": f"{title} reference images"}, "Signal": {"signal_type": ""}}
    return hs.signals.Signal2D(data, axes=axes, metadata=md)


def _build(views, tilts, lazy):
    first = views[0].signal
    ay, ax = all_axes(first)[:2]
    axes = [
        tilt_axis_dict(tilts),
        _axis_dict(ay, "y", True),
        _axis_dict(ax, "x", True),
        _axis_dict(first.axes_manager.signal_axes[0], navigate=False),
    ]
    if lazy:
        import dask.array as da

        data = da.stack([v.signal.data if hasattr(v.signal.data, "dask") else da.asarray(v.signal.data) for v in views])
        cls = LazyEDXTiltSeries
    else:
        dtype = np.result_type(*[v.signal.data.dtype for v in views])
        data = np.empty((len(views),) + tuple(first.data.shape), dtype=dtype)
        for i, v in enumerate(views):
            data[i] = _to_numpy(v.signal.data)
        cls = EDXTiltSeries

    src = first.metadata
    md = {
        "General": {"title": f"EDX tilt series ({len(views)} tilts)"},
        "Signal": {"signal_type": SIGNAL_TYPE},
        NODE: {"tilt_axis": TILT_AXIS, "source_files": [os.path.abspath(v.path) for v in views]},
    }
    quantity = src.get_item("Signal.quantity", None)
    if quantity:
        md["Signal"]["quantity"] = quantity
    if src.has_item("Acquisition_instrument"):
        instrument = src.Acquisition_instrument.as_dictionary()
        if "SEM" in instrument and "TEM" not in instrument:
            instrument["TEM"] = instrument.pop("SEM")
        for mode in ("TEM", "SEM"):
            stage = instrument.get(mode, {}).get("Stage")
            if isinstance(stage, dict):
                stage.pop("tilt_alpha", None)  # differs per view: the angles are on the tilt axis
                if not stage:
                    del instrument[mode]["Stage"]
        md["Acquisition_instrument"] = instrument
    if src.has_item("Sample"):
        md["Sample"] = src.Sample.as_dictionary()
    return cls(data, axes=axes, metadata=md)


def _option_repr(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return value.__name__
    return repr(value)
