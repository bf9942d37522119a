"""rmt: an experiment runner for the Recurrent Memory Transformer."""

__version__ = "0.1.0"
