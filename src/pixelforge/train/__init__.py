"""One training loop for every model family: data, optimiser, schedule, EMA, checkpoints, logs."""
