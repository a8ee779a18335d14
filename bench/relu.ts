// ReLU's backward as one kernel (meta/relu.ts: TensorFlow's ReluGrad on tfjs-node) against the
// formula dy·cast(x > 0) (three kernels), and with the mask inputs of ReLU's and max-pool's
// backward detached (meta/gradients.ts) or not, first as one op — relu forward and backward, and the
// backward's own gradient as MAML's outer pass takes it — on the Conv4 and MLP activations'
// shapes, then as whole shards of bench/cases.ts learners, the three alternated shard by shard in
// one process. Records bench/results/relu-<case>[-batched][-<tag>].json.
//   node --import tsx bench/relu.ts --backend tfjs-node [--case omniglot-conv4]
//        [--algorithms maml,fomaml,reptile,meta-sgd] [--batched false] [--rounds 5] [--tag T]
import * as tf from "@tensorflow/tfjs";
import { registerHigherOrderGradients, undetachedMaskGradients } from "../meta/gradients.js";
import { reluFormulaGradient } from "../meta/relu.js";
import { alternateShards, benchCase, type BenchVariant } from "./cases.js";
import { arg, log, machine, median, numArg, opMicros, record, setupBackend } from "./common.js";

const caseId = arg("case", "omniglot-conv4");
const algorithms = arg("algorithms", "maml,fomaml,reptile,meta-sgd").split(",");
const batched = arg("batched", "false") === "true";
const rounds = numArg("rounds", 5);
/** Appended to the results file name (`--tag detached` → relu-<case>-detached.json). */
const tag = arg("tag", "");

await setupBackend();

const undetached = () => undetachedMaskGradients.forEach((g) => tf.registerGradient(g));
const VARIANTS: BenchVariant[] = [
  { name: "formula", apply: () => { undetached(); tf.registerGradient(reluFormulaGradient); } },
  { name: "ReluGrad kernel", apply: undetached },
  { name: "kernel, masks detached (default)", apply: registerHigherOrderGradients },
];

// ---- one op: ∂/∂x of Σ w·relu(x), and the gradient of that through dy (second order) ----
const ops: Record<string, Record<string, number>> = {};
log(`relu backward (and its gradient through dy), µs a call (median of 3 × 100): ${VARIANTS.map((v) => v.name).join(" / ")}`);
for (const shape of [[5, 28, 28, 64], [75, 28, 28, 64], [5, 14, 14, 64], [32, 5, 256]]) {
  const x = tf.randomNormal(shape);
  const w = tf.randomNormal(shape);
  const first = () => tf.tidy(() => tf.grads((a: tf.Tensor) => tf.sum(tf.mul(tf.relu(a), w)))([x]));
  // The backward differentiated once more through its upstream: MAML's outer pass over an inner step.
  const second = () => tf.tidy(() => tf.grads((u: tf.Tensor) => tf.sum(tf.mul(tf.grads((a: tf.Tensor) => tf.sum(tf.mul(tf.relu(a), u)))([x])[0]!, w)))([w]));
  const line: Record<string, number> = {};
  for (const [label, f] of [["first", first], ["second", second]] as const) {
    const t = VARIANTS.map(() => [] as number[]);
    for (let rep = 0; rep < 3; rep++) for (const [i, v] of VARIANTS.entries()) { v.apply(); t[i]!.push(opMicros(f)); }
    for (const [i, v] of VARIANTS.entries()) line[`${label}: ${v.name}`] = median(t[i]!);
  }
  ops[`[${shape}]`] = line;
  console.log(`  [${shape}]: ` + Object.entries(line).map(([k, us]) => `${k} ${us.toFixed(0)}`).join(", "));
  tf.dispose([x, w]);
}

const c = benchCase(caseId, algorithms);
log(`${caseId}, shards of ${c.shard} ${batched ? "task-batched" : "one task at a time"}, ms a shard (median of ${rounds}, alternated)`);
const shards = await alternateShards(c, algorithms, VARIANTS, { rounds, batched });
registerHigherOrderGradients();
record(`relu-${caseId}${batched ? "-batched" : ""}${tag ? `-${tag}` : ""}`, { machine: machine(), date: new Date().toISOString(), rounds, ops, shards });
log("done");
