"""Sampling from trained runs, provenance marking (watermark + metadata) and verification."""
