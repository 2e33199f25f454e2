"""Datasets, the built-in data generator, image decoding and transforms."""

from sppnet.data.decode import ImageDecodeError, load_image

__all__ = ["ImageDecodeError", "load_image"]
