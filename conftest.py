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
