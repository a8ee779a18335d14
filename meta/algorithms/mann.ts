// Memory-augmented neural networks (Santoro et al. 2016): one task is one episode, a sequence of
// N classes × M instances whose labels arrive one step late; the network (meta/models/mann.ts: an
// LSTM controller with an LRUA memory, wiped per episode) predicts each step's label. An episode
// contributes the gradient of its mean cross-entropy over all steps — plain backpropagation through
// the sequence, no inner loop (the slow weights learn across episodes, the memory within one); Adam
// applies the mean. It adapts at test time only through its memory and state within the episode.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import type { EvaluationResult, MeanCI } from "../evaluate.js";
import { meanCI } from "../evaluate.js";
import { logSoftmax } from "../losses.js";
import { mannOf, type MannModel } from "../models/mann.js";
import { adam } from "../optimizers.js";
import { fromList, names, type Params } from "../params.js";
import { instanceIndex } from "../tasks/sequence.js";
import type { Task, TaskFamily } from "../tasks/types.js";
import { abortableSteps, runEpisodes, type Episode, type EpisodeFn } from "./episodes.js";
import { defineLearner, type LearnerEvalOptions, type LearnerSetup, type ShardRunner } from "./learner.js";
import type { TaskMetrics } from "./types.js";

const options = z.object({});
export type MannOptions = z.infer<typeof options>;

/** Per-step cross-entropy −log softmax(logits)_y, [B, T], of logits and one-hot targets [B, T, N]. */
export function stepLosses(logits: tf.Tensor3D, onehot: tf.Tensor3D): tf.Tensor2D {
  return tf.neg(tf.sum(tf.mul(onehot, logSoftmax(logits)), -1)) as tf.Tensor2D;
}

/** An episode's inputs and one-hot targets as [B, T, ·]: one task's [T, ·] gains a batch axis of 1. */
function sequencesOf(e: Episode): { x: tf.Tensor3D; y: tf.Tensor3D } {
  const lift = (t: tf.Tensor) => (t.rank === 2 ? tf.expandDims(t, 0) : t) as tf.Tensor3D;
  return { x: lift(e.query.x), y: lift(e.query.y) };
}

/**
 * One shard group's contribution: the gradient of Σ_b (1/T) Σ_t −log p(y_bt) over its B sequences,
 * all at the same θ — Σ_b of each episode's own gradient (the loss is a sum of per-episode terms),
 * computed in one backward pass. Each episode's loss and accuracy (over all its steps) are read inside
 * the tape; nothing adapts, so they are both the "pre" and the "post" metrics. One hook step per group.
 */
export function mannEpisode(model: MannModel): EpisodeFn {
  return (e, theta, firstTask, hooks) => {
    const keys = names(theta);
    const steps = abortableSteps(hooks, firstTask);
    const { x, y } = sequencesOf(e);
    let loss: number[] = [];
    let acc: number[] = [];
    const g = tf.grads((...vals: tf.Tensor[]) => {
      const logits = model.sequences(fromList(keys, vals), x);
      const perEpisode = tf.mean(stepLosses(logits, y), -1);
      loss = Array.from(perEpisode.dataSync());
      acc = Array.from(tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), tf.argMax(y, -1)), "float32"), -1).dataSync());
      return tf.sum(perEpisode) as tf.Scalar;
    })(keys.map((k) => theta[k]!));
    steps.step(0);
    steps.rethrow();
    const metrics: TaskMetrics[] = loss.map((l, i) => ({ preLoss: l, postLoss: l, preAccuracy: acc[i]!, postAccuracy: acc[i]! }));
    return { result: fromList(keys, g), metrics };
  };
}

/**
 * The shard runner. With `batchTasks` the shard's sequences run as one batch (shared θ, one forward
 * and one backward): the sum over its tasks equals the task-by-task sum up to float rounding, and
 * since shards are fixed by `shardSize`, never by the worker count, results stay bit-identical
 * across worker counts. Without it each task runs alone and the results fold left in task order.
 */
export function mannRunner(s: LearnerSetup): ShardRunner {
  const model = mannOf(s.model);
  const batched = s.config.batchTasks;
  const fn = mannEpisode(model);
  return { batched, runShard: (theta, tasks, hooks) => runEpisodes(theta, tasks, { model, kind: "sequence", batched, classes: s.train.outputs }, fn, hooks) };
}

/** Inputs [B, T, D] and labels of equally long sequence tasks, as plain arrays made into one tensor. */
function stack(tasks: readonly Task[]): { x: tf.Tensor3D; labels: Int32Array[] } {
  const [T, D] = tasks[0]!.query.xShape as [number, number];
  const flat = new Float32Array(tasks.length * T * D);
  tasks.forEach((t, b) => {
    if (t.query.xShape[0] !== T || t.query.xShape[1] !== D) throw new Error(`sequence tasks of one evaluation chunk differ in shape: [${t.query.xShape}] vs [${T}, ${D}]`);
    flat.set(t.query.x, b * T * D);
  });
  return { x: tf.tensor3d(flat, [tasks.length, T, D]), labels: tasks.map((t) => t.query.y as Int32Array) };
}

/**
 * Held-out episodes, `o.batch` (default 50) at a time: each episode's mean loss and accuracy over
 * all steps, and its accuracy at the k-th instance of a class — the fraction of the N classes whose
 * k-th presentation is labelled right (Santoro et al. Table 1; the reference's `accuracy_instance`)
 * — each as a mean over episodes with its 95% CI. Every step count asked for reports the same
 * numbers: nothing adapts by gradient steps.
 */
export async function evaluateSequences(model: MannModel, family: TaskFamily, params: Params, o: LearnerEvalOptions): Promise<EvaluationResult> {
  const total = o.tasks ?? 600;
  const split = o.split ?? "test";
  const batch = Math.max(1, o.batch ?? 50);
  const losses: number[] = [];
  const accs: number[] = [];
  const byInstance: number[][] = [];
  for (let start = 0; start < total; start += batch) {
    const count = Math.min(batch, total - start);
    const tasks = Array.from({ length: count }, (_, j) => family.task(o.seed, split, 0, start + j));
    const { x, labels } = stack(tasks);
    let ceData: Float32Array | Int32Array | Uint8Array;
    let predData: Float32Array | Int32Array | Uint8Array;
    try {
      [ceData, predData] = tf.tidy(() => {
        const logits = model.sequences(params, x);
        const onehot = tf.cast(tf.oneHot(tf.tensor2d(labels.map((l) => Array.from(l)), undefined, "int32"), family.outputs), "float32") as tf.Tensor3D;
        return [stepLosses(logits, onehot).dataSync(), tf.argMax(logits, -1).dataSync()];
      });
    } finally {
      x.dispose();
    }
    labels.forEach((y, b) => {
      const T = y.length;
      const inst = instanceIndex(y);
      let lossSum = 0;
      let right = 0;
      const hits: number[] = [];
      const seen: number[] = [];
      for (let t = 0; t < T; t++) {
        const ok = predData[b * T + t] === y[t] ? 1 : 0;
        lossSum += ceData[b * T + t]!;
        right += ok;
        const k = inst[t]! - 1;
        hits[k] = (hits[k] ?? 0) + ok;
        seen[k] = (seen[k] ?? 0) + 1;
      }
      losses.push(lossSum / T);
      accs.push(right / T);
      seen.forEach((n, k) => (byInstance[k] ??= []).push(hits[k]! / n));
    });
    o.onTask?.(start + count, total);
    // Let timers and I/O run between chunks on long evaluations.
    await new Promise((r) => setTimeout(r, 0));
  }
  const loss = meanCI(losses);
  const accuracy = meanCI(accs);
  return {
    family: family.name,
    model: model.name,
    split,
    batchNorm: "none",
    results: [...new Set(o.steps)].sort((a, b) => a - b).map((steps) => ({ steps, loss, accuracy })),
    byInstance: byInstance.map((xs): MeanCI => meanCI(xs)),
  };
}

/** Santoro et al.'s Table 1 (5 classes, one-hot labels): accuracy % at the 1st, 2nd, 3rd, 4th, 5th and 10th instance. */
export const SANTORO_TABLE1 = {
  instances: [1, 2, 3, 4, 5, 10],
  mann: [36.4, 82.8, 91.0, 92.6, 94.9, 98.1],
  lstm: [24.4, 49.5, 55.3, 61.0, 63.6, 62.5],
} as const;

/**
 * The run settings the Omniglot presets share: Adam 1e-3 on 16 episodes per update for 100,000
 * updates — the settings of Leputa/MANN-meta-learning, a reproduction that reaches Table 1 (its MANN:
 * 35.4 / 89.2 / 95.2 / 96.3 / 96.9 / 97.8) — and 1,000 test episodes.
 */
const PAPER_RUN = {
  metaLr: 0.001,
  metaBatchSize: 16,
  shardSize: 8,
  iterations: 100000,
  evalSteps: 0,
  evalTasks: 1000,
  evalEvery: 1000,
  checkpointEvery: 100,
} as const;
const PAPER_TASK = { family: "omniglot-sequence", split: "vinyals", ways: 5, instances: 10, size: 20, resolution: 28 } as const;
const PAPER_DEPARTURES =
  "Departs: Adam 1e-3 as the reference code tristandeleu/ntm-one-shot, 16 episodes per update for 100,000 updates (1.6M episodes) as the reproduction Leputa/MANN-meta-learning (the paper's optimiser, batch and episode count are not verified here); 20×20 images area-resampled from the 28×28 set (task.resolution: 105 for the originals), without the paper's random translations and small rotations; 1,000 test episodes";
const fmt = (xs: readonly number[]) => xs.join(" / ");

export const mann = defineLearner<MannOptions>({
  name: "mann",
  title: "Memory-augmented neural network with LRUA (Santoro et al. 2016)",
  summary: "gradient of the episode's mean cross-entropy over its steps, backpropagated through the sequence (an LSTM controller with an LRUA memory, wiped per episode; labels shown one step late); Adam (metaLr)",
  options,
  needs: { secondOrder: false, taskKinds: ["sequence"], taskBatching: true, modelKinds: ["mann"] },
  stateLayout: "mann+adam",
  pins: [],
  init: (s, seed) => mannOf(s.model).init(seed),
  outer: () => adam(),
  shardRunner: mannRunner,
  evaluate: (s, params, o) => evaluateSequences(mannOf(s.model), s.test, params, o),
  presets: [
    // First: the cheapest, which test/integration/learner-presets.test.ts runs.
    {
      name: "omniglot-3c-mann-tiny",
      description: "Omniglot sequences of 3 classes × 3 instances at 10×10, a tiny MANN (16 controller units, 16 × 8 memory, 2 read heads): a smoke test",
      source: "Santoro et al. 2016's episode and LRUA memory at toy size (not a paper setting): 9-step episodes, 16-unit controller, 16 × 8 memory, 2 read heads, Adam 1e-3",
      config: {
        algorithm: "mann",
        task: { family: "omniglot-sequence", split: "vinyals", ways: 3, instances: 3, size: 10, resolution: 28 },
        model: { kind: "mann", controllerSize: 16, memorySlots: 16, memoryWidth: 8, readHeads: 2 },
        metaLr: 0.001,
        metaBatchSize: 4,
        shardSize: 2,
        iterations: 200,
        evalSteps: 0,
        evalTasks: 100,
        evalEvery: 50,
        checkpointEvery: 50,
      },
    },
    {
      name: "omniglot-5c-mann",
      description: "Omniglot sequences of 5 classes × 10 instances at 20×20, MANN with an LRUA memory (200-unit LSTM controller, 128 × 40 memory, 4 read heads)",
      source: `Santoro et al. 2016, §4 and Table 1: 5 classes × 10 instances per episode, labels shuffled per episode and shown one step late, 20×20 images, LSTM controller of 200 units, memory 128 × 40, 4 read heads, usage decay γ = 0.99, 1200 training / 423 test characters with rotations as new classes (paper, 1st/2nd/3rd/4th/5th/10th instance: ${fmt(SANTORO_TABLE1.mann)}%). ${PAPER_DEPARTURES}`,
      config: {
        algorithm: "mann",
        task: PAPER_TASK,
        model: { kind: "mann", controllerSize: 200, memory: true, memorySlots: 128, memoryWidth: 40, readHeads: 4, usageDecay: 0.99, leastUsed: "per-head" },
        ...PAPER_RUN,
      },
    },
    {
      name: "omniglot-5c-lstm",
      description: "Omniglot sequences of 5 classes × 10 instances at 20×20, the LSTM baseline: the same 200-unit controller without memory",
      source: `Santoro et al. 2016, Table 1's LSTM row: the same episodes and controller with no external memory (paper, 1st/2nd/3rd/4th/5th/10th instance: ${fmt(SANTORO_TABLE1.lstm)}%). ${PAPER_DEPARTURES}`,
      config: {
        algorithm: "mann",
        task: PAPER_TASK,
        model: { kind: "mann", controllerSize: 200, memory: false },
        ...PAPER_RUN,
      },
    },
  ],
});
