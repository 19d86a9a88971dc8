"""The version of poccheck, in a module of its own so that any layer can read it without importing the package's
pipeline functions."""

__version__ = "0.1.0"
