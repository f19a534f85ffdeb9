"""Offline preparation of images: resize, denoise, augment (the same SPEC strings the trainer uses)."""
