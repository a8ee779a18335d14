// Labelled image sets held in memory, and the generic N-way K-shot classification family over them.
import { Rng, deriveSeed, Stream } from "../rng.js";
import { DataSetLimitError, type Examples, type Task, type TaskFamily, type TaskSplit } from "./types.js";

/** One class of an image set: its images are `imageCount` consecutive images from `firstImage`. */
export interface ImageClass {
  /** Human-readable name, e.g. "Latin/character01" for Omniglot. */
  name: string;
  /** Index (in images, not bytes) of the class's first image in `ImageSet.images`. */
  firstImage: number;
  /** Number of consecutive images of this class. */
  imageCount: number;
  /** Optional super-class, e.g. the Omniglot alphabet; used to hold out whole groups. */
  group?: string;
}

/**
 * A labelled set of single-channel images, all `height`×`width`, as raw bytes.
 * `images` holds imageCount×height×width bytes; image `i` is bytes [i·H·W, (i+1)·H·W), row-major,
 * top row first. A byte `b` becomes the network input `b / 255`. Which end is foreground is the
 * set's own convention (Omniglot, as packed here: ink = 255, background = 0).
 */
export interface ImageSet {
  name: string;
  height: number;
  width: number;
  images: Uint8Array;
  classes: ImageClass[];
}

/** Class indices (into `ImageSet.classes`) that each split draws its tasks from. */
export interface ImageSetSplits {
  train: readonly number[];
  val: readonly number[];
  test: readonly number[];
}

export interface ImageSetFamilyOptions {
  /** Family name reported as `TaskFamily.name`. Required. */
  name: string;
  /** N: classes per task. Required. */
  ways: number;
  /** K: support images per class. Required. */
  shots: number;
  /** Query images per class. Required. */
  queryShots: number;
  /** Which base classes each split uses. A split may be empty; asking it for a task then throws. */
  splits: ImageSetSplits;
  /**
   * Add each class's 90°, 180° and 270° rotations as three further classes (square images only),
   * so a split of n base classes has 4n task classes. Default false.
   */
  rotations?: boolean;
}

/** One task class: a base class of the set, turned `rotation` quarter-turns counter-clockwise. */
export interface TaskClass {
  classIndex: number;
  /** 0, 1, 2 or 3 quarter-turns counter-clockwise. */
  rotation: number;
}

/** What a task was drawn from: its classes (label = position) and the images each example uses. */
export interface TaskDraw {
  classes: TaskClass[];
  /** support[label][shot] = image index in the set; the query likewise. */
  support: number[][];
  query: number[][];
}

/** An N-way K-shot family over an image set, with the introspection tests and tools need. */
export interface ImageSetFamily extends TaskFamily {
  readonly set: ImageSet;
  readonly ways: number;
  readonly shots: number;
  readonly queryShots: number;
  readonly rotations: boolean;
  /** Task classes available in a split (base classes × 4 with rotations). */
  classCount(split: TaskSplit): number;
  /** The base class indices of a split, as given in the options. */
  baseClasses(split: TaskSplit): readonly number[];
  /** The classes and images `task` would use for these arguments (same draw, no pixels). */
  draw(seed: number, split: TaskSplit, iteration: number, taskIndex: number): TaskDraw;
}

const SPLIT_TAG: Record<TaskSplit, number> = { train: Stream.trainTask, val: Stream.valTask, test: Stream.evalTask };
const SPLITS: readonly TaskSplit[] = ["train", "val", "test"];

/** Float value of each byte, so every task maps bytes to exactly the same float32 values. */
const BYTE_TO_UNIT = (() => {
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) t[b] = b / 255;
  return t;
})();

/** Throws if the set's sizes or class ranges are inconsistent; the message says what to fix. */
export function validateImageSet(set: ImageSet): void {
  const where = `image set '${set.name}'`;
  if (!Number.isInteger(set.height) || set.height <= 0 || !Number.isInteger(set.width) || set.width <= 0) {
    throw new Error(`${where}: height and width must be positive integers, got ${set.height}×${set.width}`);
  }
  const pixels = set.height * set.width;
  if (set.images.length % pixels !== 0) {
    throw new Error(
      `${where}: ${set.images.length} image bytes is not a multiple of ${set.height}×${set.width} = ${pixels}; ` +
        `the pixel data must be whole ${set.height}×${set.width} images, one byte per pixel`,
    );
  }
  const imageCount = set.images.length / pixels;
  set.classes.forEach((c, i) => {
    if (!Number.isInteger(c.firstImage) || c.firstImage < 0 || !Number.isInteger(c.imageCount) || c.imageCount < 1) {
      throw new Error(
        `${where}: class ${i} ('${c.name}') needs an integer firstImage ≥ 0 and imageCount ≥ 1, ` +
          `got firstImage ${c.firstImage}, imageCount ${c.imageCount}`,
      );
    }
    if (c.firstImage + c.imageCount > imageCount) {
      throw new Error(
        `${where}: class ${i} ('${c.name}') spans images ${c.firstImage}..${c.firstImage + c.imageCount - 1}, ` +
          `but the set has only ${imageCount} images; fix the class table or the pixel data`,
      );
    }
  });
}

/**
 * Copy image `image` of `set` into `out` at `offset` as floats in [0, 1], turned `rotation`
 * quarter-turns counter-clockwise (exact: a permutation of the pixels; needs height = width).
 * Rotation k maps output pixel (r, c) of an n×n image to source pixel:
 * k=0 (r, c); k=1 (c, n−1−r); k=2 (n−1−r, n−1−c); k=3 (n−1−c, r) — numpy's `rot90(img, k)`.
 */
export function writeImage(set: ImageSet, image: number, rotation: number, out: Float32Array, offset: number): void {
  const { height: h, width: w, images } = set;
  const base = image * h * w;
  const n = h;
  const k = rotation & 3;
  if (k !== 0 && h !== w) throw new Error(`image set '${set.name}': cannot rotate ${h}×${w} images (not square)`);
  let o = offset;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      let src: number;
      if (k === 0) src = r * w + c;
      else if (k === 1) src = c * n + (n - 1 - r);
      else if (k === 2) src = (n - 1 - r) * n + (n - 1 - c);
      else src = (n - 1 - c) * n + r;
      out[o++] = BYTE_TO_UNIT[images[base + src]!]!;
    }
  }
}

/**
 * N-way K-shot classification tasks over an image set.
 *
 * A task for (seed, split, iteration, taskIndex) uses `new Rng(deriveSeed(seed, splitTag,
 * iteration, taskIndex))` to draw, in this order: `ways` distinct task classes of the split
 * (`Rng.sample`; label = position in that draw), then, for label 0, 1, …, `shots + queryShots`
 * distinct images of that class (`Rng.sample`); the first `shots` go to the support set, the rest to
 * the query set. Examples are interleaved shot-major: example `j·ways + label` is shot `j` of
 * `label`, so y = [0, 1, …, ways−1, 0, 1, …]. x is float32 NHWC [n, H, W, 1] with values byte/255;
 * y is an Int32Array of labels.
 */
export function imageSetFamily(set: ImageSet, opts: ImageSetFamilyOptions): ImageSetFamily {
  validateImageSet(set);
  const { ways, shots, queryShots, name } = opts;
  const rotations = opts.rotations ?? false;
  const where = `${name}`;
  for (const [k, v] of [["ways", ways], ["shots", shots], ["queryShots", queryShots]] as const) {
    const min = k === "queryShots" ? 0 : 1;
    if (!Number.isInteger(v) || v < min) throw new Error(`${where}: ${k} must be an integer ≥ ${min}, got ${v}`);
  }
  if (rotations && set.height !== set.width) {
    throw new Error(
      `${where}: rotations need square images, but '${set.name}' is ${set.height}×${set.width}; set rotations: false`,
    );
  }
  const perClass = shots + queryShots;
  const rotCount = rotations ? 4 : 1;
  const splits = {} as Record<TaskSplit, readonly number[]>;
  for (const split of SPLITS) {
    const classes = opts.splits[split];
    const seen = new Set<number>();
    for (const ci of classes) {
      const c = Number.isInteger(ci) ? set.classes[ci] : undefined;
      if (!c) {
        throw new Error(`${where}: split '${split}' names class ${ci}, but '${set.name}' has classes 0..${set.classes.length - 1}`);
      }
      if (seen.has(ci)) throw new Error(`${where}: split '${split}' lists class ${ci} ('${c.name}') twice`);
      seen.add(ci);
      if (c.imageCount < perClass) {
        throw new DataSetLimitError(
          `${where}: class ${ci} ('${c.name}') of split '${split}' has ${c.imageCount} images, but a task needs ` +
            `shots + queryShots = ${shots} + ${queryShots} = ${perClass} distinct images per class; ` +
            `lower shots/queryShots or leave the class out of the split`,
        );
      }
    }
    if (classes.length > 0 && classes.length * rotCount < ways) {
      throw new DataSetLimitError(
        `${where}: split '${split}' has ${classes.length * rotCount} classes, fewer than ways = ${ways}; ` +
          `lower ways or put more classes in the split`,
      );
    }
    splits[split] = [...classes];
  }

  const classCount = (split: TaskSplit): number => splits[split].length * rotCount;

  const draw = (seed: number, split: TaskSplit, iteration: number, taskIndex: number): TaskDraw => {
    const base = splits[split];
    if (base.length === 0) {
      throw new Error(`${where}: split '${split}' has no classes, so it has no tasks; give it classes in the options`);
    }
    const rng = new Rng(deriveSeed(seed, SPLIT_TAG[split], iteration, taskIndex));
    // Task class p is base class base[floor(p / rotCount)] turned (p % rotCount) quarter-turns.
    const picked = rng.sample(classCount(split), ways);
    const classes: TaskClass[] = picked.map((p) => ({ classIndex: base[Math.floor(p / rotCount)]!, rotation: p % rotCount }));
    const support: number[][] = [];
    const query: number[][] = [];
    for (const { classIndex } of classes) {
      const c = set.classes[classIndex]!;
      const imgs = rng.sample(c.imageCount, perClass).map((i) => c.firstImage + i);
      support.push(imgs.slice(0, shots));
      query.push(imgs.slice(shots));
    }
    return { classes, support, query };
  };

  const pixels = set.height * set.width;
  const examples = (classes: TaskClass[], images: number[][], k: number): Examples => {
    const n = k * ways;
    const x = new Float32Array(n * pixels);
    const y = new Int32Array(n);
    for (let j = 0; j < k; j++) {
      for (let label = 0; label < ways; label++) {
        const e = j * ways + label;
        writeImage(set, images[label]![j]!, classes[label]!.rotation, x, e * pixels);
        y[e] = label;
      }
    }
    return { x, xShape: [n, set.height, set.width, 1], y };
  };

  return {
    name,
    kind: "classification",
    inputShape: [set.height, set.width, 1],
    outputs: ways,
    set,
    ways,
    shots,
    queryShots,
    rotations,
    classCount,
    baseClasses: (split) => splits[split],
    draw,
    task(seed: number, split: TaskSplit, iteration: number, taskIndex: number): Task {
      const d = draw(seed, split, iteration, taskIndex);
      return {
        support: examples(d.classes, d.support, shots),
        query: examples(d.classes, d.query, queryShots),
        seed: deriveSeed(seed, Stream.adaptation, SPLIT_TAG[split], iteration, taskIndex),
      };
    },
  };
}
