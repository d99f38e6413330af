"""pyfaasd: the umbrella package (CLI, shared logging set-up, version)."""

__version__ = "0.1.0"
