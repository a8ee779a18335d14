// Parameter arithmetic, the checksummed byte format, outer optimizers and their state round trip.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  CorruptBlobError, crc32, deserializeParams, dispose, interpolate, serializeParams, sumInOrder, type Params,
} from "../../meta/params.js";
import { adam, deserializeState, serializeState } from "../../meta/optimizers.js";
import { reptileOuter, reptileStepSize } from "../../meta/algorithms/reptile.js";
import { meanCI } from "../../meta/evaluate.js";
import { Rng, deriveSeed } from "../../meta/rng.js";
import { useCpu, values } from "../helpers/tf.js";

before(useCpu);

const p = (w: number[], b: number[]): Params => ({ w: tf.tensor2d(w, [2, 2]), b: tf.tensor1d(b) });

test("crc32 matches the standard check value", () => {
  // The CRC-32 of ASCII "123456789" is 0xCBF43926 (the catalogue's check value).
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

test("params round-trip through bytes exactly, with meta", () => {
  const a = p([1.5, -2, 3.25, 1e-30], [0.1, NaN]);
  const bytes = serializeParams(a, { iteration: 7 });
  const { params, meta } = deserializeParams(bytes);
  assert.deepEqual(Object.keys(params), ["w", "b"], "name order is preserved");
  assert.deepEqual(values(params), values(a));
  assert.deepEqual(meta, { iteration: 7 });
  dispose(a, params);
});

test("a flipped bit or a truncated blob is rejected as corrupt", () => {
  const a = p([1, 2, 3, 4], [5, 6]);
  const bytes = serializeParams(a);
  const flipped = bytes.slice();
  flipped[bytes.length - 9]! ^= 0x01;
  assert.throws(() => deserializeParams(flipped), CorruptBlobError);
  assert.throws(() => deserializeParams(bytes.slice(0, bytes.length - 4)), CorruptBlobError);
  assert.throws(() => deserializeParams(new Uint8Array([1, 2, 3])), /bad magic/);
  dispose(a);
});

test("sumInOrder is a left fold and interpolate moves a fraction of the way", () => {
  const a = p([1, 1, 1, 1], [0, 0]);
  const b = p([2, 2, 2, 2], [1, 1]);
  const c = p([4, 4, 4, 4], [2, 2]);
  const s = sumInOrder([a, b, c]);
  assert.deepEqual(Array.from(s.w!.dataSync()), [7, 7, 7, 7]);
  const half = interpolate(a, c, 0.25); // 1 + 0.25·(4 − 1) = 1.75
  assert.deepEqual(Array.from(half.w!.dataSync()), [1.75, 1.75, 1.75, 1.75]);
  dispose(a, b, c, s, half);
});

test("Adam's first step moves every parameter by lr against the gradient's sign", () => {
  // At t = 1: m̂ = g, v̂ = g², so the step is lr·g/(|g| + ε) ≈ lr·sign(g) for |g| ≫ ε.
  const opt = adam();
  const theta = p([0, 0, 0, 0], [0, 0]);
  const sum = p([2, -4, 6, -8], [0.5, -0.5]); // summed over count = 2 tasks: mean halves it
  const st = opt.initialState(theta);
  const { params, state } = opt.apply(theta, sum, 2, st, { metaLr: 0.01 });
  const w = Array.from(params.w!.dataSync());
  [-0.01, 0.01, -0.01, 0.01].forEach((x, i) => assert.ok(Math.abs(w[i]! - x) < 1e-6, `w[${i}] = ${w[i]}`));
  assert.equal(state.step, 1);
  // State round-trips through bytes and continues identically.
  const restored = deserializeState(serializeState(state));
  assert.deepEqual(restored, state);
  const a = opt.apply(params, sum, 2, state, { metaLr: 0.01 });
  const b = opt.apply(params, sum, 2, restored, { metaLr: 0.01 });
  assert.deepEqual(values(a.params), values(b.params));
  dispose(theta, sum, params, a.params, b.params);
});

test("Reptile's outer step: θ + ε·mean(Δ), ε annealed linearly to metaLrFinal", () => {
  const o = { anneal: true, metaLrFinal: 0 };
  assert.deepEqual([0, 1, 2, 3, 4].map((t) => reptileStepSize(1, o, t, 4)), [1, 0.75, 0.5, 0.25, 0]);
  assert.equal(reptileStepSize(1, { ...o, anneal: false }, 3, 4), 1);
  // ε_t = ε₀(1 − t/T) + ε_final·t/T: at t = 2 of 4 with ε_final 0.2, 0.5 + 0.1 = 0.6.
  assert.ok(Math.abs(reptileStepSize(1, { anneal: true, metaLrFinal: 0.2 }, 2, 4) - 0.6) < 1e-12);
  const opt = reptileOuter({ ...o, innerOptimizer: "sgd", adamBeta1: 0, adamBeta2: 0.999, transductive: true }, 4);
  const theta = p([1, 1, 1, 1], [0, 0]);
  const deltaSum = p([2, 2, 2, 2], [4, 4]); // mean over 2 tasks: [1, …], [2, 2]
  const st = { kind: "reptile" as const, step: 1 }; // ε = 0.75
  const { params, state } = opt.apply(theta, deltaSum, 2, st, { metaLr: 1 });
  assert.deepEqual(Array.from(params.w!.dataSync()), [1.75, 1.75, 1.75, 1.75]);
  assert.deepEqual(Array.from(params.b!.dataSync()), [1.5, 1.5]);
  assert.deepEqual(deserializeState(serializeState(state)), { kind: "reptile", step: 2 });
  dispose(theta, deltaSum, params);
});

test("meanCI: mean and 1.96·s/√n", () => {
  // xs = [1, 2, 3, 4]: mean 2.5, sample variance 5/3, s = 1.2909944, ci = 1.96·1.2909944/2 = 1.2651745
  const r = meanCI([1, 2, 3, 4]);
  assert.equal(r.mean, 2.5);
  assert.ok(Math.abs(r.ci95 - 1.2651745) < 1e-6);
  assert.equal(r.n, 4);
});

test("seeded RNG: reproducible, in range, and derived seeds differ by every part", () => {
  const a = new Rng(5);
  const b = new Rng(5);
  const xs = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b.next()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
  const seeds = new Set([deriveSeed(1, 2, 3, 4), deriveSeed(1, 2, 3, 5), deriveSeed(1, 2, 4, 4), deriveSeed(2, 2, 3, 4), deriveSeed(1, 3, 3, 4)]);
  assert.equal(seeds.size, 5);
  const s = new Rng(9).sample(10, 10);
  assert.deepEqual([...s].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.throws(() => new Rng(-1), RangeError);
});
