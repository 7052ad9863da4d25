"""Docstring fragments shared by several methods (HyperSpy's convention)."""

SHOW_PROGRESSBAR_ARG = """show_progressbar : None or bool
        If True, display a progress bar. If None, the default from HyperSpy's
        preferences is used."""

LAZY_ARG = """lazy : bool, default False
        If True, the data are read lazily (dask): memory stays flat until
        the result is computed."""

ELEMENTS_ARG = """elements : None or list of str
        Chemical symbols, e.g. ``["Se", "S", "Zn"]``. If None, the elements
        in ``metadata.Sample.elements`` are used."""
