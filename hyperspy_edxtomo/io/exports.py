"""Write element volumes for other programs; every format keeps the voxel size.

===========  ========================================  ==========================================
suffix       files                                     voxel size stored as
===========  ========================================  ==========================================
``.hspy``    one (HyperSpy, class kept)                the axes (nm), with all metadata/history
``.zspy``    one (HyperSpy, zarr)                      the axes (nm), with all metadata/history
``.mrc``     one per element: ``name_Se.mrc``, ...     ``voxel_size`` in the header, in Å (MRC
             (or only ``element``: exactly ``path``)   convention, read by IMOD, tomviz, ChimeraX)
``.tif``     one ImageJ hyperstack, elements as        ImageJ ``spacing`` and x/y ``resolution``
             channels (``ZCYX``, float32)              (pixels per nm), ``unit="nm"``
``.npy``     one array (element, z, y, x) and a        ``name.json``: ``voxel_size``, ``units``,
             ``name.json`` sidecar                     ``elements``, axis order, history
``.vti``     one VTK XML ImageData, every element      ``Spacing`` (nm) and ``Origin``; opens in
             a point-data array (raw, appended)        ParaView as a volume with one array per element
===========  ========================================  ==========================================

All volumes are written as float32 in the numpy order (z, y, x) of each
element: x runs fastest (the VTK and MRC column order), z is the slowest
(MRC sections, TIFF pages).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.base.provenance import get_history
from hyperspy_edxtomo.io.staging import saved_as
from hyperspy_edxtomo.signals.methods import signal_method
from hyperspy_edxtomo.signals.volume import ElementVolume

__all__ = ["export_volume", "read_vti", "read_npy", "FORMATS", "ExportFormat", "EXPORT_FORMATS"]

#: the formats a volume is exported to besides HyperSpy's own ``.hspy`` (what ``exports=`` of the
#: pipeline and ``edxtomo run --export`` accept)
ExportFormat = Literal["mrc", "tif", "vti", "npy", "zspy"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
#: every file suffix :func:`export_volume` writes (``.tiff`` is ``.tif``)
FORMATS = (".hspy", *(f".{f}" for f in EXPORT_FORMATS), ".tiff")


def export_targets(path, suffix, elements):
    """The files ``export_volume`` writes for ``path``: one per element for a multi-element .mrc."""
    if suffix == ".mrc" and len(elements) > 1:
        return [path.with_name(f"{path.stem}_{el}{path.suffix}") for el in elements]
    if suffix == ".npy":
        return [path, path.with_suffix(".json")]
    return [path]


def _replace_with(target, write):
    """Write ``target`` through a temporary sibling, moved into place when complete: an error or
    Ctrl-C part-way never leaves a half-written file, nor destroys the one that was there."""
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        write(tmp)
        if target.is_dir() and not target.is_symlink():  # .zspy is a folder: not replaced in one rename
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return target


@signal_method(ElementVolume, name="export")
def export_volume(volume: ElementVolume, path: str | os.PathLike, element: str | None = None,
                  overwrite: bool = False) -> list[Path]:
    """Write an element volume; the format follows the suffix of ``path``.

    Parameters
    ----------
    volume : ElementVolume
    path : str or Path
        Output file; its suffix picks the format (see the module table):
        ``.hspy``, ``.zspy``, ``.mrc``, ``.tif``/``.tiff``, ``.npy``, ``.vti``.
    element : None or str
        Write only this element. For ``.mrc`` (one element per file) None
        writes one file per element, named ``<stem>_<element>.mrc``.
    overwrite : bool
        Replace existing files; False (default, as HyperSpy's ``save`` in a
        script): raise FileExistsError, before anything is written, when any
        of the files exists. Each file is written under a temporary name and
        renamed when complete.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    ValueError
        Unknown suffix or element, NaN in the volume.
    FileExistsError
        A file to write exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.core_shell_phantom(size=16)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> [p.name for p in vol.export(folder / "dot.mrc", element="Zn")]
    ['dot.mrc']
    >>> [p.name for p in vol.export(folder / "dot.mrc")][:2]
    ['dot_In.mrc', 'dot_P.mrc']
    >>> vol.export(folder / "dot.mrc", element="Zn")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: .../dot.mrc exists: pass overwrite=True to replace it.
    """
    if not isinstance(volume, ElementVolume):
        raise InputTypeError(f"export_volume needs an ElementVolume, got {type(volume).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"Unknown export format {path.suffix!r} for {path}: use one of {FORMATS}.")
    if element is not None:
        volume = volume.element(element)
    scale, units = volume.voxel_size
    elements = volume.elements
    targets = export_targets(path, suffix, elements)
    if not overwrite:
        existing = [t for t in targets if t.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists: pass overwrite=True to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)

    if suffix in (".hspy", ".zspy"):
        written = [_replace_with(path, lambda tmp: volume.save(tmp, overwrite=True))]
        saved_as(volume, path)  # not the temporary name it was written under
        return written

    data = np.asarray(volume.to_numpy(), dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise InputError("The volume contains NaN or infinite values; replace them before exporting.")

    if suffix == ".mrc":
        import mrcfile

        if units != "nm":
            raise InputError(f"MRC stores the voxel size in Å; this volume's axes are in {units!r}, not nm.")

        def write_mrc(tmp, e, el):
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(np.ascontiguousarray(data[e]))
                mrc.voxel_size = scale * 10.0  # Å
                mrc.update_header_stats()
                mrc.header.label[0] = f"hyperspy_edxtomo {el} voxel {scale:g} nm".encode()[:80]
                mrc.header.nlabl = 1

        return [_replace_with(p, lambda tmp, e=e, el=el: write_mrc(tmp, e, el))
                for e, (p, el) in enumerate(zip(targets, elements))]

    if suffix in (".tif", ".tiff"):
        import tifffile

        stack = np.ascontiguousarray(data.transpose(1, 0, 2, 3))  # (z, c, y, x)
        metadata = {"spacing": scale, "unit": units if units != "nm" else "nm", "axes": "ZCYX",
                    "Labels": [f"{el} z={k}" for k in range(stack.shape[0]) for el in elements],
                    "elements": ",".join(elements)}
        return [_replace_with(path, lambda tmp: tifffile.imwrite(tmp, stack, imagej=True,
                                                                 resolution=(1.0 / scale, 1.0 / scale),
                                                                 metadata=metadata))]

    if suffix == ".npy":
        side = json.dumps({
            "elements": elements,
            "axes": ["element", "z", "y", "x"],
            "shape": list(data.shape),
            "voxel_size": scale,
            "units": units,
            "title": volume.metadata.General.title,
            "history": get_history(volume),
        }, indent=1, default=str)
        return [_replace_with(path, lambda tmp: np.save(tmp, data)),
                _replace_with(targets[1], lambda tmp: tmp.write_text(side))]

    # .vti
    return [_replace_with(path, lambda tmp: _write_vti(tmp, data, elements, scale, volume))]


def _write_vti(path, data, elements, scale, volume):
    nz, ny, nx = data.shape[1:]
    origin = [float(volume.axes_manager[n].offset) for n in "xyz"]
    header = [
        '<?xml version="1.0"?>',
        '<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64">',
        f'  <ImageData WholeExtent="0 {nx - 1} 0 {ny - 1} 0 {nz - 1}" '
        f'Origin="{origin[0]!r} {origin[1]!r} {origin[2]!r}" Spacing="{scale!r} {scale!r} {scale!r}" '
        'Direction="1 0 0 0 1 0 0 0 1">',
        f'    <Piece Extent="0 {nx - 1} 0 {ny - 1} 0 {nz - 1}">',
        f'      <PointData Scalars="{elements[0]}">',
    ]
    offset = 0
    nbytes = nz * ny * nx * 4
    for el in elements:
        header.append(f'        <DataArray type="Float32" Name="{el}" format="appended" offset="{offset}"/>')
        offset += 8 + nbytes
    header += [
        "      </PointData>",
        "    </Piece>",
        "  </ImageData>",
        '  <AppendedData encoding="raw">',
    ]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n   _").encode("ascii"))
        for e in range(len(elements)):
            f.write(np.uint64(nbytes).astype("<u8").tobytes())
            f.write(np.ascontiguousarray(data[e], dtype="<f4").tobytes())
        f.write(b"\n  </AppendedData>\n</VTKFile>\n")


def read_vti(path):
    """Read a ``.vti`` written by :func:`export_volume` (raw appended Float32 arrays).

    Returns
    -------
    data : dict
        ``{array name: numpy array (z, y, x)}``
    spacing, origin : tuple of float
        ``(x, y, z)``.
    """
    raw = Path(path).read_bytes()
    start = raw.index(b"<AppendedData")
    underscore = raw.index(b"_", raw.index(b">", start)) + 1
    xml_head = raw[:start].decode("ascii") + "</VTKFile>"
    root = ET.fromstring(xml_head)
    image = root.find("ImageData")
    ext = [int(v) for v in image.get("WholeExtent").split()]
    nx, ny, nz = ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1
    spacing = tuple(float(v) for v in image.get("Spacing").split())
    origin = tuple(float(v) for v in image.get("Origin").split())
    out = {}
    for arr in image.iter("DataArray"):
        if arr.get("type") != "Float32" or arr.get("format") != "appended":
            raise InputError(f"read_vti reads raw appended Float32 arrays only, got {arr.attrib}")
        pos = underscore + int(arr.get("offset"))
        n = int(np.frombuffer(raw[pos:pos + 8], "<u8")[0])
        out[arr.get("Name")] = np.frombuffer(raw[pos + 8:pos + 8 + n], "<f4").reshape(nz, ny, nx).copy()
    return out, spacing, origin


def read_npy(path):
    """Read a ``.npy`` export and its ``.json`` sidecar: ``(data, sidecar dict)``."""
    path = Path(path)
    return np.load(path), json.loads(path.with_suffix(".json").read_text())
