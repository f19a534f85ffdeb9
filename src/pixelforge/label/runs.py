"""`label serve RUN_A RUN_B --task compare --prompts FILE`: a blind comparison of two training runs.

Both runs draw the same prompts from the same seeds with generate's settings (its watermark and metadata
included), each into a dataset in its own run directory named by a hash of those settings, so serving the
same comparison again (or after a kill) reuses what is complete. The compare task then runs on the two
datasets as on any two generations, and `label results` / the report read the first one's annotations.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pixelforge.errors import UsageError

FOLDER = "compare-"  # RUN/compare-<hash>: the run's images of one comparison
N_DEFAULT = 4  # images of each prompt from each run


def refuse_draw_options(prompts_file: str | None, n: int | None, only: str) -> None:
    """--prompts and --n draw two runs' images: a one-line error naming the first given, and where it belongs."""
    for flag, value in (("--prompts", prompts_file), ("--n", n)):
        if value is not None:
            raise UsageError(f"{flag}: only {only}")


def comparison_datasets(run_a: str, run_b: str, prompts_file: str | None, n: int | None, seed: int) -> tuple[str, str]:
    """The two datasets to compare when DIR_A and DIR_B are training runs (generated when missing); datasets
    are returned unchanged. One run and one dataset, runs that do not draw from prompts, or runs without
    --prompts are usage errors, found before anything is drawn."""
    from pixelforge.generate.run import GenerateConfig, generate
    from pixelforge.prompts import read_prompt_texts
    from pixelforge.store import is_dataset
    from pixelforge.train.rundir import RunDir, is_run

    runs = is_run(run_a), is_run(run_b)
    if not any(runs):
        refuse_draw_options(prompts_file, n, "when DIR_A and DIR_B are training runs (their images are drawn)")
        return run_a, run_b
    if not all(runs):
        which = run_b if runs[0] else run_a
        raise UsageError(f"{which} is not a training run: compare two runs, or two generated datasets")
    for run in (run_a, run_b):
        if RunDir(run).config.get("model", {}).get("condition") != "text":
            raise UsageError(f"{run} does not draw from prompts: compare two text-to-image runs")
    if prompts_file is None:
        raise UsageError("two runs to compare: give --prompts FILE for both to draw")
    n = N_DEFAULT if n is None else n
    if n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    gc = GenerateConfig(prompts=read_prompt_texts(prompts_file), n=n, seed=seed)
    # hashed with the settings: both runs and the checkpoint each draws with (a run trained further since
    # draws again), so each run's folder pairs that state of it with that state of the other
    state = {
        side: [str(Path(run).resolve()), (RunDir(run).marker(gc.checkpoint) or {}).get("dir")]
        for side, run in (("a", run_a), ("b", run_b))
    }
    key = json.dumps({**state, **vars(gc)}, sort_keys=True)
    folder = FOLDER + hashlib.sha256(key.encode()).hexdigest()[:12]
    out = []
    for run in (run_a, run_b):
        dest = Path(run) / folder
        if not is_dataset(dest):  # a killed generation leaves an unfinished folder: draw it again
            generate(run, str(dest), gc, overwrite=True)
        out.append(str(dest))
    return out[0], out[1]
