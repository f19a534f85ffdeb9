"""pixelforge: the data behind image models, with every sample's origin kept."""

__version__ = "0.1.0"
