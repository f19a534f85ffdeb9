"""Organise a dataset: embeddings, clusters, outlier and uniqueness scores, similar-image search."""
