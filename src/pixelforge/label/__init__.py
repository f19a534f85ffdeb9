"""Labelling and human judgement: the web app, annotations history, suggestions, label-error finding."""
