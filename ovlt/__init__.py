"""ovlt: an open, notebook-first reproduction of OpenVLThinker-7B."""

__version__ = "0.1.0"
