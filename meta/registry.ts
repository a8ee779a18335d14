// The lists of model kinds and task families a run config can name. Adding one is its spec (beside
// its implementation) plus one line here; the config schema and docs read these lists.
import { conv4EmbeddingSpec, conv4Spec, omniglotMlpSpec, sinusoidMlpSpec, type ModelSpec } from "./models.js";
import { point2dSpec } from "./envs/point-2d.js";
import { pointWallsSpec } from "./envs/point-walls.js";
import { gaussianMlpSpec } from "./models/gaussian-mlp.js";
import { kochSiameseSpec } from "./models/koch.js";
import { mannSpec } from "./models/mann.js";
import { metanetSpec } from "./models/metanet.js";
import { relationNetSpec } from "./models/relation-net.js";
import { omniglotSpec } from "./tasks/omniglot.js";
import { omniglotSequenceSpec } from "./tasks/sequence.js";
import { sinusoidSpec } from "./tasks/sinusoid.js";
import type { FamilySpec } from "./tasks/types.js";

export const MODELS = [sinusoidMlpSpec, omniglotMlpSpec, conv4Spec, conv4EmbeddingSpec, kochSiameseSpec, relationNetSpec, metanetSpec, mannSpec, gaussianMlpSpec] as const satisfies readonly ModelSpec<any>[];

export const FAMILIES = [sinusoidSpec, omniglotSpec, omniglotSequenceSpec, point2dSpec, pointWallsSpec] as const satisfies readonly FamilySpec<any>[];

export type ModelConfig = (typeof MODELS)[number] extends infer S ? (S extends ModelSpec<infer O> ? O : never) : never;
export type TaskConfig = (typeof FAMILIES)[number] extends infer S ? (S extends FamilySpec<infer O> ? O : never) : never;

export const findModel = (kind: string): ModelSpec<any> | undefined => MODELS.find((m) => m.kind === kind);
export const findFamily = (family: string): FamilySpec<any> | undefined => FAMILIES.find((f) => f.family === family);
