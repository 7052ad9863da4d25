import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "hyperspy_edxtomo"
extensions = ["sphinx.ext.autodoc", "numpydoc", "edxtomo_docs"]
master_doc = "index"
exclude_patterns = ["_build", "_ext"]
# no intersphinx: the build must work offline; cross-references to other
# projects (numpy, hyperspy) are plain text
nitpicky = False
autodoc_member_order = "bysource"
autodoc_mock_imports = []
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# types in "Parameters" are written for readers (e.g. "array-like or dask array"), not as references
numpydoc_xref_param_type = False
html_theme = "alabaster"
