"""Doctests of the package's docstring examples (``--doctest-modules``): they
run as a user would type them, without progress bars in the expected output."""

import pytest
from _pytest.doctest import DoctestItem

# the example plugin is installed by tests/test_plugins.py from a copy;
# importing it from here for its doctests would shadow the installed one
collect_ignore = ["tests/external_plugin"]


@pytest.fixture(autouse=True)
def _doctest_without_progressbar(request):
    if not isinstance(request.node, DoctestItem):
        yield
        return
    from hyperspy.defaults_parser import preferences

    old = preferences.General.show_progressbar
    preferences.General.show_progressbar = False
    try:
        yield
    finally:
        preferences.General.show_progressbar = old


def pytest_collection_modifyitems(config, items):
    # etspy is optional (the test extra installs it from Python 3.11 on): without it, the examples of the
    # module that converts to and from it cannot run
    import importlib.util

    if importlib.util.find_spec("etspy") is not None:
        return
    skip = pytest.mark.skip(reason="etspy is not installed (pip install etspy): its conversion examples cannot run")
    for item in items:
        if isinstance(item, DoctestItem) and item.name.startswith("hyperspy_edxtomo.alignment.etspy"):
            item.add_marker(skip)
