#!/usr/bin/env bash
# The embedded default: the whole pipeline on 127.0.0.1 with nothing but the repository (offline):
# serve the bundled site, crawl it, import digits and shapes, curate, audit, split, train a
# text-to-image diffusion model and two judge classifiers, generate, verify, evaluate, report.
# Run it again to resume (finished stages are skipped); DEMO_OUT and DEMO_MINUTES change the defaults.
set -euo pipefail
PF=.venv/bin/pixelforge
OUT=${DEMO_OUT:-demo-out}
ARGS=(--out "$OUT")
if [ -n "${DEMO_MINUTES:-}" ]; then ARGS+=(--minutes "$DEMO_MINUTES"); fi
# Keep every library off the network: the text encoder and all weights ship with the packages.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
$PF demo "${ARGS[@]}"
echo "open $OUT/report.html in a browser (it is one self-contained file)"
