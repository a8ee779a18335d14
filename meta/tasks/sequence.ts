// Image-sequence episodes for memory-augmented learners (Santoro et al. 2016, §2 and Fig. 1): N
// classes × M instances shown one step at a time, labels shuffled per episode and shown one step late.
import { z } from "zod";
import { deriveSeed, Rng, Stream } from "../rng.js";
import { imageSetFamily, validateImageSet, writeImage, type ImageSet, type ImageSetSplits, type TaskClass } from "./imageset.js";
import { omniglotLimits, omniglotSplits, type OmniglotResolution, type OmniglotSplit } from "./omniglot.js";
import type { DataPort, Examples, FamilySpec, Task, TaskFamily, TaskSplit } from "./types.js";

export interface ImageSequenceOptions {
  /** Family name reported as `TaskFamily.name`. Required. */
  name: string;
  /** N: classes per episode (Santoro et al.: 5). Required. */
  ways: number;
  /** M: instances of each class per episode (Santoro et al.: 10, so 50 steps). Required. */
  instances: number;
  /** Side of the square images the learner sees, area-resampled from the set's (Santoro et al.: 20). Required. */
  size: number;
  /** Which base classes each split uses, as for `imageSetFamily`. Required. */
  splits: ImageSetSplits;
  /** 90°, 180° and 270° rotations as further classes (square images only). Default false. */
  rotations?: boolean;
}

/** What an episode was drawn from: its classes (label = position) and, per step, the label and image shown. */
export interface SequenceDraw {
  classes: TaskClass[];
  /** steps[t] = { label, image }: the image index in the set shown at step t, and its label. */
  steps: { label: number; image: number }[];
}

/** A sequence family over an image set, with the introspection tests and tools need. */
export interface ImageSequenceFamily extends TaskFamily {
  readonly kind: "sequence";
  readonly set: ImageSet;
  readonly ways: number;
  readonly instances: number;
  readonly size: number;
  /** Steps per episode, ways × instances. */
  readonly length: number;
  /** The classes and images `task` would use for these arguments (same draw, no pixels). */
  draw(seed: number, split: TaskSplit, iteration: number, taskIndex: number): SequenceDraw;
}

const SPLIT_TAG: Record<TaskSplit, number> = { train: Stream.trainTask, val: Stream.valTask, test: Stream.evalTask };

/**
 * Per-axis weights of an area (box-filter) resampling from `from` pixels to `to` (to ≤ from):
 * output pixel o covers source [o·from/to, (o+1)·from/to); source pixel s gets the weight of its
 * overlap with that interval divided by the interval's length. In units of 1/to of a source pixel
 * both ends are integers (o·from and s·to), so the weights are exact ratios of integers, the same
 * on every machine. Returns for each output pixel its [source index, weight] pairs (weights sum to 1).
 */
export function areaWeights(from: number, to: number): [number, number][][] {
  if (!Number.isInteger(from) || !Number.isInteger(to) || to < 1 || to > from) {
    throw new Error(`area resampling needs integer sides with 1 ≤ to ≤ from, got ${from} → ${to}`);
  }
  const out: [number, number][][] = [];
  for (let o = 0; o < to; o++) {
    const lo = o * from;
    const hi = (o + 1) * from;
    const row: [number, number][] = [];
    for (let s = Math.floor(lo / to); s * to < hi; s++) {
      const overlap = Math.min(hi, (s + 1) * to) - Math.max(lo, s * to);
      if (overlap > 0) row.push([s, overlap / from]);
    }
    out.push(row);
  }
  return out;
}

/**
 * Area-resample the square `from`×`from` image at `src[srcOffset…]` to `size`×`size` at
 * `out[outOffset…]` (row-major): out(i, j) = Σ_r Σ_c w_i(r) w_j(c) src(r, c), summed in float64 in
 * a fixed order, then rounded to float32 — like PIL's BOX filter or OpenCV's INTER_AREA. `weights`
 * from `areaWeights(from, size)`.
 */
export function areaResample(src: Float32Array, srcOffset: number, from: number, weights: [number, number][][], out: Float32Array, outOffset: number): void {
  const size = weights.length;
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      let v = 0;
      for (const [r, wr] of weights[i]!) {
        let row = 0;
        for (const [c, wc] of weights[j]!) row += wc * src[srcOffset + r * from + c]!;
        v += wr * row;
      }
      out[outOffset + i * size + j] = v;
    }
  }
}

/**
 * The step (0-based) at which each step's class is shown for the k-th time, k = 1…: instance[t] =
 * 1 + the number of earlier steps with label y[t] (Santoro et al.'s "instance" in Table 1).
 */
export function instanceIndex(y: ArrayLike<number>): Int32Array {
  const seen = new Map<number, number>();
  const out = new Int32Array(y.length);
  for (let t = 0; t < y.length; t++) {
    const k = (seen.get(y[t]!) ?? 0) + 1;
    seen.set(y[t]!, k);
    out[t] = k;
  }
  return out;
}

/**
 * Episodes of N classes × M instances over an image set, as Santoro et al. 2016 (the task of their Fig. 1):
 * a task for (seed, split, iteration, taskIndex) draws with `new Rng(deriveSeed(seed, splitTag,
 * iteration, taskIndex))`, in this order: N distinct task classes of the split (`Rng.sample`, in
 * random order: label = position in that draw, so labels are assigned afresh every episode); for
 * label 0, 1, …, M distinct images of that class (`Rng.sample`); then the presentation order, a
 * uniform shuffle of the N·M (label, image) pairs (`Rng.shuffle`; the reference code shuffles the same
 * way, so a class's instances are not spread evenly).
 *
 * The episode is the task's `query`, one example per step in presentation order; `support` is empty
 * ([0, D]). Row t of x (D = size² + N features) is the image of step t, turned by its class's
 * rotation, area-resampled to size×size (row-major, values in [0, 1]), followed by the one-hot label
 * of step t − 1 — zeros at t = 0 (the label is shown one step late: the learner must predict y_t
 * before it is told). y[t] is the label of step t (Int32Array).
 */
export function imageSequenceFamily(set: ImageSet, opts: ImageSequenceOptions): ImageSequenceFamily {
  const { name, ways, instances, size } = opts;
  for (const [k, v] of [["ways", ways], ["instances", instances], ["size", size]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k} must be an integer ≥ 1, got ${v}`);
  }
  if (set.height !== set.width) throw new Error(`${name}: image sequences need square images, '${set.name}' is ${set.height}×${set.width}`);
  if (size > set.height) throw new Error(`${name}: size ${size} is larger than the images (${set.height}×${set.width}); area resampling only shrinks — lower size or use larger images`);
  validateImageSet(set);
  // The classification family over the same splits checks them (classes exist, each has enough
  // images, a split holds at least N classes) and answers classCount and the class draw's pool.
  const pool = imageSetFamily(set, { name, ways, shots: instances, queryShots: 0, splits: opts.splits, rotations: opts.rotations ?? false });
  const rotCount = pool.rotations ? 4 : 1;
  const side = set.height;
  const weights = areaWeights(side, size);
  const pixels = size * size;
  const features = pixels + ways;
  const length = ways * instances;

  const draw = (seed: number, split: TaskSplit, iteration: number, taskIndex: number): SequenceDraw => {
    const base = pool.baseClasses(split);
    if (base.length === 0) throw new Error(`${name}: split '${split}' has no classes, so it has no tasks; give it classes in the options`);
    const rng = new Rng(deriveSeed(seed, SPLIT_TAG[split], iteration, taskIndex));
    const classes: TaskClass[] = rng.sample(pool.classCount(split), ways).map((p) => ({ classIndex: base[Math.floor(p / rotCount)]!, rotation: p % rotCount }));
    const steps: { label: number; image: number }[] = [];
    classes.forEach(({ classIndex }, label) => {
      const c = set.classes[classIndex]!;
      for (const i of rng.sample(c.imageCount, instances)) steps.push({ label, image: c.firstImage + i });
    });
    rng.shuffle(steps);
    return { classes, steps };
  };

  const scratch = new Float32Array(side * side);
  const sequence = (d: SequenceDraw): Examples => {
    const x = new Float32Array(length * features);
    const y = new Int32Array(length);
    d.steps.forEach(({ label, image }, t) => {
      writeImage(set, image, d.classes[label]!.rotation, scratch, 0);
      areaResample(scratch, 0, side, weights, x, t * features);
      if (t > 0) x[t * features + pixels + d.steps[t - 1]!.label] = 1;
      y[t] = label;
    });
    return { x, xShape: [length, features], y };
  };

  return {
    name,
    kind: "sequence",
    inputShape: [features],
    outputs: ways,
    set,
    ways,
    instances,
    size,
    length,
    draw,
    task(seed: number, split: TaskSplit, iteration: number, taskIndex: number): Task {
      return {
        support: { x: new Float32Array(0), xShape: [0, features], y: new Int32Array(0) },
        query: sequence(draw(seed, split, iteration, taskIndex)),
        seed: deriveSeed(seed, Stream.adaptation, SPLIT_TAG[split], iteration, taskIndex),
      };
    },
  };
}

type OmniglotSequenceConfig = {
  family: "omniglot-sequence";
  split: OmniglotSplit;
  ways: number;
  instances: number;
  size: number;
  resolution: OmniglotResolution;
  dataDir?: string | undefined;
};

/** The family of a `task` config, checking that the data port loaded the resolution asked for. */
function buildOmniglotSequence(o: OmniglotSequenceConfig, data: DataPort): ImageSequenceFamily {
  const sets = data.omniglot(o.dataDir, o.resolution);
  if (sets.background.height !== o.resolution || sets.evaluation.height !== o.resolution) {
    throw new Error(`omniglot-sequence: task.resolution is ${o.resolution}, but the data port gave ${sets.background.height}×${sets.background.width} images; pass the resolution on to loadOmniglot (storage/datasets.ts)`);
  }
  const { set, splits } = omniglotSplits(sets, o.split);
  return imageSequenceFamily(set, { name: `omniglot-sequence-${o.split}`, ways: o.ways, instances: o.instances, size: o.size, splits, rotations: o.split === "vinyals" });
}

export const omniglotSequenceSpec: FamilySpec<OmniglotSequenceConfig> = {
  family: "omniglot-sequence",
  schema: z.object({
    family: z.literal("omniglot-sequence").describe("Omniglot image sequences for memory-augmented learners (Santoro et al. 2016): N classes × M instances per episode, labels shuffled per episode and shown one step late."),
    split: z.enum(["vinyals", "background-evaluation"]).default("vinyals").describe("`vinyals`: 1200 train / 423 test characters with rotations as new classes (Santoro et al.: 1200 / 423 [unverified: their rotations also augment]); `background-evaluation`: the authors' split."),
    ways: z.number().int().min(2).max(1000).default(5).describe("N: classes per episode (Santoro et al. Table 1: 5)."),
    instances: z.number().int().min(1).max(20).default(10).describe("M: instances of each class per episode (Santoro et al.: 10, so 50 steps)."),
    size: z.number().int().min(1).max(105).default(20).describe("Side of the images the learner sees, area-resampled from task.resolution (Santoro et al.: 20×20); at most task.resolution."),
    resolution: z.literal([28, 105]).default(28).describe("Source images: 28×28 (area-averaged) or the original 105×105 (Santoro et al. downscaled the originals)."),
    dataDir: z.string().optional().describe("Directory of the packed dataset; default `METATRAIN_OMNIGLOT_DIR` or the repository's shared data."),
  }),
  kind: "sequence",
  summary: "Omniglot image sequences, N classes × M instances, labels shuffled per episode and shown one step late (Santoro et al. 2016)",
  shape: (o) => ({ inputShape: [o.size * o.size + o.ways], outputs: o.ways }),
  limits: (o) => omniglotLimits(o, o.instances, "instances"),
  build: buildOmniglotSequence,
};
