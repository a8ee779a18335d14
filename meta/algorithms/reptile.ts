// Reptile (Nichol et al. 2018, Alg. 2) as openai/supervised-reptile runs it: each task trains a copy
// of θ for innerSteps minibatch steps (Adam with β1 = 0 by default) on `trainShots` examples per
// class and contributes φ − θ; the outer step moves θ by ε·mean(φ − θ), ε annealed linearly.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { evaluateWith, type AdaptAndMeasure } from "../evaluate.js";
import type { OuterOptimizer } from "../optimizers.js";
import { taskLoss } from "../losses.js";
import { addScaled, fromList, names, pick, type Params } from "../params.js";
import { Rng } from "../rng.js";
import { abortableSteps, queryLoss, taskMetrics, type Episode, type EpisodeFn, type QueryReadout } from "./episodes.js";
import { factoredKernelIn } from "./factored-episode.js";
import { defineLearner, type LearnerSetup } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  trainShots: z.number().int().min(1).optional().describe("Support examples per class in training tasks (supervised-reptile `--train-shots`); default `task.shots`."),
  innerBatchSize: z.number().int().min(1).optional().describe("Examples per inner step, drawn without replacement in reshuffled passes (`--inner-batch`); default the whole support set."),
  evalInnerBatchSize: z.number().int().min(1).optional().describe("Examples per test-time inner step (`--eval-batch`); default `innerBatchSize`."),
  innerOptimizer: z.enum(["adam", "sgd"]).default("adam").describe("Inner-loop optimizer at step size `innerLr`: Adam (the paper's, fresh state per task) or plain SGD."),
  adamBeta1: z.number().min(0).lt(1).default(0).describe("The inner Adam's β1 (the paper: 0)."),
  adamBeta2: z.number().min(0).lt(1).default(0.999).describe("The inner Adam's β2."),
  anneal: z.boolean().default(true).describe("Anneal ε linearly from `metaLr` to `metaLrFinal` over the run (`--meta-step-final`)."),
  metaLrFinal: z.number().min(0).default(0).describe("ε at the end of the run when annealing."),
  transductive: z.boolean().default(true).describe("Test-time predictions for the whole query set at once (batch statistics over it); false: one query at a time beside the support set, as the paper's non-transductive numbers."),
});
export type ReptileOptions = z.infer<typeof options>;

/** ε_t = ε₀(1 − t/T) + ε_final·t/T (supervised-reptile's schedule), or ε₀ throughout without annealing. */
export function reptileStepSize(metaLr: number, hyper: Pick<ReptileOptions, "anneal" | "metaLrFinal">, step: number, iterations: number): number {
  if (!hyper.anneal) return metaLr;
  const frac = Math.min(1, step / iterations);
  return Math.max(0, (1 - frac) * metaLr + frac * hyper.metaLrFinal);
}

/** θ ← θ + ε_t·mean(φ − θ): the outer step; its only state is the step count. */
export function reptileOuter(hyper: ReptileOptions, iterations: number): OuterOptimizer {
  const stepSize = (state: { step: number }, metaLr: number) => reptileStepSize(metaLr, hyper, state.step, iterations);
  return {
    kind: "reptile",
    initialState: () => ({ kind: "reptile", step: 0 }),
    stepSize,
    apply(params, sum, count, state, { metaLr }) {
      if (state.kind !== "reptile") throw new Error(`optimizer state is of kind '${state.kind}', not reptile: it was written by another learner`);
      const eps = stepSize(state, metaLr);
      const out: Params = {};
      for (const name of names(params)) out[name] = tf.tidy(() => tf.add(params[name]!, tf.mul(tf.div(sum[name]!, count), eps)));
      return { params: out, state: { kind: "reptile", step: state.step + 1 } };
    },
  };
}

/**
 * Indices of each inner step's minibatch: passes over a fresh shuffle of [0, n), cut into batches
 * of `b` that run on across pass boundaries (supervised-reptile's `_mini_batches` without
 * replacement). Seeded per task, so a retried shard draws the same batches.
 */
export function minibatchIndices(seed: number, n: number, b: number, steps: number): number[][] {
  const rng = new Rng(seed);
  const size = Math.min(b, n);
  const out: number[][] = [];
  let pass: number[] = [];
  let cur: number[] = [];
  while (out.length < steps) {
    if (pass.length === 0) pass = rng.shuffle(Array.from({ length: n }, (_, i) => i));
    cur.push(pass.shift()!);
    if (cur.length === size) {
      out.push(cur);
      cur = [];
    }
  }
  return out;
}

interface InnerOptimizer {
  step(phi: Params, g: Params): Params;
}

/** The inner optimizer on (possibly task-batched) fast weights: elementwise, so per task. */
function innerOptimizer(hyper: ReptileOptions, lr: number): InnerOptimizer {
  if (hyper.innerOptimizer === "sgd") return { step: (phi, g) => addScaled(phi, g, -lr) };
  const b1 = hyper.adamBeta1;
  const b2 = hyper.adamBeta2;
  let t = 0;
  let m: Params | undefined;
  let v: Params | undefined;
  return {
    step(phi, g) {
      t += 1;
      const out: Params = {};
      const nm: Params = {};
      const nv: Params = {};
      // TF's AdamOptimizer: lr_t = lr·√(1 − β2^t)/(1 − β1^t), ε = 1e-8 (supervised-reptile's defaults).
      const lrT = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
      for (const k of names(phi)) {
        const gk = g[k]!;
        nm[k] = m ? tf.add(tf.mul(m[k]!, b1), tf.mul(gk, 1 - b1)) : tf.mul(gk, 1 - b1);
        nv[k] = v ? tf.add(tf.mul(v[k]!, b2), tf.mul(tf.square(gk), 1 - b2)) : tf.mul(tf.square(gk), 1 - b2);
        out[k] = tf.sub(phi[k]!, tf.mul(tf.div(nm[k]!, tf.add(tf.sqrt(nv[k]!), 1e-8)), lrT));
      }
      m = nm;
      v = nv;
      return out;
    },
  };
}

/** Gather each task's minibatch rows of support x / y; works for one task and for a task axis. */
function minibatch(e: Episode, idx: number[][]): { x: tf.Tensor; y: tf.Tensor } {
  if (e.count === 1 && e.support.x.shape[0] === e.tasks[0]!.support.xShape[0]) {
    const i = tf.tensor1d(idx[0]!, "int32");
    return { x: tf.gather(e.support.x, i), y: tf.gather(e.support.y, i) };
  }
  const i = tf.tensor2d(idx, [idx.length, idx[0]!.length], "int32");
  return { x: tf.gather(e.support.x, i, 1, 1), y: tf.gather(e.support.y, i, 1, 1) };
}

/** Whether the inner loop is plain SGD on the whole support set every step (`batch` examples of `n`): then it steps by `e.step`. */
function wholeSetSgd(hyper: ReptileOptions, batch: number | undefined, n: number): boolean {
  return hyper.innerOptimizer === "sgd" && (batch === undefined || batch >= n);
}

/**
 * Whether every episode's inner loop is whole-set SGD whatever its support size (no batch size
 * set), so the episodes may be built with the input kernel factored.
 */
function factorsInput(hyper: ReptileOptions, batch: number | undefined): boolean {
  return wholeSetSgd(hyper, batch, Infinity);
}

/**
 * `steps` inner steps of Reptile's inner loop on the names `keys` of `phi`, minibatches of `batch`
 * (calls `each` after every step). Plain SGD on the whole support set steps by the episode's own
 * SGD step, so a batched episode may factor the input kernel (factored-episode.ts); a minibatch
 * is a permutation of the whole set then, the same set every step, and is not gathered.
 */
function innerLoop(e: Episode, keys: readonly string[], phi: Params, hyper: ReptileOptions, lr: number, batch: number | undefined, steps: number, each: (i: number, phi: Params) => boolean): Params {
  const n = e.tasks[0]!.support.xShape[0]!;
  if (wholeSetSgd(hyper, batch, n)) {
    for (let i = 0; i < steps; i++) {
      phi = e.step(keys, phi, lr);
      if (!each(i, phi)) break;
    }
    return phi;
  }
  const factored = factoredKernelIn(phi, keys);
  if (factored) throw new Error(`reptile: '${factored}' is factored, which only plain SGD on the whole support set allows; build the episode without factorInput`);
  const b = batch ?? n;
  // One permutation stream per task: a task's batches do not depend on what shard it is in.
  const perTask = e.tasks.map((t) => minibatchIndices(t.seed, n, b, steps));
  const opt = innerOptimizer(hyper, lr);
  for (let i = 0; i < steps; i++) {
    const mb = minibatch(e, perTask.map((p) => p[i]!));
    const cur = phi;
    const g = tf.grads((...vals: tf.Tensor[]) => taskLoss(e.kind, e.forward({ ...cur, ...fromList(keys, vals) }, mb.x), mb.y))(keys.map((k) => cur[k]!));
    phi = { ...cur, ...opt.step(pick(cur, keys), fromList(keys, g)) };
    if (!each(i, phi)) break;
  }
  return phi;
}

function reptileEpisode(s: LearnerSetup<ReptileOptions>): EpisodeFn {
  const { innerSteps, innerLr } = s.config;
  return (e, theta, firstTask, hooks) => {
    const steps = abortableSteps(hooks, firstTask);
    const pre: QueryReadout = { loss: [], accuracy: [] };
    const post: QueryReadout = { loss: [], accuracy: [] };
    const thetaE = e.expand(theta);
    queryLoss(e, thetaE, pre);
    const phi = innerLoop(e, names(theta), thetaE, s.hyper, innerLr, s.hyper.innerBatchSize, innerSteps, (i) => steps.step(i));
    steps.rethrow();
    queryLoss(e, phi, post);
    return { result: e.delta(phi, thetaE), metrics: taskMetrics(e, pre, post) };
  };
}

/** Query outputs one example at a time, each beside the whole support set (batch statistics over those). */
function perExampleOutputs(e: Episode, phi: Params): tf.Tensor {
  const nq = e.query.x.shape[0]!;
  const ns = e.support.x.shape[0]!;
  const rows: tf.Tensor[] = [];
  for (let j = 0; j < nq; j++) {
    const x = tf.concat([e.support.x, tf.slice(e.query.x, j, 1)], 0);
    rows.push(tf.slice(e.forward(phi, x), ns, 1));
  }
  return tf.concat(rows, 0);
}

/** Test time: the same inner loop (eval batch size), measured transductively or one query at a time. */
function reptileAdaptation(s: LearnerSetup<ReptileOptions>): AdaptAndMeasure {
  const batch = s.hyper.evalInnerBatchSize ?? s.hyper.innerBatchSize;
  return (e, params, steps, record) => {
    const measure = (step: number, phi: Params) => {
      if (steps.includes(step)) record(step, s.hyper.transductive ? e.forward(phi, e.query.x) : perExampleOutputs(e, phi));
    };
    const thetaE = e.expand(params);
    measure(0, thetaE);
    const maxSteps = steps[steps.length - 1] ?? 0;
    if (maxSteps > 0) innerLoop(e, names(params), thetaE, s.hyper, s.config.innerLr, batch, maxSteps, (i, phi) => (measure(i + 1, phi), true));
  };
}

export const reptile = defineLearner<ReptileOptions>({
  name: "reptile",
  title: "Reptile (Nichol et al. 2018)",
  summary: "φ − θ after innerSteps minibatch steps (Adam β1 = 0 by default) on trainShots per class; θ moves by ε·mean, ε annealed",
  options,
  needs: { secondOrder: false, taskKinds: ["regression", "classification"], taskBatching: true },
  stateLayout: "model+reptile",
  pins: ["anneal", "metaLrFinal"],
  trainTask: (config, hyper) => (hyper.trainShots !== undefined && config.task.family !== "sinusoid" ? { shots: hyper.trainShots, queryShots: 1 } : hyper.trainShots !== undefined ? { shots: hyper.trainShots } : {}),
  init: (s, seed) => s.model.init(seed),
  outer: (s) => reptileOuter(s.hyper, s.config.iterations),
  // Plain SGD on whole support sets (no innerBatchSize) is a rank-n change of the input kernel: factor it.
  shardRunner: (s) => episodeRunner(s, reptileEpisode(s), true, { factorInput: factorsInput(s.hyper, s.hyper.innerBatchSize) }),
  evaluate: (s, params, o) =>
    evaluateWith(s.model, s.test, params, o, reptileAdaptation(s), {
      // One-at-a-time prediction runs task by task; its batch statistics are the support set's plus one query.
      batchable: s.hyper.transductive,
      factorInput: factorsInput(s.hyper, s.hyper.evalInnerBatchSize ?? s.hyper.innerBatchSize),
      ...(s.hyper.transductive || s.model.batchNorm === "none" ? {} : { batchNorm: "per-example" as const }),
    }),
  presets: [
    {
      name: "sinusoid-reptile",
      description: "Sinusoid regression, Reptile, 1-40-40-1 MLP",
      source: "Nichol et al. 2018, §5.1 (sine waves): inner SGD on K = 10 points, ε = 1 annealed linearly to 0; here 5 SGD steps α = 0.02 and meta-batch 5 (not tuned)",
      config: { algorithm: "reptile", task: { family: "sinusoid", shots: 10, queryShots: 10 }, model: { kind: "sinusoid-mlp" }, innerSteps: 5, innerLr: 0.02, metaLr: 1, metaBatchSize: 5, shardSize: 5, iterations: 1000, evalSteps: 10, evalTasks: 600, reptile: { innerOptimizer: "sgd" } },
    },
    {
      name: "omniglot-5w1s-reptile-conv4",
      description: "Omniglot 5-way 1-shot, Reptile, Conv4 (stride 2, batch norm), non-transductive",
      source:
        "Nichol et al. 2018, Table 3, with openai/supervised-reptile's command for it: 12 train shots, inner batch 5, 12 inner iterations, Adam β1 = 0 lr 0.00044, meta step 1 annealed to 0, meta-batch 3, 200k iterations, 86 test iterations on batches of 5 (paper: 95.39%). Differs: Adam state fresh per task; the classifier reads the spatial mean",
      config: {
        algorithm: "reptile",
        task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 },
        model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 },
        innerSteps: 12, innerLr: 0.00044, metaLr: 1, metaBatchSize: 3, shardSize: 3, iterations: 200000, evalSteps: 86, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100,
        reptile: { trainShots: 12, innerBatchSize: 5, evalInnerBatchSize: 5, innerOptimizer: "adam", adamBeta1: 0, transductive: false },
      },
    },
    {
      name: "omniglot-5w1s-reptile-conv4-transductive",
      description: "Omniglot 5-way 1-shot, Reptile, Conv4 (stride 2, batch norm), transductive",
      source:
        "Nichol et al. 2018, Table 3 (transductive), supervised-reptile's command: 15 train shots, inner batch 25, 3 inner iterations, Adam β1 = 0 lr 0.001, meta-batch 10, 100k iterations, 5 test iterations on batches of 25, one query per class (paper: 97.68%)",
      config: {
        algorithm: "reptile",
        task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 1 },
        model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 },
        innerSteps: 3, innerLr: 0.001, metaLr: 1, metaBatchSize: 10, shardSize: 5, iterations: 100000, evalSteps: 5, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100,
        reptile: { trainShots: 15, innerBatchSize: 25, evalInnerBatchSize: 25, innerOptimizer: "adam", adamBeta1: 0, transductive: true },
      },
    },
    {
      name: "omniglot-5w1s-reptile-mlp",
      description: "Omniglot 5-way 1-shot, Reptile, MLP 784-256-128-64-64-5 with batch norm, transductive",
      source:
        "Nichol et al. 2018's transductive 1-shot command (15 train shots, inner batch 25, 3 inner iterations, Adam β1 = 0, meta-batch 10, ε 1 annealed to 0, 5 test iterations on batches of 25) on MAML's Omniglot MLP, which the paper does not report; inner lr 0.01 instead of the paper's 0.001 (Conv4), from a sweep of 0.001/0.005/0.01/0.02 on this MLP (bench/RESULTS.md)",
      config: {
        algorithm: "reptile",
        task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 },
        model: { kind: "omniglot-mlp", batchNorm: true },
        innerSteps: 3, innerLr: 0.01, metaLr: 1, metaBatchSize: 10, shardSize: 5, iterations: 100000, evalSteps: 5, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100,
        reptile: { trainShots: 15, innerBatchSize: 25, evalInnerBatchSize: 25, innerOptimizer: "adam", adamBeta1: 0, transductive: true },
      },
    },
  ],
});

/** Internals exposed for unit tests. */
export const _testing = { perExampleOutputs, innerLoop };
