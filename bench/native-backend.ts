// Side-by-side micro-benchmark of the TensorFlow.js backends available in this process:
// `tensorflow` (native libtensorflow via @tensorflow/tfjs-node, see `npm run setup:native`),
// `wasm` (@tensorflow/tfjs-backend-wasm) and `cpu` (plain JS).
//
//   node --import tsx bench/native-backend.ts
//
// Env: BENCH_BACKENDS=tensorflow,wasm,cpu  (subset/order), BENCH_QUICK=1 (fewer repetitions),
//      BENCH_JSON=path (also write the results as JSON).
// Workloads (all float32, median wall time; each includes reading the results back to JS):
//   matmul  1024x1024 · 1024x1024                             -> GFLOP/s (2·n³ flops)
//   mlp     784-256-128-64-64-5, ReLU, softmax-CE, batch 80, forward+backward (all weight grads)
//   conv    Conv2D 64 filters 3x3 'same' on [5,28,28,1] -> ReLU -> global mean -> dense 64-5,
//           softmax-CE, forward+backward (all weight grads); also forward only, since the wasm
//           backend has no Conv2DBackpropFilter kernel and cannot train it
// Also cross-checks that every backend gives the same MLP/conv loss and gradients as `cpu`.
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { writeFileSync } from "node:fs";
import os from "node:os";

process.env.TF_CPP_MIN_LOG_LEVEL ??= "2"; // silence libtensorflow's oneDNN/CPU-feature banners

const QUICK = process.env.BENCH_QUICK === "1";
const wanted = (process.env.BENCH_BACKENDS ?? "tensorflow,wasm,cpu").split(",").map((s) => s.trim()).filter(Boolean);

let nativeError: string | undefined;
if (wanted.includes("tensorflow")) {
  try {
    // Not a dependency (installed by scripts/setup-native.sh), hence the untyped specifier.
    await import("@tensorflow/tfjs-node" as string);
  } catch (e) {
    nativeError = (e instanceof Error ? e.message : String(e)).split("\n")[0];
  }
}

// ---- deterministic data (same bytes on every backend) --------------------------------------
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}
function randArray(n: number, seed: number, scale: number): Float32Array {
  const r = lcg(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}
function oneHot(batch: number, classes: number, seed: number): Float32Array {
  const r = lcg(seed);
  const a = new Float32Array(batch * classes);
  for (let i = 0; i < batch; i++) a[i * classes + Math.floor(r() * classes)] = 1;
  return a;
}

const MLP_SIZES = [784, 256, 128, 64, 64, 5];
const BATCH = 80;
const MM_N = 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timeIt(reps: number, warmup: number, fn: () => Promise<void>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times;
}

interface Result {
  backend: string;
  matmulGflops?: number;
  matmulMs?: number;
  mlpMs?: number;
  convMs?: number;
  convFwdMs?: number;
  mlpLoss?: number;
  convLoss?: number;
  mlpGradMaxAbsDiffVsCpu?: number;
  convGradMaxAbsDiffVsCpu?: number;
  note?: string;
}

interface GradSnapshot {
  loss: number;
  grads: Float32Array[];
}

async function benchMatmul(backend: string): Promise<{ gflops: number; ms: number }> {
  const a = tf.tensor2d(randArray(MM_N * MM_N, 1, 1), [MM_N, MM_N]);
  const b = tf.tensor2d(randArray(MM_N * MM_N, 2, 1), [MM_N, MM_N]);
  const reps = backend === "cpu" ? (QUICK ? 2 : 3) : QUICK ? 5 : 15;
  const times = await timeIt(reps, backend === "cpu" ? 1 : 3, async () => {
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
  });
  a.dispose();
  b.dispose();
  const ms = median(times);
  return { gflops: (2 * MM_N ** 3) / (ms / 1000) / 1e9, ms };
}

function makeMlp(): { weights: tf.Variable[]; x: tf.Tensor2D; y: tf.Tensor2D } {
  const weights: tf.Variable[] = [];
  for (let l = 0; l + 1 < MLP_SIZES.length; l++) {
    const fanIn = MLP_SIZES[l]!;
    const fanOut = MLP_SIZES[l + 1]!;
    weights.push(tf.variable(tf.tensor2d(randArray(fanIn * fanOut, 10 + l, Math.sqrt(6 / fanIn)), [fanIn, fanOut]), true, `mlp_w${l}`));
    weights.push(tf.variable(tf.tensor1d(randArray(fanOut, 20 + l, 0.01)), true, `mlp_b${l}`));
  }
  const x = tf.tensor2d(randArray(BATCH * MLP_SIZES[0]!, 3, 1), [BATCH, MLP_SIZES[0]!]);
  const y = tf.tensor2d(oneHot(BATCH, MLP_SIZES.at(-1)!, 4), [BATCH, MLP_SIZES.at(-1)!]);
  return { weights, x, y };
}

function mlpLoss(weights: tf.Variable[], x: tf.Tensor2D, y: tf.Tensor2D): tf.Scalar {
  let h: tf.Tensor2D = x;
  const layers = weights.length / 2;
  for (let l = 0; l < layers; l++) {
    h = tf.add(tf.matMul(h, weights[2 * l] as tf.Tensor2D), weights[2 * l + 1]!);
    if (l + 1 < layers) h = tf.relu(h);
  }
  return tf.losses.softmaxCrossEntropy(y, h) as tf.Scalar;
}

function makeConv(): { weights: tf.Variable[]; x: tf.Tensor4D; y: tf.Tensor2D } {
  const weights = [
    tf.variable(tf.tensor4d(randArray(3 * 3 * 1 * 64, 30, Math.sqrt(6 / 9)), [3, 3, 1, 64]), true, "conv_f"),
    tf.variable(tf.tensor1d(randArray(64, 31, 0.01)), true, "conv_b"),
    tf.variable(tf.tensor2d(randArray(64 * 5, 32, Math.sqrt(6 / 64)), [64, 5]), true, "conv_dw"),
    tf.variable(tf.tensor1d(randArray(5, 33, 0.01)), true, "conv_db"),
  ];
  const x = tf.tensor4d(randArray(5 * 28 * 28, 5, 1), [5, 28, 28, 1]);
  const y = tf.tensor2d(oneHot(5, 5, 6), [5, 5]);
  return { weights, x, y };
}

function convLoss(weights: tf.Variable[], x: tf.Tensor4D, y: tf.Tensor2D): tf.Scalar {
  const [f, b, dw, db] = weights as [tf.Variable, tf.Variable, tf.Variable, tf.Variable];
  const h = tf.relu(tf.add(tf.conv2d(x, f as tf.Tensor4D, 1, "same"), b)); // [5,28,28,64]
  const pooled = tf.mean(h, [1, 2]) as tf.Tensor2D; // [5,64]
  const logits = tf.add(tf.matMul(pooled, dw as tf.Tensor2D), db);
  return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
}

/** One forward+backward pass; reads the loss and every gradient back (forces completion). */
async function step(weights: tf.Variable[], lossFn: () => tf.Scalar): Promise<GradSnapshot> {
  const { value, grads } = tf.variableGrads(lossFn, weights);
  const gs = weights.map((w) => grads[w.name]!);
  const datas = await Promise.all(gs.map((g) => g.data() as Promise<Float32Array>));
  const loss = (await value.data())[0]!;
  value.dispose();
  tf.dispose(gs);
  return { loss, grads: datas };
}

async function benchTraining(
  backend: string,
  make: () => { weights: tf.Variable[]; x: tf.Tensor; y: tf.Tensor2D },
  lossFn: (w: tf.Variable[], x: never, y: tf.Tensor2D) => tf.Scalar,
  reps: number,
): Promise<{ ms: number; snap: GradSnapshot }> {
  const { weights, x, y } = make();
  const f = () => lossFn(weights, x as never, y);
  const snap = await step(weights, f);
  const times = await timeIt(reps, backend === "cpu" ? 1 : 3, async () => {
    await step(weights, f);
  });
  tf.dispose([...weights, x, y]);
  return { ms: median(times), snap };
}

/** Conv2D workload forward only (loss value read back), for backends lacking the conv gradients. */
async function benchConvForward(backend: string, reps: number): Promise<number> {
  const { weights, x, y } = makeConv();
  const times = await timeIt(reps, backend === "cpu" ? 1 : 3, async () => {
    const l = tf.tidy(() => convLoss(weights, x, y));
    await l.data();
    l.dispose();
  });
  tf.dispose([...weights, x, y]);
  return median(times);
}

function maxAbsDiff(a: GradSnapshot, b: GradSnapshot): number {
  let m = Math.abs(a.loss - b.loss);
  a.grads.forEach((g, i) => {
    const h = b.grads[i]!;
    for (let j = 0; j < g.length; j++) m = Math.max(m, Math.abs(g[j]! - h[j]!));
  });
  return m;
}

// ---- run ------------------------------------------------------------------------------------
console.log(
  `node ${process.version}, tfjs ${tf.version_core}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? "?"}` +
    `${QUICK ? ", QUICK" : ""}`,
);
const results: Result[] = [];
const reference: { mlp?: GradSnapshot; conv?: GradSnapshot } = {};
// Run cpu first when present so the others can be compared against it.
const order = [...wanted].sort((a, b) => Number(b === "cpu") - Number(a === "cpu"));
const snaps = new Map<string, { mlp: GradSnapshot | undefined; conv: GradSnapshot | undefined }>();

for (const backend of order) {
  if (backend === "tensorflow" && nativeError !== undefined) {
    results.push({ backend, note: `not available: ${nativeError} (run npm run setup:native)` });
    continue;
  }
  let ok = false;
  try {
    ok = await tf.setBackend(backend);
    await tf.ready();
  } catch (e) {
    results.push({ backend, note: `setBackend failed: ${e instanceof Error ? e.message : String(e)}` });
    continue;
  }
  if (!ok) {
    results.push({ backend, note: "setBackend returned false" });
    continue;
  }
  let extra = "";
  if (backend === "wasm") {
    extra = ` (simd=${await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT")}, threads=${await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT")})`;
  }
  process.stdout.write(`[${backend}${extra}] matmul… `);
  const r: Result = { backend };
  const notes: string[] = [];
  const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      tf.disposeVariables();
      notes.push(`${what}: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
      return undefined;
    }
  };
  const mm = await attempt("matmul", () => benchMatmul(backend));
  process.stdout.write(`mlp… `);
  const trainReps = backend === "cpu" ? (QUICK ? 5 : 15) : QUICK ? 10 : 40;
  const mlp = await attempt("mlp", () => benchTraining(backend, makeMlp, mlpLoss, trainReps));
  process.stdout.write(`conv… `);
  const conv = await attempt("conv", () => benchTraining(backend, makeConv, convLoss, trainReps));
  const convFwd = await attempt("conv forward", () => benchConvForward(backend, trainReps));
  console.log("done");
  r.matmulGflops = mm?.gflops;
  r.matmulMs = mm?.ms;
  r.mlpMs = mlp?.ms;
  r.mlpLoss = mlp?.snap.loss;
  r.convMs = conv?.ms;
  r.convLoss = conv?.snap.loss;
  r.convFwdMs = convFwd;
  if (notes.length) r.note = notes.join("; ");
  snaps.set(backend, { mlp: mlp?.snap, conv: conv?.snap });
  if (backend === "cpu") {
    reference.mlp = mlp?.snap;
    reference.conv = conv?.snap;
  }
  results.push(r);
}
for (const r of results) {
  const s = snaps.get(r.backend);
  if (s?.mlp && reference.mlp) r.mlpGradMaxAbsDiffVsCpu = maxAbsDiff(s.mlp, reference.mlp);
  if (s?.conv && reference.conv) r.convGradMaxAbsDiffVsCpu = maxAbsDiff(s.conv, reference.conv);
}
// Present in the requested order.
results.sort((a, b) => wanted.indexOf(a.backend) - wanted.indexOf(b.backend));

const fmt = (v: number | undefined, d: number) => (v === undefined ? "-" : v.toFixed(d));
console.log("");
console.log("backend     matmul 1024² GFLOP/s (ms)   MLP fwd+bwd b=80 ms   Conv2D fwd+bwd ms   Conv2D fwd ms   max|Δ| vs cpu (mlp / conv)");
const diff = (v: number | undefined) => (v === undefined ? "-" : v.toExponential(1));
for (const r of results) {
  if (r.matmulMs === undefined && r.mlpMs === undefined && r.convMs === undefined) {
    console.log(`${r.backend.padEnd(11)} ${r.note ?? "no result"}`);
    continue;
  }
  console.log(
    `${r.backend.padEnd(11)} ${`${fmt(r.matmulGflops, 1)} (${fmt(r.matmulMs, 1)})`.padEnd(27)} ` +
      `${fmt(r.mlpMs, 2).padEnd(21)} ${fmt(r.convMs, 2).padEnd(19)} ${fmt(r.convFwdMs, 2).padEnd(15)} ` +
      `${diff(r.mlpGradMaxAbsDiffVsCpu)} / ${diff(r.convGradMaxAbsDiffVsCpu)}`,
  );
}
const withNotes = results.filter((r) => r.note && (r.matmulMs !== undefined || r.mlpMs !== undefined || r.convMs !== undefined));
for (const r of withNotes) console.log(`note [${r.backend}]: ${r.note}`);
if (process.env.BENCH_JSON) {
  writeFileSync(process.env.BENCH_JSON, JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
  console.log(`\nwrote ${process.env.BENCH_JSON}`);
}
