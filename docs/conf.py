project = "hyperspy_edxtomo"
extensions = ["sphinx.ext.autodoc", "numpydoc"]
master_doc = "index"
exclude_patterns = ["_build"]
numpydoc_show_class_members = False
