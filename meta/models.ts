// Functional models: parameters are an explicit named map, so inner loops can differentiate
// through updated copies of them (MAML) and whole batches of tasks can carry their own copies.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { Rng } from "./rng.js";
import { batchMatMul3d } from "./gradients.js";
import { batchNorm } from "./batch-norm.js";
import type { TaskKind } from "./tasks/types.js";
import type { Params } from "./params.js";

/**
 * How batch norm computes its statistics. metatrain implements only `transductive`: the mean and
 * variance of the batch being processed (the support set while adapting, the query set when
 * measuring), exactly as the MAML reference code does (it never uses running averages). Every
 * reported result with batch norm on is therefore a transductive result.
 */
export type BatchNormMode = "transductive";

export interface Model {
  /** Short identifier, e.g. `mlp-1-40-40-1`, `conv4-64-maxpool-bn`. */
  readonly name: string;
  /** Shape of one input example. */
  readonly inputShape: number[];
  readonly outputs: number;
  /** `none`, or the batch-norm mode in force. */
  readonly batchNorm: "none" | BatchNormMode;
  /** Fresh parameters drawn from `seed` (PyTorch's default init: U(±1/√fan_in)). */
  init(seed: number): Params;
  /** Outputs (regression values or class logits) for inputs `x` of shape [n, ...inputShape]. */
  forward(params: Params, x: tf.Tensor): tf.Tensor;
  /**
   * Optional task-batched forward: `params` carry a leading task dimension T, `x` is
   * [T, n, ...inputShape]; returns [T, n, outputs]. Present only where it is implemented (MLPs).
   * `inputProduct` ([T, n, units], with `inputKernel`): x·W_t for each task's input kernel, which
   * the model then uses in place of computing it (and `params[inputKernel]` is not read).
   */
  forwardBatched?(params: Params, x: tf.Tensor, inputProduct?: tf.Tensor): tf.Tensor;
  /**
   * Optional: the kernel W the model applies to its flattened input only as x·W (an MLP's first
   * layer), so a batched episode may keep it shared and factor each task's SGD change to it
   * (meta/algorithms/factored-episode.ts).
   */
  readonly inputKernel?: string;
  /**
   * Optional split into a body (features) and a head (the final linear layer), for learners that
   * adapt the head only (ANIL): `forward(p, x)` equals `head(p, body(p, x))`.
   */
  split?: ModelSplit;
}

/** A model as body and head; `headKeys` name the head's parameters, the rest are the body's. */
export interface ModelSplit {
  readonly headKeys: readonly string[];
  /** Features [n, d] for inputs [n, ...inputShape] (batch norm, if any, over this batch). */
  body(params: Params, x: tf.Tensor): tf.Tensor;
  /** Outputs [n, outputs] from features [n, d]. */
  head(params: Params, features: tf.Tensor): tf.Tensor;
  /**
   * Optional, with `headBatched`: features [T, n, d] of inputs [T, n, ...inputShape] for T tasks
   * sharing the body's parameters (as ANIL's tasks do), batch norm over each task's own examples.
   */
  bodyBatched?(params: Params, x: tf.Tensor): tf.Tensor;
  /** Optional: outputs [T, n, outputs] from features [T, n, d], head parameters with a leading task axis. */
  headBatched?(params: Params, features: tf.Tensor): tf.Tensor;
}

/** Uniform(±bound) tensor of the given shape from an explicit RNG (deterministic everywhere). */
export function uniformTensor(rng: Rng, shape: number[], bound: number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.uniform(-bound, bound);
  return tf.tensor(data, shape, "float32");
}

/**
 * Batch norm over `axes` with learned scale and offset (meta/batch-norm.ts: one kernel with a
 * hand-written, twice-differentiable gradient).
 */
export { batchNorm };

export interface MlpOptions {
  /** Layer widths including input and output, e.g. [1, 40, 40, 1]. */
  sizes: number[];
  /** Batch norm after each hidden layer (as in the MAML paper's Omniglot MLP). Default false. */
  batchNorm?: boolean;
  /** Input shape; defaults to [sizes[0]]. Inputs are flattened to sizes[0] features. */
  inputShape?: number[];
}

/** Fully connected ReLU network. */
export function mlp(opts: MlpOptions): Model {
  const { sizes } = opts;
  if (sizes.length < 2) throw new Error("mlp: need at least input and output sizes");
  const bn = opts.batchNorm ?? false;
  const layers = sizes.length - 1;
  const inputShape = opts.inputShape ?? [sizes[0]!];
  const inFeatures = sizes[0]!;

  function body(params: Params, h: tf.Tensor, batched: boolean, upTo = layers, inputProduct?: tf.Tensor): tf.Tensor {
    // Unbatched h is [n, features]; batched h is [T, n, features] with weights [T, in, out].
    for (let l = 0; l < upTo; l++) {
      const b = params[`dense${l}/bias`]!;
      if (l === 0 && inputProduct) {
        h = tf.add(inputProduct, tf.expandDims(b, 1));
      } else {
        const w = params[`dense${l}/kernel`]!;
        h = batched ? tf.add(batchMatMul3d(h, w), tf.expandDims(b, 1)) : tf.add(tf.matMul(h, w), b);
      }
      if (l < layers - 1) {
        if (bn) {
          const g = params[`bn${l}/gamma`]!;
          const be = params[`bn${l}/beta`]!;
          h = batched
            ? batchNorm(h, tf.expandDims(g, 1), tf.expandDims(be, 1), [1])
            : batchNorm(h, g, be, [0]);
        }
        h = tf.relu(h);
      }
    }
    return h;
  }

  /** The body over [T, n, ...] inputs with weights shared by the T tasks: one matMul per layer over all T·n rows, batch norm per task. */
  function sharedBody(params: Params, x: tf.Tensor): tf.Tensor {
    const [T, n] = [x.shape[0]!, x.shape[1]!];
    let h = tf.reshape(x, [T * n, inFeatures]);
    for (let l = 0; l < layers - 1; l++) {
      h = tf.add(tf.matMul(h, params[`dense${l}/kernel`]!), params[`dense${l}/bias`]!);
      if (bn) h = tf.reshape(batchNorm(tf.reshape(h, [T, n, sizes[l + 1]!]), params[`bn${l}/gamma`]!, params[`bn${l}/beta`]!, [1]), [T * n, sizes[l + 1]!]);
      h = tf.relu(h);
    }
    return tf.reshape(h, [T, n, sizes[layers - 1]!]);
  }

  return {
    name: `mlp-${sizes.join("-")}${bn ? "-bn" : ""}`,
    inputShape,
    outputs: sizes[sizes.length - 1]!,
    batchNorm: bn ? "transductive" : "none",
    init(seed: number): Params {
      const rng = new Rng(seed);
      const p: Params = {};
      for (let l = 0; l < layers; l++) {
        const fanIn = sizes[l]!;
        const bound = 1 / Math.sqrt(fanIn);
        p[`dense${l}/kernel`] = uniformTensor(rng, [fanIn, sizes[l + 1]!], bound);
        p[`dense${l}/bias`] = uniformTensor(rng, [sizes[l + 1]!], bound);
        if (bn && l < layers - 1) {
          p[`bn${l}/gamma`] = tf.ones([sizes[l + 1]!]);
          p[`bn${l}/beta`] = tf.zeros([sizes[l + 1]!]);
        }
      }
      return p;
    },
    forward(params: Params, x: tf.Tensor): tf.Tensor {
      return body(params, tf.reshape(x, [x.shape[0]!, inFeatures]), false);
    },
    forwardBatched(params: Params, x: tf.Tensor, inputProduct?: tf.Tensor): tf.Tensor {
      return body(params, inputProduct ? x : tf.reshape(x, [x.shape[0]!, x.shape[1]!, inFeatures]), true, layers, inputProduct);
    },
    inputKernel: "dense0/kernel",
    split: {
      headKeys: [`dense${layers - 1}/kernel`, `dense${layers - 1}/bias`],
      body: (params, x) => body(params, tf.reshape(x, [x.shape[0]!, inFeatures]), false, layers - 1),
      head: (params, f) => tf.add(tf.matMul(f, params[`dense${layers - 1}/kernel`]!), params[`dense${layers - 1}/bias`]!),
      bodyBatched: (params, x) => sharedBody(params, x),
      headBatched: (params, f) => tf.add(batchMatMul3d(f, params[`dense${layers - 1}/kernel`]!), tf.expandDims(params[`dense${layers - 1}/bias`]!, 1)),
    },
  };
}

export interface Conv4Options {
  /** Input shape [H, W, C]. Default [28, 28, 1]. */
  inputShape?: number[];
  /** Output classes (ways). */
  outputs: number;
  /** Filters per conv layer. Default 64. */
  filters?: number;
  /**
   * `maxpool`: 3×3 conv (stride 1, same) then 2×2 max-pool, flattened (MAML's MiniImagenet net).
   * `stride`: 3×3 conv with stride 2 and no pooling, then the mean over space (MAML's Omniglot
   * net). Default `maxpool`.
   */
  downsample?: "maxpool" | "stride";
  /** Batch norm after each conv. Default true, as in MAML/Reptile. */
  batchNorm?: boolean;
  /**
   * With a linear classifier of `outputs` classes (default true); false: the embedding alone, whose
   * outputs are the features (64 for Omniglot with either downsampling), as metric learners use it.
   */
  classifier?: boolean;
  /**
   * Give the model a task-batched forward (`forwardBatched`), so learners that batch tasks run a
   * shard's tasks in one episode: per-task convolutions (each task its own kernels), everything
   * else — bias, batch norm per task, ReLU, pooling, the classifier — as one op over all tasks.
   * Default false: evaluation batches 50 tasks whenever a model has `forwardBatched`, which for
   * Conv4 activations (tasks × images × 28 × 28 × 64 floats per layer) is gigabytes.
   */
  taskBatched?: boolean;
}

/** The 4-layer convolutional network of Vinyals et al. as used by MAML and Reptile. */
export function conv4(opts: Conv4Options): Model {
  const inputShape = opts.inputShape ?? [28, 28, 1];
  const filters = opts.filters ?? 64;
  const mode = opts.downsample ?? "maxpool";
  const bn = opts.batchNorm ?? true;
  const [h0, w0, c0] = inputShape as [number, number, number];
  // Spatial size after the 4 blocks decides the classifier's fan-in.
  let h = h0;
  let w = w0;
  for (let i = 0; i < 4; i++) {
    h = mode === "maxpool" ? Math.floor(h / 2) : Math.ceil(h / 2);
    w = mode === "maxpool" ? Math.floor(w / 2) : Math.ceil(w / 2);
  }
  if (h < 1 || w < 1) throw new Error(`conv4: input ${inputShape} is too small for 4 downsamplings`);
  const featureCount = mode === "maxpool" ? h * w * filters : filters;
  const classifier = opts.classifier ?? true;

  if (!classifier) {
    return {
      name: `conv4-embedding-${filters}-${mode}${bn ? "-bn" : ""}`,
      inputShape,
      outputs: featureCount,
      batchNorm: bn ? "transductive" : "none",
      init: (seed) => convInit(new Rng(seed)),
      forward: (params, x) => features(params, x),
    };
  }

  function convInit(rng: Rng): Params {
    const p: Params = {};
    let cin = c0;
    for (let l = 0; l < 4; l++) {
      const bound = 1 / Math.sqrt(9 * cin);
      p[`conv${l}/kernel`] = uniformTensor(rng, [3, 3, cin, filters], bound);
      p[`conv${l}/bias`] = uniformTensor(rng, [filters], bound);
      if (bn) {
        p[`bn${l}/gamma`] = tf.ones([filters]);
        p[`bn${l}/beta`] = tf.zeros([filters]);
      }
      cin = filters;
    }
    return p;
  }

  return {
    name: `conv4-${filters}-${mode}${bn ? "-bn" : ""}`,
    inputShape,
    outputs: opts.outputs,
    batchNorm: bn ? "transductive" : "none",
    init(seed: number): Params {
      const rng = new Rng(seed);
      // Same draw order as before the embedding variant existed: conv layers first, then the head.
      const p = convInit(rng);
      const bound = 1 / Math.sqrt(featureCount);
      p["dense/kernel"] = uniformTensor(rng, [featureCount, opts.outputs], bound);
      p["dense/bias"] = uniformTensor(rng, [opts.outputs], bound);
      return p;
    },
    forward(params: Params, x: tf.Tensor): tf.Tensor {
      return head(params, features(params, x));
    },
    split: { headKeys: ["dense/kernel", "dense/bias"], body: (p, x) => features(p, x), head: (p, f) => head(p, f) },
    ...(opts.taskBatched ? { forwardBatched: (params: Params, x: tf.Tensor) => headBatched(params, featuresBatched(params, x)) } : {}),
  };

  function features(params: Params, x: tf.Tensor): tf.Tensor {
    let a = tf.reshape(x, [x.shape[0]!, h0, w0, c0]) as tf.Tensor4D;
    for (let l = 0; l < 4; l++) {
      const k = params[`conv${l}/kernel`] as tf.Tensor4D;
      a = tf.add(tf.conv2d(a, k, mode === "maxpool" ? 1 : 2, "same"), params[`conv${l}/bias`]!) as tf.Tensor4D;
      if (bn) a = batchNorm(a, params[`bn${l}/gamma`]!, params[`bn${l}/beta`]!, [0, 1, 2]) as tf.Tensor4D;
      a = tf.relu(a);
      if (mode === "maxpool") a = tf.maxPool(a, 2, 2, "valid");
    }
    return mode === "maxpool" ? tf.reshape(a, [a.shape[0], featureCount]) : tf.mean(a, [1, 2]);
  }

  /**
   * features() for T tasks at once: params carry a leading task axis, x is [T, n, H, W, C]; returns
   * [T, n, features]. Only the convolutions run per task (tfjs has no grouped convolution); batch
   * norm takes each task's own statistics (axes 1–3 of [T, n, H, W, C]), as features() does.
   */
  function featuresBatched(params: Params, x: tf.Tensor): tf.Tensor {
    const T = x.shape[0]!;
    const n = x.shape[1]!;
    let a = tf.reshape(x, [T, n, h0, w0, c0]);
    for (let l = 0; l < 4; l++) {
      const kernels = tf.unstack(params[`conv${l}/kernel`]!) as tf.Tensor4D[];
      const inputs = tf.unstack(a) as tf.Tensor4D[];
      a = tf.stack(inputs.map((xi, t) => tf.conv2d(xi, kernels[t]!, mode === "maxpool" ? 1 : 2, "same")));
      a = tf.add(a, tf.reshape(params[`conv${l}/bias`]!, [T, 1, 1, 1, filters]));
      if (bn) {
        const perTask = (k: string) => tf.reshape(params[k]!, [T, 1, 1, 1, filters]);
        a = batchNorm(a, perTask(`bn${l}/gamma`), perTask(`bn${l}/beta`), [1, 2, 3]);
      }
      a = tf.relu(a);
      if (mode === "maxpool") {
        const [, , hh, ww, cc] = a.shape as number[];
        const pooled = tf.maxPool(tf.reshape(a, [T * n, hh!, ww!, cc!]) as tf.Tensor4D, 2, 2, "valid");
        a = tf.reshape(pooled, [T, n, ...pooled.shape.slice(1)]);
      }
    }
    return mode === "maxpool" ? tf.reshape(a, [T, n, featureCount]) : tf.mean(a, [2, 3]);
  }

  function headBatched(params: Params, f: tf.Tensor): tf.Tensor {
    return tf.add(batchMatMul3d(f, params["dense/kernel"]!), tf.expandDims(params["dense/bias"]!, 1));
  }

  function head(params: Params, f: tf.Tensor): tf.Tensor {
    return tf.add(tf.matMul(f as tf.Tensor2D, params["dense/kernel"] as tf.Tensor2D), params["dense/bias"]!);
  }
}

/** The MAML paper's sinusoid regressor: 1-40-40-1 with ReLU. */
export const sinusoidMlp = (): Model => mlp({ sizes: [1, 40, 40, 1] });

/** The MAML paper's Omniglot MLP: 784-256-128-64-64-N with batch norm and ReLU. */
export const omniglotMlp = (ways: number, batchNorm = true): Model =>
  mlp({ sizes: [784, 256, 128, 64, 64, ways], batchNorm, inputShape: [28, 28, 1] });

// ---- registry entries --------------------------------------------------------------------------

/** A model kind as a run config names it: its options (`model.*`), what it fits, how it is built. */
export interface ModelSpec<O extends { kind: string } = { kind: string }> {
  readonly kind: string;
  /** `model.*` options with defaults; must include `kind: z.literal(kind)`. */
  readonly schema: z.ZodObject;
  /** One line for the docs. */
  readonly summary: string;
  /** Task kinds (and input shapes, checked at build) it fits. */
  readonly fits: readonly TaskKind[];
  /** The model splits into a body and a head (`Model.split`), as ANIL needs. */
  readonly headSplit?: boolean;
  /** An embedding without a classifier: its outputs do not depend on the task's ways (metric learners). */
  readonly embedding?: boolean;
  /** Why a family does not fit, or undefined (e.g. an MLP of 784 inputs for 28×28 images only). */
  mismatch?(family: { name: string; kind: TaskKind; inputShape: readonly number[] }): string | undefined;
  build(options: O, family: { inputShape: readonly number[]; outputs: number }): Model;
}

export const sinusoidMlpSpec: ModelSpec<{ kind: "sinusoid-mlp" }> = {
  kind: "sinusoid-mlp",
  schema: z.object({ kind: z.literal("sinusoid-mlp").describe("1-40-40-1 ReLU MLP (MAML §5.1).") }),
  summary: "1-40-40-1 ReLU MLP (MAML §5.1)",
  fits: ["regression"],
  headSplit: true,
  build: () => sinusoidMlp(),
};

export const omniglotMlpSpec: ModelSpec<{ kind: "omniglot-mlp"; batchNorm: boolean }> = {
  kind: "omniglot-mlp",
  schema: z.object({
    kind: z.literal("omniglot-mlp").describe("784-256-128-64-64-N ReLU MLP with batch norm (MAML §5.2)."),
    batchNorm: z.boolean().default(true).describe("Batch norm (transductive: batch statistics) after each hidden layer."),
  }),
  summary: "784-256-128-64-64-N ReLU MLP with batch norm (MAML §5.2)",
  fits: ["classification"],
  headSplit: true,
  mismatch: (f) => (f.inputShape.reduce((a, b) => a * b, 1) !== 784 ? `omniglot-mlp takes 28×28 inputs; ${f.name} has [${f.inputShape}]` : undefined),
  build: (o, f) => omniglotMlp(f.outputs, o.batchNorm),
};

export const conv4Spec: ModelSpec<{ kind: "conv4"; batchNorm: boolean; downsample: "maxpool" | "stride"; filters: number }> = {
  kind: "conv4",
  schema: z.object({
    kind: z.literal("conv4").describe("4 × [3×3 conv, batch norm, ReLU, downsample] + linear (Vinyals et al.; MAML, Reptile)."),
    batchNorm: z.boolean().default(true).describe("Batch norm (transductive: batch statistics) after each convolution."),
    downsample: z.enum(["maxpool", "stride"]).default("stride").describe("conv4 downsampling: 2×2 max-pool or stride-2 convolutions."),
    filters: z.number().int().min(1).max(1024).default(64).describe("conv4 filters per layer."),
  }),
  summary: "4 × [3×3 conv, batch norm, ReLU, downsample] + linear (Vinyals et al.; MAML, Reptile)",
  fits: ["classification"],
  headSplit: true,
  // Pass every option explicitly: conv4's own defaults differ from the schema's.
  build: (o, f) => conv4({ inputShape: [...f.inputShape], outputs: f.outputs, filters: o.filters, downsample: o.downsample, batchNorm: o.batchNorm }),
};

export const conv4EmbeddingSpec: ModelSpec<{ kind: "conv4-embedding"; batchNorm: boolean; downsample: "maxpool" | "stride"; filters: number }> = {
  kind: "conv4-embedding",
  schema: z.object({
    kind: z.literal("conv4-embedding").describe("Conv4 without a classifier: 4 × [3×3 conv, batch norm, ReLU, downsample], the 64-d embedding of Prototypical, Matching and Relation networks."),
    batchNorm: z.boolean().default(true).describe("Batch norm (batch statistics) after each convolution."),
    downsample: z.enum(["maxpool", "stride"]).default("maxpool").describe("conv4-embedding downsampling: 2×2 max-pool (Snell et al., Vinyals et al.) or stride-2 convolutions."),
    filters: z.number().int().min(1).max(1024).default(64).describe("conv4-embedding filters per layer."),
  }),
  summary: "Conv4 embedding without a classifier (Vinyals et al.; Prototypical networks)",
  fits: ["classification"],
  embedding: true,
  build: (o, f) => conv4({ inputShape: [...f.inputShape], outputs: 0, filters: o.filters, downsample: o.downsample, batchNorm: o.batchNorm, classifier: false }),
};
