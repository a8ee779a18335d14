// The one list of learners. Adding a learner is its file plus one line here; the config schema,
// presets, CLI help, docs, resume checks, activities and evaluation all read this list.
import { anil } from "./anil.js";
import { fomaml } from "./fomaml.js";
import type { Learner, Preset } from "./learner.js";
import { lstmMetaLearner } from "./lstm-meta-learner.js";
import { maml } from "./maml.js";
import { mann } from "./mann.js";
import { mamlRl } from "./maml-rl.js";
import { matching } from "./matching.js";
import { metaSgd } from "./meta-sgd.js";
import { metanet } from "./metanet.js";
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
  mann,
  lstmMetaLearner,
  metanet,
  mamlRl,
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

/**
 * A learner's cheapest preset — what CI's preset test (test/integration/learner-presets.test.ts)
 * and the determinism bench run on a 2-core machine without the native backend: sinusoid first,
 * then the Omniglot MLP, then the first in the learner's order (so a learner lists its cheapest
 * other preset first).
 */
export function cheapestPreset(presets: readonly Preset[]): Preset {
  const rank = (p: Preset) => {
    const c = p.config as { task?: { family?: string }; model?: { kind?: string } };
    if (c.task?.family === "sinusoid") return 0;
    if (c.model?.kind === "omniglot-mlp") return 1;
    return 2;
  };
  return [...presets].sort((a, b) => rank(a) - rank(b))[0]!;
}
