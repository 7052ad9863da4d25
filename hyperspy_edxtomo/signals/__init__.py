"""The signal classes of hyperspy_edxtomo (registered in hyperspy_extension.yaml)."""

from hyperspy_edxtomo.signals.edx_tilt_series import (
    EDXTiltSeries,
    LazyEDXTiltSeries,
    tilt_series_from_array,
)
from hyperspy_edxtomo.signals.element_maps import (
    ElementMapTiltSeries,
    LazyElementMapTiltSeries,
    element_maps_from_array,
)
from hyperspy_edxtomo.signals.tilts import stack_tilts
from hyperspy_edxtomo.signals.volume import (
    ElementVolume,
    LazyElementVolume,
    volume_from_array,
)

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
]
