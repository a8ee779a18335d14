// Test helpers: a fixed backend, finite differences, and leak checks.
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../meta/rng.js";
import type { Params } from "../../meta/params.js";
import { mlp, type Model } from "../../meta/models.js";

/** Unit tests run on the pure-JS `cpu` backend: available everywhere, and deterministic. */
export async function useCpu(): Promise<void> {
  await tf.setBackend("cpu");
  await tf.ready();
}

/** A random direction with unit L2 norm over all parameters, from a seed. */
export function randomDirection(p: Params, seed: number): Params {
  const rng = new Rng(seed);
  const raw: Record<string, Float32Array> = {};
  let norm2 = 0;
  for (const k of Object.keys(p)) {
    const d = new Float32Array(p[k]!.size);
    for (let i = 0; i < d.length; i++) {
      d[i] = rng.normal();
      norm2 += d[i]! * d[i]!;
    }
    raw[k] = d;
  }
  const s = 1 / Math.sqrt(norm2);
  const out: Params = {};
  for (const k of Object.keys(p)) out[k] = tf.tensor(raw[k]!.map((x) => x * s), p[k]!.shape);
  return out;
}

/** <a, b> over all parameters, accumulated in float64. */
export function dot(a: Params, b: Params): number {
  let s = 0;
  for (const k of Object.keys(a)) {
    const x = a[k]!.dataSync();
    const y = b[k]!.dataSync();
    for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
  }
  return s;
}

/** θ + s·v as new tensors. */
export function shifted(p: Params, v: Params, s: number): Params {
  const out: Params = {};
  for (const k of Object.keys(p)) out[k] = tf.tidy(() => tf.add(p[k]!, tf.mul(v[k]!, s)));
  return out;
}

/** Copy parameter values out as plain arrays. */
export function values(p: Params): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const k of Object.keys(p)) out[k] = (p[k]!.dataSync() as Float32Array).slice();
  return out;
}

/** Parameters from plain arrays and shapes of a template. */
export function fromValues(v: Record<string, Float32Array | number[]>, shapes: Record<string, number[]>): Params {
  const out: Params = {};
  for (const k of Object.keys(v)) out[k] = tf.tensor(Array.from(v[k]!), shapes[k]!);
  return out;
}

/** A linear 2-d embedding set to the identity, so embeddings are the inputs themselves (metric learners' hand examples). */
export const identityEmbedding = (): { model: Model; params: Params } => ({
  model: mlp({ sizes: [2, 2] }),
  params: { "dense0/kernel": tf.tensor2d([[1, 0], [0, 1]]), "dense0/bias": tf.tensor1d([0, 0]) },
});
