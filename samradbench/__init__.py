"""samradbench: zero-shot SAM-family segmentation of radiology volumes, benchmarked under pytest."""

__version__ = "0.1.0"
