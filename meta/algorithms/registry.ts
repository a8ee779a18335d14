// The one list of learners. Adding a learner is its file plus one line here; the config schema,
// presets, CLI help, docs, resume checks, activities and evaluation all read this list.
import { anil } from "./anil.js";
import { fomaml } from "./fomaml.js";
import type { Learner, Preset } from "./learner.js";
import { maml } from "./maml.js";
import { matching } from "./matching.js";
import { metaSgd } from "./meta-sgd.js";
import { protonet } from "./protonet.js";
import { relation } from "./relation.js";
import { reptile } from "./reptile.js";
import { siamese } from "./siamese.js";

export const LEARNERS: readonly Learner<any>[] = [
  maml,
  fomaml,
  reptile,
  metaSgd,
  anil,
  protonet,
  relation,
  matching,
  siamese,
];

/** The learner named `name`, or undefined. */
export function findLearner(name: string): Learner<any> | undefined {
  return LEARNERS.find((l) => l.name === name);
}

/** Every learner's presets, in registry order. */
export const PRESETS: readonly Preset[] = LEARNERS.flatMap((l) => l.presets);

export function findPreset(name: string): Preset | undefined {
  return PRESETS.find((p) => p.name === name);
}
