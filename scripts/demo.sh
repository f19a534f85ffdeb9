#!/usr/bin/env bash
# The embedded default, as far as it exists today: import the synthetic shapes set and the
# bundled handwritten digits, describe both, and query one with DuckDB. Runs offline.
set -euo pipefail
PF=.venv/bin/pixelforge
OUT=${DEMO_OUT:-demo-out}

echo "== import shapes and digits into $OUT/"
$PF import shapes --n 600 --size 32 --seed 0 --out "$OUT/shapes" --overwrite
$PF import digits --size 16 --out "$OUT/digits" --overwrite

echo "== pixelforge info"
$PF info "$OUT/shapes"
$PF info "$OUT/digits"

echo "== pixelforge query: shapes per colour, and the captions of three red circles"
$PF query "$OUT/shapes" "SELECT colour, count(*) AS n FROM samples GROUP BY colour ORDER BY colour"
$PF query "$OUT/shapes" "SELECT key, caption FROM samples WHERE shape = 'circle' AND colour = 'red' LIMIT 3"

echo "== export digits as an ImageNet-style folder tree"
$PF export "$OUT/digits" --format imagefolder --out "$OUT/digits-imagefolder" --overwrite
echo "demo done: datasets in $OUT/"
