#!/usr/bin/env bash
# The learners side by side on Omniglot 5-way 1-shot (MAML's MLP with batch norm, transductive):
# each preset meta-trains for the same wall-clock budget, one after another, then 600 test tasks.
# About MINUTES × 5 + 10 minutes on 2 cores with the native backend (npm run setup:native).
# Logs go to bench/logs/, results to bench/results/; bench/RESULTS.md quotes them.
#   MINUTES=15 bash bench/omniglot-all.sh [--backend tfjs-node]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/logs
MIN=${MINUTES:-15}
for p in omniglot-5w1s-maml-mlp omniglot-5w1s-fomaml-mlp omniglot-5w1s-reptile-mlp omniglot-5w1s-meta-sgd-mlp omniglot-5w1s-anil-mlp; do
  node --import tsx bench/omniglot.ts --preset "$p" --minutes "$MIN" --eval-steps 0,1,3,5,10 "$@" > "bench/logs/$p.log" 2>&1
done
