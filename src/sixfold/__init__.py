"""Sixfold: six classic large-scale systems as one Python data platform."""

__version__ = "0.1.0"
