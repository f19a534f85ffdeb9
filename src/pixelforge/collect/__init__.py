"""Collect images from the web: URL lists and crawls, with opt-outs honoured and recorded per sample."""
