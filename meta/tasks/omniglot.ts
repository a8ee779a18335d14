// Omniglot N-way K-shot tasks in the two standard splits: Vinyals et al.'s (MAML, Reptile) and the authors'.
import { z } from "zod";
import { Rng } from "../rng.js";
import type { DataPort, FamilySpec } from "./types.js";
import { imageSetFamily, validateImageSet, type ImageSet, type ImageSetFamily, type ImageSetSplits } from "./imageset.js";

/** The two Omniglot sets as packed (see storage/datasets.ts `loadOmniglot`). */
export interface OmniglotData {
  background: ImageSet;
  evaluation: ImageSet;
}

export type OmniglotSplit = "vinyals" | "background-evaluation";

/** Image side: the 28×28 area-averaged images (MAML and most papers) or the original 105×105 (Koch et al.). */
export type OmniglotResolution = 28 | 105;

/** Seed of the fixed permutation of the 1623 pooled characters in the "vinyals" split. */
export const VINYALS_SPLIT_SEED = 1;
/** Characters of the "vinyals" split's training pool (train + optional validation); the rest are test. */
export const VINYALS_TRAIN_CHARACTERS = 1200;
/** With `validation: true`, the last this-many of the 1200 training characters become validation. */
export const VINYALS_VAL_CHARACTERS = 100;
/**
 * With `validation: true`, the "background-evaluation" split holds these background alphabets out of
 * training for validation: the last five in storage order (151 characters).
 */
export const BACKGROUND_VAL_ALPHABETS: readonly string[] = [
  "Ojibwe_(Canadian_Aboriginal_Syllabics)",
  "Sanskrit",
  "Syriac_(Estrangelo)",
  "Tagalog",
  "Tifinagh",
];

export interface OmniglotOptions {
  /** N: classes per task. Required (papers: 5 or 20). */
  ways: number;
  /** K: support images per class. Required (papers: 1 or 5). */
  shots: number;
  /** Query images per class; shots + queryShots ≤ 20. Required. */
  queryShots: number;
  /** Which split. Required. */
  split: OmniglotSplit;
  /**
   * Hold out a validation split. Default false (train uses the whole training pool, val is empty).
   * "vinyals": the last 100 of the 1200 training characters (MAML's choice: 1100 train / 100 val).
   * "background-evaluation": the background alphabets in `BACKGROUND_VAL_ALPHABETS`.
   */
  validation?: boolean;
  /** 90°/180°/270° rotations as extra classes. Default true for "vinyals", false otherwise. */
  rotations?: boolean;
}

/** Drawings of each Omniglot character (the data's README): shots + queryShots must fit in them. */
export const OMNIGLOT_DRAWINGS = 20;
/** Characters in the authors' background and evaluation sets (the data's README). */
export const OMNIGLOT_CHARACTERS = { background: 964, evaluation: 659 } as const;

/**
 * Task classes of a split's train and test pools as `omniglotSplits` (validation: false) and the
 * families' rotations make them: "vinyals" 1200 / 423 characters × 4 rotations, the authors' split
 * 964 / 659 characters.
 */
export function omniglotClassCounts(split: OmniglotSplit): { train: number; test: number } {
  const total = OMNIGLOT_CHARACTERS.background + OMNIGLOT_CHARACTERS.evaluation;
  return split === "vinyals"
    ? { train: 4 * VINYALS_TRAIN_CHARACTERS, test: 4 * (total - VINYALS_TRAIN_CHARACTERS) }
    : { train: OMNIGLOT_CHARACTERS.background, test: OMNIGLOT_CHARACTERS.evaluation };
}

/**
 * Data-set limits of an Omniglot task config, known without loading the data: `perClass` distinct
 * drawings of each class (`perKey` names the keys that add up to it) and `ways` classes in both the
 * train and the test pool of the split. The family checks the same against the loaded data.
 */
export function omniglotLimits(o: { split: OmniglotSplit; ways: number }, perClass: number, perKeys: string): { key: string; message: string }[] {
  const out: { key: string; message: string }[] = [];
  if (perClass > OMNIGLOT_DRAWINGS) {
    out.push({ key: perKeys.split(" ")[0]!, message: `${perKeys} = ${perClass} images per class, but each Omniglot character has ${OMNIGLOT_DRAWINGS} drawings; lower them to a total ≤ ${OMNIGLOT_DRAWINGS}` });
  }
  const counts = omniglotClassCounts(o.split);
  const fewest = Math.min(counts.train, counts.test);
  if (o.ways > fewest) {
    const which = counts.test <= counts.train ? "test" : "train";
    out.push({ key: "ways", message: `ways ${o.ways} is more than the ${fewest} classes of the '${o.split}' split's ${which} pool; set ways ≤ ${fewest}${o.split === "background-evaluation" ? " or split: vinyals" : ""}` });
  }
  return out;
}

/** Concatenations of (background, evaluation), so repeated families share one 25 MB copy. */
const pooledCache = new WeakMap<ImageSet, WeakMap<ImageSet, ImageSet>>();

/** All 1623 characters in one set: background classes (in storage order) then evaluation classes. */
export function poolOmniglot(data: OmniglotData): ImageSet {
  const { background: bg, evaluation: ev } = data;
  const hit = pooledCache.get(bg)?.get(ev);
  if (hit) return hit;
  validateImageSet(bg);
  validateImageSet(ev);
  if (bg.height !== ev.height || bg.width !== ev.width) {
    throw new Error(`Omniglot sets differ in image size: ${bg.height}×${bg.width} vs ${ev.height}×${ev.width}`);
  }
  const images = new Uint8Array(bg.images.length + ev.images.length);
  images.set(bg.images, 0);
  images.set(ev.images, bg.images.length);
  const shift = bg.images.length / (bg.height * bg.width);
  const pooled: ImageSet = {
    name: "omniglot",
    height: bg.height,
    width: bg.width,
    images,
    classes: [...bg.classes, ...ev.classes.map((c) => ({ ...c, firstImage: c.firstImage + shift }))],
  };
  let inner = pooledCache.get(bg);
  if (!inner) pooledCache.set(bg, (inner = new WeakMap()));
  inner.set(ev, pooled);
  return pooled;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

/** The set and base class indices of a split, without building the family (for tests and tools). */
export function omniglotSplits(
  data: OmniglotData,
  split: OmniglotSplit,
  validation = false,
): { set: ImageSet; splits: ImageSetSplits } {
  if (split === "vinyals") {
    const set = poolOmniglot(data);
    if (set.classes.length <= VINYALS_TRAIN_CHARACTERS) {
      throw new Error(
        `Omniglot 'vinyals' split needs more than ${VINYALS_TRAIN_CHARACTERS} characters, the data has ${set.classes.length}`,
      );
    }
    // A fixed permutation, the same on every machine: the split must never depend on the run seed.
    const perm = new Rng(VINYALS_SPLIT_SEED).shuffle(range(0, set.classes.length));
    const nTrain = validation ? VINYALS_TRAIN_CHARACTERS - VINYALS_VAL_CHARACTERS : VINYALS_TRAIN_CHARACTERS;
    return {
      set,
      splits: {
        train: perm.slice(0, nTrain),
        val: validation ? perm.slice(nTrain, VINYALS_TRAIN_CHARACTERS) : [],
        test: perm.slice(VINYALS_TRAIN_CHARACTERS),
      },
    };
  }
  if (split === "background-evaluation") {
    const set = poolOmniglot(data);
    const nBg = data.background.classes.length;
    const bg = range(0, nBg);
    const test = range(nBg, set.classes.length);
    if (!validation) return { set, splits: { train: bg, val: [], test } };
    const held = new Set(BACKGROUND_VAL_ALPHABETS);
    const present = new Set(data.background.classes.map((c) => c.group));
    const missing = BACKGROUND_VAL_ALPHABETS.filter((a) => !present.has(a));
    if (missing.length > 0) {
      throw new Error(
        `Omniglot validation alphabets not found in the background set: ${missing.join(", ")}; ` +
          `the classes need 'group' = alphabet name (as loadOmniglot gives), or use validation: false`,
      );
    }
    return {
      set,
      splits: {
        train: bg.filter((i) => !held.has(set.classes[i]!.group ?? "")),
        val: bg.filter((i) => held.has(set.classes[i]!.group ?? "")),
        test,
      },
    };
  }
  throw new Error(`unknown Omniglot split '${split as string}'; use "vinyals" or "background-evaluation"`);
}

/**
 * Omniglot N-way K-shot classification, H×W×1 inputs (the data's: 28×28 or 105×105) in [0, 1] (ink
 * high), labels 0..ways−1.
 *
 * "vinyals" (MAML, Reptile): the 1623 characters pooled (background then evaluation, each in storage
 * order) and permuted by `new Rng(VINYALS_SPLIT_SEED).shuffle`; the first 1200 are training, the
 * other 423 test; with rotations each character gives 4 classes (4800 train / 1692 test).
 * "background-evaluation" (Lake et al.): 964 background characters train, 659 evaluation test.
 * See docs/datasets.md.
 */
export function omniglotFamily(data: OmniglotData, opts: OmniglotOptions): ImageSetFamily {
  const { set, splits } = omniglotSplits(data, opts.split, opts.validation ?? false);
  return imageSetFamily(set, {
    name: `omniglot-${opts.split}`,
    ways: opts.ways,
    shots: opts.shots,
    queryShots: opts.queryShots,
    splits,
    rotations: opts.rotations ?? opts.split === "vinyals",
  });
}

/** The family of a `task` config, checking that the data port loaded the resolution asked for. */
function buildOmniglot(o: { split: OmniglotSplit; ways: number; shots: number; queryShots: number; resolution: OmniglotResolution; dataDir?: string | undefined }, data: DataPort): ImageSetFamily {
  const sets = data.omniglot(o.dataDir, o.resolution);
  if (sets.background.height !== o.resolution || sets.evaluation.height !== o.resolution) {
    throw new Error(`Omniglot: task.resolution is ${o.resolution}, but the data port gave ${sets.background.height}×${sets.background.width} images; pass the resolution on to loadOmniglot (storage/datasets.ts)`);
  }
  return omniglotFamily(sets, { ways: o.ways, shots: o.shots, queryShots: o.queryShots, split: o.split });
}

export const omniglotSpec: FamilySpec<{ family: "omniglot"; split: OmniglotSplit; ways: number; shots: number; queryShots: number; resolution: OmniglotResolution; dataDir?: string | undefined }> = {
  family: "omniglot",
  schema: z.object({
    family: z.literal("omniglot").describe("Omniglot N-way K-shot classification, 28×28 or 105×105 (Lake et al. 2015), in the Vinyals or the authors' split."),
    split: z.enum(["vinyals", "background-evaluation"]).default("vinyals").describe("`vinyals`: 1200 train / 423 test characters with rotations; `background-evaluation`: the authors' split."),
    ways: z.number().int().min(2).max(1000).default(5).describe("N: classes per task."),
    shots: z.number().int().min(1).max(19).default(1).describe("K: support examples per class."),
    queryShots: z.number().int().min(1).max(19).default(15).describe("Query examples per class."),
    resolution: z.literal([28, 105]).default(28).describe("Image side: 28 (area-averaged, as MAML and most papers) or 105, the original images (Koch et al.; about 0.7 GB of pixels in memory with both splits pooled)."),
    dataDir: z.string().optional().describe("Directory of the packed dataset; default `METATRAIN_OMNIGLOT_DIR` or the repository's shared data."),
  }),
  kind: "classification",
  summary: "Omniglot N-way K-shot, 28×28 or 105×105 (Lake et al. 2015; the Vinyals or the authors' split)",
  shape: (o) => ({ inputShape: [o.resolution, o.resolution, 1], outputs: o.ways }),
  limits: (o) => omniglotLimits(o, o.shots + o.queryShots, "shots + queryShots"),
  build: buildOmniglot,
};
