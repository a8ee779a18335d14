// Relation networks' two modules (Sung et al. 2018, §3.3 and Fig. 2; Omniglot as in the reference
// code floodsung/LearningToCompare_FSL): an embedding that keeps feature maps, and a relation module
// that scores a concatenated pair of them. The pairing and the loss belong to meta/algorithms/relation.ts.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { batchNorm, type Model, type ModelSpec } from "../models.js";
import type { Params } from "../params.js";
import { Rng } from "../rng.js";

/** What the relation learner needs of its model (`RelationNetModel.relation`). */
export interface RelationModules {
  /** Feature maps [n, h, w, filters] of inputs [n, ...inputShape]; batch norm over this batch. */
  embed(p: Params, x: tf.Tensor): tf.Tensor4D;
  /** Relation scores in (0, 1), [m], of pairs [m, h, w, 2·filters]; batch norm over the m pairs. */
  relate(p: Params, pairs: tf.Tensor4D): tf.Tensor1D;
  /** Parameter-name prefixes of the embedding and of the relation module (the reference clips each network's gradient on its own). */
  readonly groups: readonly string[];
}

/** A 3×3 conv block: "valid" (the reference's padding 0) or "same" (padding 1), then batch norm, ReLU and maybe a 2×2 max-pool. */
type Block = { pad: "valid" | "same"; pool: boolean };

/** The embedding (CNNEncoder): pooled after the first two blocks only, so 28×28 gives 5×5 maps. */
const EMBED: readonly Block[] = [
  { pad: "valid", pool: true },
  { pad: "valid", pool: true },
  { pad: "same", pool: false },
  { pad: "same", pool: false },
];
/** The relation module's conv blocks (RelationNetwork.layer1–2): 5×5 → 2×2 → 1×1 on Omniglot. */
const RELATE: readonly Block[] = [
  { pad: "same", pool: true },
  { pad: "same", pool: true },
];

/** Side after `blocks` for an input side `n` (floor pooling, as PyTorch's MaxPool2d(2)); < 1: too small. */
function sideAfter(n: number, blocks: readonly Block[]): number {
  for (const b of blocks) {
    if (b.pad === "valid") n -= 2;
    if (b.pool) n = Math.floor(n / 2);
  }
  return n;
}

/** The smallest input side both modules accept (22; Omniglot's 28 gives 5×5 maps and a 1×1 relation map). */
export const RELATION_MIN_SIDE = (() => {
  let n = 1;
  while (sideAfter(sideAfter(n, EMBED), RELATE) < 1) n++;
  return n;
})();

/** N(0, std) tensor of the given shape from an explicit RNG. */
function normalTensor(rng: Rng, shape: number[], std: number): tf.Tensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
  return tf.tensor(data, shape, "float32");
}

function runBlocks(p: Params, prefix: string, a: tf.Tensor4D, blocks: readonly Block[]): tf.Tensor4D {
  blocks.forEach((b, l) => {
    a = tf.add(tf.conv2d(a, p[`${prefix}conv${l}/kernel`] as tf.Tensor4D, 1, b.pad), p[`${prefix}conv${l}/bias`]!) as tf.Tensor4D;
    a = tf.relu(batchNorm(a, p[`${prefix}bn${l}/gamma`]!, p[`${prefix}bn${l}/beta`]!, [0, 1, 2])) as tf.Tensor4D;
    if (b.pool) a = tf.maxPool(a, 2, 2, "valid");
  });
  return a;
}

export interface RelationNetOptions {
  /** Input shape [H, W, C]; H and W at least `RELATION_MIN_SIDE`. Default [28, 28, 1]. */
  inputShape?: number[];
  /** Filters of every conv layer of both modules (the reference: 64, so pairs have 128 channels). Default 64. */
  filters?: number;
  /** Units of the relation module's hidden dense layer (the reference's relation_dim). Default 8. */
  hidden?: number;
}

/**
 * Relation network: embedding f = 4 × [3×3 conv, batch norm, ReLU] with 2×2 max-pools after the
 * first two (padding 0 there, 1 after); relation module g = 2 × [3×3 conv (padding 1), batch norm,
 * ReLU, 2×2 max-pool] on the 2·filters-channel pair, flattened, dense `hidden` ReLU, dense 1
 * sigmoid. Parameters `embed/…` and `relation/…`, initialised as the reference's weights_init:
 * conv kernels N(0, √(2 / (9·out))) with zero biases, dense kernels N(0, 0.01) with biases 1 (not
 * the U(±1/√fan_in) of the other models). `forward` is the flattened embedding, so the model also
 * serves the other metric learners.
 */
/** A relation-net: a Model (its forward is the embedding) that also carries the relation module. */
export interface RelationNetModel extends Model {
  relation: RelationModules;
}

export function relationNet(opts: RelationNetOptions = {}): RelationNetModel {
  const inputShape = opts.inputShape ?? [28, 28, 1];
  const filters = opts.filters ?? 64;
  const hidden = opts.hidden ?? 8;
  const [h0, w0, c0] = inputShape as [number, number, number];
  const [he, we] = [sideAfter(h0, EMBED), sideAfter(w0, EMBED)];
  const [hr, wr] = [sideAfter(he, RELATE), sideAfter(we, RELATE)];
  if (hr < 1 || wr < 1) throw new Error(`relation-net: input [${inputShape}] is smaller than ${RELATION_MIN_SIDE}×${RELATION_MIN_SIDE}`);
  const flat = hr * wr * filters;
  const convs = (prefix: string, cin: number, blocks: readonly Block[], rng: Rng, p: Params) =>
    blocks.forEach((_, l) => {
      p[`${prefix}conv${l}/kernel`] = normalTensor(rng, [3, 3, l === 0 ? cin : filters, filters], Math.sqrt(2 / (9 * filters)));
      p[`${prefix}conv${l}/bias`] = tf.zeros([filters]);
      p[`${prefix}bn${l}/gamma`] = tf.ones([filters]);
      p[`${prefix}bn${l}/beta`] = tf.zeros([filters]);
    });
  const embed = (p: Params, x: tf.Tensor) => runBlocks(p, "embed/", tf.reshape(x, [x.shape[0]!, h0, w0, c0]), EMBED);
  return {
    name: `relation-net-${filters}-${hidden}`,
    inputShape: [...inputShape],
    outputs: he * we * filters,
    batchNorm: "transductive",
    init(seed: number): Params {
      const rng = new Rng(seed);
      const p: Params = {};
      convs("embed/", c0, EMBED, rng, p);
      convs("relation/", 2 * filters, RELATE, rng, p);
      p["relation/dense0/kernel"] = normalTensor(rng, [flat, hidden], 0.01);
      p["relation/dense0/bias"] = tf.ones([hidden]);
      p["relation/dense1/kernel"] = normalTensor(rng, [hidden, 1], 0.01);
      p["relation/dense1/bias"] = tf.ones([1]);
      return p;
    },
    forward: (p, x) => tf.reshape(embed(p, x), [x.shape[0]!, he * we * filters]),
    relation: {
      groups: ["embed/", "relation/"],
      embed,
      relate(p, pairs) {
        const m = pairs.shape[0];
        const a = tf.reshape(runBlocks(p, "relation/", pairs, RELATE), [m, flat]);
        const h = tf.relu(tf.add(tf.matMul(a, p["relation/dense0/kernel"] as tf.Tensor2D), p["relation/dense0/bias"]!));
        return tf.reshape(tf.sigmoid(tf.add(tf.matMul(h, p["relation/dense1/kernel"] as tf.Tensor2D), p["relation/dense1/bias"]!)), [m]);
      },
    },
  };
}

export const relationNetSpec: ModelSpec<{ kind: "relation-net"; filters: number; hidden: number }> = {
  kind: "relation-net",
  schema: z.object({
    kind: z.literal("relation-net").describe("Relation network (Sung et al. 2018): a Conv4 embedding pooled after its first two blocks only, and a relation module of 2 conv blocks, dense `hidden` and dense 1 sigmoid on concatenated feature-map pairs."),
    filters: z.number().int().min(1).max(1024).default(64).describe("relation-net filters of every conv layer, embedding and relation module (Sung et al.: 64)."),
    hidden: z.number().int().min(1).max(4096).default(8).describe("relation-net units of the relation module's hidden dense layer (Sung et al.: 8)."),
  }),
  summary: "Relation network (Sung et al. 2018): feature-map embedding plus relation module (2 conv blocks, dense 8, dense 1 sigmoid)",
  fits: ["classification"],
  embedding: true,
  mismatch: (f) =>
    Math.min(f.inputShape[0] ?? 0, f.inputShape[1] ?? 0) < RELATION_MIN_SIDE ? `relation-net needs inputs of at least ${RELATION_MIN_SIDE}×${RELATION_MIN_SIDE}; ${f.name} has [${f.inputShape}]` : undefined,
  build: (o, f) => relationNet({ inputShape: [...f.inputShape], filters: o.filters, hidden: o.hidden }),
};
