"""encsteal: runnable companion to Dziedzic et al., ICML 2022."""

__version__ = "0.1.0"
