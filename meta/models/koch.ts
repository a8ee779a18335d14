// Koch et al. 2015's siamese twin for 105×105 Omniglot (§3.2, Fig. 4) as an embedding model: both
// twins are this one network with shared weights. The weighted-L1 head that scores a pair belongs to
// the siamese learner (meta/algorithms/siamese.ts), so it serves any embedding, conv4-embedding too.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { uniformTensor, type Model, type ModelSpec } from "../models.js";
import type { Params } from "../params.js";
import { Rng } from "../rng.js";

/** Koch's conv stack: kernel size, width in units of `filters` (64 → 64, 128, 128, 256), then a 2×2 max-pool or not. */
const LAYERS = [
  { size: 10, width: 1, pool: true },
  { size: 7, width: 2, pool: true },
  { size: 4, width: 2, pool: true },
  { size: 4, width: 4, pool: false },
] as const;

/** Side of the last conv layer's output for an input side `n` (valid convolutions, floor pooling); < 1: too small. */
function outSide(n: number): number {
  for (const l of LAYERS) {
    n = n - l.size + 1;
    if (l.pool) n = Math.floor(n / 2);
  }
  return n;
}

/** The smallest input side the stack accepts (65; Koch et al. use 105, where the last conv is 6×6×256). */
export const KOCH_MIN_SIDE = (() => {
  let n = 1;
  while (outSide(n) < 1) n++;
  return n;
})();

export interface KochOptions {
  /** Input shape [H, W, C]; H and W at least `KOCH_MIN_SIDE`. Koch et al.: [105, 105, 1]. */
  inputShape: number[];
  /** Filters of the first conv layer; the others have 2×, 2× and 4× as many. Default 64 (Koch: 64, 128, 128, 256). */
  filters?: number;
  /** Units of the sigmoid dense layer, the embedding's width. Default 4096. */
  features?: number;
}

/**
 * Koch et al.'s twin: conv 64@10×10 → ReLU → max-pool, 128@7×7 → ReLU → max-pool, 128@4×4 → ReLU →
 * max-pool, 256@4×4 → ReLU (all stride 1, valid), flattened, dense 4096 → sigmoid. Outputs the
 * sigmoid features [n, features]. Parameters draw U(±1/√fan_in) like every model here, not Koch's
 * N(0, 0.01) kernels with N(0.5, 0.01) biases.
 */
export function kochNet(opts: KochOptions): Model {
  const filters = opts.filters ?? 64;
  const features = opts.features ?? 4096;
  const [h0, w0, c0] = opts.inputShape as [number, number, number];
  const h = outSide(h0);
  const w = outSide(w0);
  if (h < 1 || w < 1) throw new Error(`koch-siamese: input [${opts.inputShape}] is smaller than ${KOCH_MIN_SIDE}×${KOCH_MIN_SIDE}; Koch et al. use 105×105`);
  const flat = h * w * LAYERS[LAYERS.length - 1]!.width * filters;
  return {
    name: `koch-siamese-${filters}-${features}`,
    inputShape: [...opts.inputShape],
    outputs: features,
    batchNorm: "none",
    init(seed: number): Params {
      const rng = new Rng(seed);
      const p: Params = {};
      let cin = c0;
      LAYERS.forEach((l, i) => {
        const cout = l.width * filters;
        const bound = 1 / Math.sqrt(l.size * l.size * cin);
        p[`conv${i}/kernel`] = uniformTensor(rng, [l.size, l.size, cin, cout], bound);
        p[`conv${i}/bias`] = uniformTensor(rng, [cout], bound);
        cin = cout;
      });
      const bound = 1 / Math.sqrt(flat);
      p["dense/kernel"] = uniformTensor(rng, [flat, features], bound);
      p["dense/bias"] = uniformTensor(rng, [features], bound);
      return p;
    },
    forward(p: Params, x: tf.Tensor): tf.Tensor {
      const n = x.shape[0]!;
      let a = tf.reshape(x, [n, h0, w0, c0]) as tf.Tensor4D;
      LAYERS.forEach((l, i) => {
        a = tf.relu(tf.add(tf.conv2d(a, p[`conv${i}/kernel`] as tf.Tensor4D, 1, "valid"), p[`conv${i}/bias`]!));
        if (l.pool) a = tf.maxPool(a, 2, 2, "valid");
      });
      return tf.sigmoid(tf.add(tf.matMul(tf.reshape(a, [n, flat]), p["dense/kernel"] as tf.Tensor2D), p["dense/bias"]!));
    },
  };
}

export const kochSiameseSpec: ModelSpec<{ kind: "koch-siamese"; filters: number; features: number }> = {
  kind: "koch-siamese",
  schema: z.object({
    kind: z.literal("koch-siamese").describe("Koch et al. 2015's siamese twin: 64@10×10, 128@7×7, 128@4×4, 256@4×4 valid convs with max-pools, dense 4096 sigmoid; an embedding (needs 105×105 inputs: task.resolution 105)."),
    filters: z.number().int().min(1).max(1024).default(64).describe("koch-siamese filters of the first conv layer; the others have 2×, 2×, 4× as many (Koch: 64)."),
    features: z.number().int().min(1).max(16384).default(4096).describe("koch-siamese units of the sigmoid dense layer, the embedding's width (Koch: 4096)."),
  }),
  summary: "Koch et al. 2015's siamese twin (4 valid convs with max-pools, dense 4096 sigmoid), an embedding for 105×105 inputs",
  fits: ["classification"],
  embedding: true,
  mismatch: (f) =>
    Math.min(f.inputShape[0] ?? 0, f.inputShape[1] ?? 0) < KOCH_MIN_SIDE
      ? `koch-siamese needs inputs of at least ${KOCH_MIN_SIDE}×${KOCH_MIN_SIDE} (Koch et al.: 105×105); ${f.name} has [${f.inputShape}] — for Omniglot set task.resolution: 105`
      : undefined,
  build: (o, f) => kochNet({ inputShape: [...f.inputShape], filters: o.filters, features: o.features }),
};
