"""Built-in algorithm plugins of hyperspy_edxtomo, installed as ``hyperspy_edxtomo_plugins``."""
