#!/usr/bin/env bash
# Runs the recorded Omniglot benchmarks one after another (about an hour on 2 cores with the
# native backend; see bench/RESULTS.md). Logs go to bench/logs/, results to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/logs
MIN=${MINUTES:-15}
for a in maml fomaml reptile; do
  node --import tsx bench/omniglot.ts --algorithm "$a" --model mlp --minutes "$MIN" "$@" > "bench/logs/omniglot-$a-mlp.log" 2>&1
done
node --import tsx bench/omniglot.ts --algorithm fomaml --model conv4 --minutes "${CONV4_MINUTES:-8}" --eval-tasks "${CONV4_EVAL_TASKS:-200}" --eval-steps 0,1,3 "$@" > bench/logs/omniglot-fomaml-conv4.log 2>&1
