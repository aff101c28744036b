"""speechkit: speech and audio training on PyTorch Lightning and Lhotse."""

__version__ = "0.1.0"
