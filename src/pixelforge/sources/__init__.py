"""Importers of curated datasets; IMPORTERS maps each `pixelforge import KIND` to its Source class."""
