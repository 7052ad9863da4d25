"""hyperspy_edxtomo: STEM-EDX tomography of nanocrystals as a HyperSpy extension.

Spectrum-image tilt series in, calibrated 3D element volumes out, following
Han et al., "Deep learning STEM-EDX tomography of nanocrystals", Nature
Machine Intelligence 3, 267 (2021).
"""

from .loading import load_tilt_series
from .reconstruction import list_algorithms
from .signals import (
    EDXTiltSeries,
    ElementMapTiltSeries,
    ElementVolume,
    LazyEDXTiltSeries,
    LazyElementMapTiltSeries,
    LazyElementVolume,
    element_maps_from_array,
    stack_tilts,
    tilt_series_from_array,
    volume_from_array,
)

__version__ = "0.1.0"


def __getattr__(name):
    # datasets pulls in simulation code only when asked for
    if name == "datasets":
        import importlib

        return importlib.import_module(".datasets", __name__)
    if name in ("train_end_to_end", "EndToEndModel"):
        # torch is imported only when the deep methods are used
        from . import deep_reconstruction

        return getattr(deep_reconstruction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EDXTiltSeries",
    "LazyEDXTiltSeries",
    "ElementMapTiltSeries",
    "LazyElementMapTiltSeries",
    "ElementVolume",
    "LazyElementVolume",
    "element_maps_from_array",
    "tilt_series_from_array",
    "volume_from_array",
    "stack_tilts",
    "load_tilt_series",
    "list_algorithms",
    "train_end_to_end",
    "EndToEndModel",
    "datasets",
]
