// Task-batched batch norm on tfjs-node's backend: TensorFlow's fused kernel with the tasks moved
// beside the channels (meta/batch-norm.ts) against the formula, first as one op, forward and
// backward, on [32, n, C] for a few n (which sets the row threshold), then as whole shards of
// bench/cases.ts learners at three thresholds — formula only, the default, native always —
// alternated shard by shard in one process, so the host's drift hits all three alike.
//   node --import tsx bench/batch-norm.ts --backend tfjs-node [--case omniglot-mlp]
//        [--algorithms maml,fomaml,anil,reptile] [--rounds 7]
import * as tf from "@tensorflow/tfjs";
import { batchNorm, setTaskBatchedNativeMinRows } from "../meta/batch-norm.js";
import { alternateShards, benchCase } from "./cases.js";
import { arg, log, median, numArg, opMicros, setupBackend } from "./common.js";

const caseId = arg("case", "omniglot-mlp");
const algorithms = arg("algorithms", "maml,fomaml,anil,reptile").split(",");
const rounds = numArg("rounds", 7);

await setupBackend();
if (tf.getBackend() !== "tensorflow") throw new Error(`batch norm's fused kernels are tfjs-node's; got backend '${tf.getBackend()}' (run with --backend tfjs-node after npm run setup:native)`);
const DEFAULT_ROWS = setTaskBatchedNativeMinRows(0);
setTaskBatchedNativeMinRows(DEFAULT_ROWS);
const VARIANTS: [string, number][] = [["formula", Infinity], [`native from ${DEFAULT_ROWS} rows (default)`, DEFAULT_ROWS], ["native always", 0]];

// ---- one op: y = BN(x), and ∂Σ y·w/∂(x, γ), µs a call (median of 3 runs of 100) ----
log(`one task-batched batch norm [T, n, C], forward and backward, µs a call (median of 3), native / formula`);
for (const [T, n, C] of [[32, 5, 64], [32, 5, 256], [32, 20, 64], [32, 75, 64], [32, 75, 256]] as const) {
  const x = tf.randomNormal([T, n, C]);
  const g = tf.ones([T, 1, C]);
  const b = tf.zeros([T, 1, C]);
  const w = tf.randomNormal([T, n, C]);
  const f = () => tf.tidy(() => tf.grads((a: tf.Tensor, gg: tf.Tensor) => tf.sum(tf.mul(batchNorm(a, gg, b, [1]), w)))([x, g]));
  const at = (rows: number) => {
    setTaskBatchedNativeMinRows(rows);
    return opMicros(f);
  };
  const native: number[] = [];
  const formula: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    native.push(at(0));
    formula.push(at(Infinity));
  }
  console.log(`  [${T}, ${n}, ${C}]: ${median(native).toFixed(0)} / ${median(formula).toFixed(0)} µs, ${(median(native) / median(formula)).toFixed(2)}×`);
  tf.dispose([x, g, b, w]);
}

// ---- whole shards, the three thresholds alternated ----
const c = benchCase(caseId, algorithms);
log(`${caseId}, task-batched shards of ${c.shard}, ms a shard (median of ${rounds}, alternated)`);
await alternateShards(c, algorithms, VARIANTS.map(([name, rows]) => ({ name, apply: () => setTaskBatchedNativeMinRows(rows) })), { rounds, batched: true });
setTaskBatchedNativeMinRows(DEFAULT_ROWS);
log("done");
