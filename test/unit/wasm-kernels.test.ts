// The kernels meta/wasm-kernels.ts gives the wasm backend, against the cpu backend's own kernels,
// and Conv4's first- and second-order meta-gradients on wasm against cpu; no tensor leaks.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { registerHigherOrderGradients } from "../../meta/gradients.js";
import { conv4 } from "../../meta/models.js";
import { Rng } from "../../meta/rng.js";
import { runnerFor } from "../../meta/run-config.js";
import { registerWasmKernels } from "../../meta/wasm-kernels.js";
import type { Task } from "../../meta/tasks/types.js";

before(async () => {
  await tf.setBackend("wasm");
  registerWasmKernels();
  registerHigherOrderGradients();
});
after(async () => {
  await tf.setBackend("cpu");
});

const random = (seed: number, n: number) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
};

/** Run the Conv2DBackpropFilter kernel of `backend` on the given arrays. */
async function filterGrad(backend: string, x: Float32Array, xShape: number[], dy: Float32Array, dyShape: number[], attrs: Record<string, unknown>): Promise<Float32Array> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const xt = tf.tensor4d(x, xShape as [number, number, number, number]);
  const dyt = tf.tensor4d(dy, dyShape as [number, number, number, number]);
  const out = tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: xt, dy: dyt }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  const v = out.dataSync() as Float32Array;
  tf.dispose([xt, dyt, out]);
  assert.equal(tf.memory().numTensors, before, `${backend}: no tensor left behind`);
  return v.slice();
}

test("wasm Conv2DBackpropFilter equals the cpu kernel for strides 1 and 2, same/valid padding, several channel counts", async () => {
  // Each output is a sum of N = batch·outH·outW products of unit normals (N ≤ 2·8·8 = 128): its size
  // is ~√N ≈ 11 and float32 rounding of two summation orders differs by ~N·2⁻²⁴·11 ≈ 1e-4 at most.
  for (const [stride, pad, ci, co, h] of [[1, "same", 1, 3, 8], [2, "same", 4, 2, 8], [1, "valid", 3, 5, 7], [2, "valid", 2, 4, 9], [2, "same", 3, 3, 7]] as const) {
    const x = random(10 + h + ci, 2 * h * h * ci);
    const xShape = [2, h, h, ci];
    const info = tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], [3, 3, ci, co], stride, 1, pad);
    const dyShape = [2, info.outHeight, info.outWidth, co];
    const dy = random(20 + co, dyShape.reduce((a, b) => a * b, 1));
    const attrs = { strides: [stride, stride], pad, dataFormat: "NHWC", dimRoundingMode: undefined, filterShape: [3, 3, ci, co] };
    const a = await filterGrad("cpu", x, xShape, dy, dyShape, attrs);
    const b = await filterGrad("wasm", x, xShape, dy, dyShape, attrs);
    assert.equal(a.length, b.length);
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-4 * Math.max(1, Math.abs(v)), `stride ${stride} ${pad} ${ci}→${co} [${i}]: cpu ${v} vs wasm ${b[i]}`));
  }
  await tf.setBackend("wasm");
});

function task(seed: number): Task {
  const rng = new Rng(seed);
  const set = () => ({ x: Float32Array.from({ length: 6 * 16 * 16 }, () => rng.next()), xShape: [6, 16, 16, 1], y: Int32Array.from({ length: 6 }, (_, i) => i % 3) });
  return { support: set(), query: set(), seed };
}

/** The summed contribution of one task for `algorithm` on `backend`, as plain arrays. */
async function contribution(backend: string, algorithm: string, downsample: "stride" | "maxpool"): Promise<Record<string, Float32Array>> {
  await tf.setBackend(backend);
  const model = conv4({ inputShape: [16, 16, 1], outputs: 3, filters: 4, downsample });
  const theta = model.init(5);
  const before = tf.memory().numTensors;
  const r = await runnerFor({ algorithm, model, kind: "classification", innerSteps: 1, innerLr: 0.1 }).runShard(theta, [task(3)]);
  const out = Object.fromEntries(Object.entries(r.sum).map(([k, t]) => [k, (t.dataSync() as Float32Array).slice()]));
  tf.dispose([...Object.values(r.sum)]);
  assert.equal(tf.memory().numTensors, before, `${backend} ${algorithm}: no tensor left behind`);
  tf.dispose(Object.values(theta));
  return out;
}

test("Conv4 trains on wasm: first- and second-order meta-gradients equal the cpu backend's", async () => {
  // The same float32 math in other summation orders (wasm's XNNPACK convolutions, the im2col filter
  // gradient): gradients of order 1e-2 … 1 agree to ~1e-5 absolute; 1e-3 relative (floor 1e-3) is
  // far from any missing term, which would show as an O(1) relative difference.
  for (const downsample of ["stride", "maxpool"] as const) {
    for (const algorithm of ["fomaml", "maml"]) {
      const a = await contribution("cpu", algorithm, downsample);
      const b = await contribution("wasm", algorithm, downsample);
      // Conv biases feed batch norm, which subtracts the batch mean: their gradient is exactly 0 in
      // exact arithmetic, and each backend returns the float32 residue of summing the N = 6·16·16 =
      // 1536 entries of the batch-norm input gradient, ≲ N·2⁻²⁴·max|entry| ≈ 1e-4·max|entry| (seen:
      // up to 3e-6). The residues differ freely between backends, so those entries get a 1e-5
      // absolute floor — still far below a real gradient there, which would be O(1e-2…1).
      for (const k of Object.keys(a)) {
        const floor = /^conv\d\/bias$/.test(k) ? 1e-5 : 1e-6;
        a[k]!.forEach((v, i) => assert.ok(Math.abs(v - b[k]![i]!) <= 1e-3 * Math.max(1e-3, Math.abs(v)) + floor, `${downsample} ${algorithm} ${k}[${i}]: cpu ${v} vs wasm ${b[k]![i]}`));
      }
    }
  }
  await tf.setBackend("wasm");
});

test("a kernel a backend lacks fails the activity at once (KernelNotAvailable, never retried), saying what to do", async () => {
  const { toActivityFailure } = await import("../../activities/errors.js");
  const { ApplicationFailure } = await import("@temporalio/activity");
  const { NON_RETRYABLE_ERROR_TYPES } = await import("../../contracts/errors.js");
  const f = toActivityFailure(new Error("Kernel 'FancyOp' not registered for backend 'wasm'"));
  assert.ok(f instanceof ApplicationFailure);
  assert.equal(f.type, "KernelNotAvailable");
  assert.equal(f.nonRetryable, true);
  assert.match(f.message, /the wasm backend of TensorFlow.js has no 'FancyOp' kernel.*npm run setup:native/);
  assert.ok(NON_RETRYABLE_ERROR_TYPES.includes("KernelNotAvailable"), "the workflow's retry policy never retries it either");
});
