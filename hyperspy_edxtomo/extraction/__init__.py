"""Stage 1: element maps from spectrum images (exspy's X-ray line windows), background handling."""

from hyperspy_edxtomo.extraction.background import subtract_background
from hyperspy_edxtomo.extraction.windows import get_element_maps

__all__ = ["get_element_maps", "subtract_background"]
