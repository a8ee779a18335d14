// MetaNet's network (Munkhdalai & Yu 2017, §3.3 and the authors' Chainer code, MetaNetFull.py for
// Omniglot): convLayers × [3×3 conv, no bias, ReLU, 2×2 max-pool], flattened, a hidden dense layer
// with ReLU and an output dense layer, no biases and no batch norm — with the paper's layer
// augmentation: a layer given fast weights W* beside its slow weights W computes σ(hW) + σ(hW*) (σ the
// layer's nonlinearity; the output layer's is the identity, so there hW + hW*). The base learner b is
// this model; meta/algorithms/metanet.ts builds the representation u from the same stack.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import type { Model, ModelSpec } from "../models.js";
import type { Params } from "../params.js";
import { Rng } from "../rng.js";

/** One layer of the stack: its weight's name (under a prefix), kind and shape. */
export interface MetanetLayer {
  /** `conv<l>/kernel`, `dense0/kernel` (the hidden layer) or `dense1/kernel` (the output layer). */
  readonly key: string;
  readonly kind: "conv" | "dense";
  readonly shape: readonly number[];
}

/** Fast weights handed to a forward pass: one set for the whole batch (task-level), or one per example. */
export interface FastWeights {
  /** Layer key → W* of the layer's shape (shared), or of [n, ...shape] (per example). Layers absent here run slow only. */
  weights: Params;
  /** Whether `weights` carry a leading example axis: example i's forward uses row i (the base learner's W*_i). */
  perExample: boolean;
}

/** The layer-augmentable stack, as the metanet learner drives it. */
export interface MetanetStack {
  /** Conv layers, then `dense0` (hidden), then `dense1` (output). */
  readonly layers: readonly MetanetLayer[];
  /** Fresh slow weights named `prefix + layer.key`, N(0, 1/fan_in) (Chainer 1.x's default initialiser, the authors' framework). */
  init(rng: Rng, prefix: string): Params;
  /**
   * The stack on inputs x [n, ...inputShape] with slow weights `p[prefix + key]` and optional fast
   * weights. `upTo: "output"` (default) gives the output layer's result [n, outputs]; `upTo: "hidden"`
   * stops at the hidden layer's augmented pre-activation hW + hW* [n, hidden] (no ReLU: the authors'
   * code reads u's keys there).
   */
  forward(p: Params, prefix: string, x: tf.Tensor, fast?: FastWeights, upTo?: "output" | "hidden"): tf.Tensor2D;
}

/** A model whose forward is the stack with slow weights only, and which carries the stack. */
export interface MetanetModel extends Model {
  readonly metanet: MetanetStack;
}

export interface MetanetNetOptions {
  /** Input shape [H, W, C]. Default [28, 28, 1]. */
  inputShape?: number[];
  outputs: number;
  /** 3×3 conv layers before the dense layers; 0: an MLP on the flattened input. Default 5 (the authors' code). */
  convLayers?: number;
  /** Filters of each conv layer. Default 64. */
  filters?: number;
  /** Units of the hidden dense layer. Default 64. */
  hidden?: number;
}

/** N(0, std) tensor of the given shape from an explicit RNG. */
function normalTensor(rng: Rng, shape: readonly number[], std: number): tf.Tensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
  return tf.tensor(data, [...shape], "float32");
}

/**
 * `t` cut into `n` equal parts along `axis` (or into the given sizes). One part is `t` itself: tfjs's
 * SplitV gradient concatenates its upstream gradients and fails on a split with a single output.
 */
export function splitParts(t: tf.Tensor, n: number | number[], axis: number): tf.Tensor[] {
  return (typeof n === "number" ? n : n.length) === 1 ? [t] : tf.split(t, n, axis);
}

/** One conv per example: row i of h [n, H, W, C] with kernel row i of w [n, 3, 3, C, F] ("same" padding, the code's pad 1). */
function convPerExample(h: tf.Tensor4D, w: tf.Tensor): tf.Tensor4D {
  const n = h.shape[0];
  const hs = splitParts(h, n, 0) as tf.Tensor4D[];
  // Row i as a kernel: a slice and a reshape (not tf.unstack, whose gradient fails the same way for n = 1).
  const ws = hs.map((_, i) => tf.reshape(tf.slice(w, [i], [1]), w.shape.slice(1)) as unknown as tf.Tensor4D);
  return tf.concat(hs.map((hi, i) => tf.relu(tf.conv2d(hi, ws[i]!, 1, "same"))), 0);
}

/** h [n, in] times W* [in, out] (shared) or [n, in, out] (row i for example i). */
function denseFast(h: tf.Tensor2D, w: tf.Tensor, perExample: boolean): tf.Tensor2D {
  if (!perExample) return tf.matMul(h, w as tf.Tensor2D);
  const [n, out] = [h.shape[0], w.shape[2]!];
  return tf.reshape(tf.matMul(tf.expandDims(h, 1) as tf.Tensor3D, w as tf.Tensor3D), [n, out]);
}

/**
 * The stack. Max-pools are "same" (ceil): 28 → 14 → 7 → 4 → 2 → 1, as Chainer's default
 * cover_all pooling gives in the authors' code, so 5 conv layers of 64 leave 64 features.
 */
export function metanetStack(o: MetanetNetOptions): MetanetStack & { inputShape: number[]; outputs: number } {
  const inputShape = o.inputShape ?? [28, 28, 1];
  const convLayers = o.convLayers ?? 5;
  const filters = o.filters ?? 64;
  const hidden = o.hidden ?? 64;
  const [h0, w0, c0] = [inputShape[0]!, inputShape[1] ?? 1, inputShape[2] ?? 1];
  let [h, w] = [h0, w0];
  const layers: MetanetLayer[] = [];
  for (let l = 0; l < convLayers; l++) {
    layers.push({ key: `conv${l}/kernel`, kind: "conv", shape: [3, 3, l === 0 ? c0 : filters, filters] });
    [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
  }
  const flat = convLayers > 0 ? h * w * filters : inputShape.reduce((a, b) => a * b, 1);
  layers.push({ key: "dense0/kernel", kind: "dense", shape: [flat, hidden] });
  layers.push({ key: "dense1/kernel", kind: "dense", shape: [hidden, o.outputs] });

  return {
    inputShape: [...inputShape],
    outputs: o.outputs,
    layers,
    init(rng, prefix) {
      const p: Params = {};
      for (const l of layers) p[prefix + l.key] = normalTensor(rng, l.shape, 1 / Math.sqrt(l.shape.slice(0, -1).reduce((a, b) => a * b, 1)));
      return p;
    },
    forward(p, prefix, x, fast, upTo = "output") {
      const n = x.shape[0]!;
      const fw = (key: string) => fast?.weights[key];
      let a: tf.Tensor = convLayers > 0 ? tf.reshape(x, [n, h0, w0, c0]) : tf.reshape(x, [n, flat]);
      for (let l = 0; l < convLayers; l++) {
        const key = `conv${l}/kernel`;
        let out = tf.relu(tf.conv2d(a as tf.Tensor4D, p[prefix + key] as tf.Tensor4D, 1, "same"));
        const f = fw(key);
        if (f) out = tf.add(out, fast!.perExample ? convPerExample(a as tf.Tensor4D, f) : tf.relu(tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, 1, "same")));
        a = tf.maxPool(out as tf.Tensor4D, 2, 2, "same");
      }
      let h2: tf.Tensor2D = tf.reshape(a, [n, flat]);
      // Hidden layer: σ(hW) + σ(hW*), or at upTo "hidden" the pre-activations hW + hW*.
      const z: tf.Tensor2D = tf.matMul(h2, p[prefix + "dense0/kernel"] as tf.Tensor2D);
      const f0 = fw("dense0/kernel");
      const z0 = f0 ? denseFast(h2, f0, fast!.perExample) : undefined;
      if (upTo === "hidden") return z0 ? tf.add<tf.Tensor2D>(z, z0) : z;
      h2 = z0 ? tf.add<tf.Tensor2D>(tf.relu(z), tf.relu(z0)) : tf.relu(z);
      // Output layer: no nonlinearity, so the augmentation is hW + hW*.
      const y: tf.Tensor2D = tf.matMul(h2, p[prefix + "dense1/kernel"] as tf.Tensor2D);
      const f1 = fw("dense1/kernel");
      return f1 ? tf.add<tf.Tensor2D>(y, denseFast(h2, f1, fast!.perExample)) : y;
    },
  };
}

/** The base learner as a Model: its forward is the stack with slow weights only. */
export function metanetNet(o: MetanetNetOptions): MetanetModel {
  const stack = metanetStack(o);
  const convLayers = o.convLayers ?? 5;
  return {
    name: `metanet-${convLayers}x${o.filters ?? 64}-${o.hidden ?? 64}`,
    inputShape: stack.inputShape,
    outputs: stack.outputs,
    batchNorm: "none",
    init: (seed) => stack.init(new Rng(seed), ""),
    forward: (p, x) => stack.forward(p, "", x),
    metanet: stack,
  };
}

export const metanetSpec: ModelSpec<{ kind: "metanet"; convLayers: number; filters: number; hidden: number }> = {
  kind: "metanet",
  schema: z.object({
    kind: z.literal("metanet").describe("MetaNet's layer-augmentable net (Munkhdalai & Yu 2017; the authors' Omniglot code): convLayers × [3×3 conv, no bias, ReLU, 2×2 max-pool] + dense `hidden` ReLU + dense N, no biases, no batch norm."),
    convLayers: z.number().int().min(0).max(8).default(5).describe("metanet 3×3 conv layers (the authors' code: 5); 0 gives an MLP on the flattened image."),
    filters: z.number().int().min(1).max(1024).default(64).describe("metanet filters per conv layer (the authors' code: 64)."),
    hidden: z.number().int().min(1).max(4096).default(64).describe("metanet units of the hidden dense layer, whose pre-activations are also u's keys (the authors' code: 64)."),
  }),
  summary: "MetaNet's net (Munkhdalai & Yu 2017 code): convLayers × [3×3 conv, ReLU, max-pool] + dense hidden + dense N, no biases; layers take fast weights",
  fits: ["classification"],
  build: (o, f) => metanetNet({ inputShape: [...f.inputShape], outputs: f.outputs, convLayers: o.convLayers, filters: o.filters, hidden: o.hidden }),
};
