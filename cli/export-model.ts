// A checkpoint's meta-learned initialisation in formats TensorFlow.js loads: a `tf.io` weights
// manifest with one .bin (weights named as the model's parameters), and — for models without batch
// norm — a Layers `model.json` over the same .bin, checked to compute what the functional model does.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { RunConfig } from "../meta/run-config.js";
import type { Model } from "../meta/models.js";
import type { Params } from "../meta/params.js";

/** File names inside the export directory. */
export const EXPORT_FILES = { weights: "weights.bin", weightsManifest: "weights_manifest.json", layersModel: "model.json", description: "metatrain.json" } as const;

/** `metatrain.json`: what the export holds and how to use it. Documented in docs/cli.md. */
export interface ExportDescription {
  format: "metatrain-export/1";
  runId: string;
  iteration: number;
  /** The checkpoint manifest exported. */
  checkpoint: string;
  model: { name: string; kind: string; inputShape: number[]; outputs: number; batchNorm: "none" | "transductive" };
  /** Task family settings (sinusoid / omniglot ways, shots, …). */
  task: RunConfig["task"];
  algorithm: RunConfig["algorithm"];
  /** How the initialisation is meant to be adapted to a new task: SGD on the support set. */
  adaptation: { innerLr: number; steps: number; trainedWithSteps: number; loss: "mse" | "softmax-cross-entropy" };
  /** Every parameter in the weights file, in order. */
  parameters: { name: string; shape: number[]; dtype: string }[];
  files: { weights: string; weightsManifest: string; layersModel: string | null };
  /** Why there is no Layers model, when there is none. */
  layersModelNote: string | null;
  config: RunConfig;
  exportedAt: string;
}

/** A Layers model computing `model.forward`, with weights named as `model`'s parameters; undefined when batch norm makes it impossible. */
export function layersModelFor(model: Model, params: Params): tf.LayersModel | undefined {
  if (model.batchNorm !== "none") return undefined;
  const input = tf.input({ shape: model.inputShape, name: "input" });
  let h: tf.SymbolicTensor = input;
  if (model.name.startsWith("mlp-")) {
    if (model.inputShape.length > 1) h = tf.layers.flatten({ name: "flatten" }).apply(h) as tf.SymbolicTensor;
    const layers = Object.keys(params).filter((k) => /^dense\d+\/kernel$/.test(k)).length;
    for (let l = 0; l < layers; l++) {
      const units = params[`dense${l}/kernel`]!.shape[1]!;
      h = tf.layers.dense({ units, activation: l < layers - 1 ? "relu" : "linear", name: `dense${l}` }).apply(h) as tf.SymbolicTensor;
    }
  } else if (model.name.startsWith("conv4-")) {
    const maxpool = model.name.includes("-maxpool");
    for (let l = 0; l < 4; l++) {
      const filters = params[`conv${l}/kernel`]!.shape[3]!;
      h = tf.layers.conv2d({ filters, kernelSize: 3, strides: maxpool ? 1 : 2, padding: "same", activation: "relu", name: `conv${l}` }).apply(h) as tf.SymbolicTensor;
      if (maxpool) h = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: "valid", name: `pool${l}` }).apply(h) as tf.SymbolicTensor;
    }
    h = (maxpool ? tf.layers.flatten({ name: "flatten" }) : tf.layers.globalAveragePooling2d({ name: "mean" })).apply(h) as tf.SymbolicTensor;
    h = tf.layers.dense({ units: model.outputs, name: "dense" }).apply(h) as tf.SymbolicTensor;
  } else {
    return undefined;
  }
  const lm = tf.model({ inputs: input, outputs: h, name: model.name });
  // Weights by name: the layer names above make them `dense0/kernel`, `conv1/bias`, … as in `params`.
  const byName = new Map(lm.weights.map((w) => [w.originalName, w]));
  const missing = Object.keys(params).filter((k) => !byName.has(k));
  if (missing.length || byName.size !== Object.keys(params).length) {
    lm.dispose();
    throw new Error(`the Layers model's weights (${[...byName.keys()].join(", ")}) do not match the parameters (${Object.keys(params).join(", ")})`);
  }
  lm.setWeights(lm.weights.map((w) => params[w.originalName]!));
  return lm;
}

/** Largest |layers(x) − model.forward(params, x)| on random inputs: the export's self-check. */
export function layersDiscrepancy(model: Model, params: Params, lm: tf.LayersModel): number {
  return tf.tidy(() => {
    const x = tf.randomUniform([8, ...model.inputShape], -5, 5, "float32", 7);
    const a = lm.predict(x) as tf.Tensor;
    const b = model.forward(params, x);
    return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;
  });
}

/** Write the export into `outDir`; returns the description written to metatrain.json. */
export async function writeExport(
  outDir: string,
  model: Model,
  params: Params,
  meta: { runId: string; iteration: number; checkpoint: string; config: RunConfig },
): Promise<ExportDescription> {
  mkdirSync(outDir, { recursive: true });
  const { data, specs } = await tf.io.encodeWeights(params);
  writeFileSync(join(outDir, EXPORT_FILES.weights), Buffer.from(data as ArrayBuffer));
  const weightsManifest: tf.io.WeightsManifestConfig = [{ paths: [EXPORT_FILES.weights], weights: specs }];
  writeFileSync(join(outDir, EXPORT_FILES.weightsManifest), `${JSON.stringify(weightsManifest, null, 2)}\n`);

  let layersNote: string | null = null;
  let wroteLayers = false;
  const lm = layersModelFor(model, params);
  if (lm) {
    try {
      const err = layersDiscrepancy(model, params, lm);
      if (!(err < 1e-4)) throw new Error(`the Layers model differs from the trained model by ${err} on random inputs`);
      const modelJson = {
        format: "layers-model",
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: "metatrain export",
        modelTopology: lm.toJSON(null, false),
        weightsManifest,
      };
      writeFileSync(join(outDir, EXPORT_FILES.layersModel), `${JSON.stringify(modelJson)}\n`);
      wroteLayers = true;
    } finally {
      lm.dispose();
    }
  } else {
    layersNote =
      model.batchNorm !== "none"
        ? "no Layers model: this model's batch norm is transductive (it normalises with the statistics of the batch it sees, support or query), which a Layers BatchNormalization layer does not do at inference; load weights_manifest.json with tf.io.decodeWeights and run the functional model (meta/models.ts)"
        : `no Layers model for ${model.name}`;
  }
  const c = meta.config;
  const description: ExportDescription = {
    format: "metatrain-export/1",
    runId: meta.runId,
    iteration: meta.iteration,
    checkpoint: meta.checkpoint,
    model: { name: model.name, kind: c.model.kind, inputShape: model.inputShape, outputs: model.outputs, batchNorm: model.batchNorm },
    task: c.task,
    algorithm: c.algorithm,
    adaptation: { innerLr: c.innerLr, steps: c.evalSteps, trainedWithSteps: c.innerSteps, loss: c.task.family === "sinusoid" ? "mse" : "softmax-cross-entropy" },
    parameters: specs.map((s) => ({ name: s.name, shape: s.shape, dtype: s.dtype })),
    files: { weights: EXPORT_FILES.weights, weightsManifest: EXPORT_FILES.weightsManifest, layersModel: wroteLayers ? EXPORT_FILES.layersModel : null },
    layersModelNote: layersNote,
    config: c,
    exportedAt: new Date().toISOString(),
  };
  writeFileSync(join(outDir, EXPORT_FILES.description), `${JSON.stringify(description, null, 2)}\n`);
  return description;
}
