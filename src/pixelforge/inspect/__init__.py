"""Looking into a finished dataset from the command line: info, query and export (over pixelforge.store)."""
