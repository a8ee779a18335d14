// Same config and seed twice on one backend: are the parameters bit-identical? The distributed
// system's reproducibility claim rests on this holding for the backend the workers use.
//   node --import tsx bench/determinism.ts --backend tfjs-node [--iterations 5]
import { omniglotMlp, sinusoidMlp } from "../meta/models.js";
import { omniglotFamily } from "../meta/tasks/omniglot.js";
import { sinusoidFamily } from "../meta/tasks/sinusoid.js";
import { loadOmniglot } from "../storage/datasets.js";
import { LocalMetaTrainer, type MetaTrainConfig } from "../meta/trainer.js";
import type { Model } from "../meta/models.js";
import type { TaskFamily } from "../meta/tasks/types.js";
import { log, machine, numArg, record, setupBackend } from "./common.js";

const backend = await setupBackend();
const iterations = numArg("iterations", 5);
const omni = omniglotFamily(loadOmniglot(), { ways: 5, shots: 1, queryShots: 15, split: "vinyals" });
const cases: { name: string; model: Model; family: TaskFamily; cfg: Omit<MetaTrainConfig, "algorithm"> }[] = [
  { name: "sinusoid", model: sinusoidMlp(), family: sinusoidFamily(), cfg: { innerSteps: 1, innerLr: 0.01, metaLr: 1e-3, metaBatchSize: 25, shardSize: 5, iterations, seed: 3 } },
  { name: "omniglot-mlp", model: omniglotMlp(5), family: omni, cfg: { innerSteps: 1, innerLr: 0.4, metaLr: 1e-3, metaBatchSize: 8, shardSize: 4, iterations, seed: 3 } },
];
const rows = [];
for (const c of cases) {
  for (const algorithm of ["maml", "fomaml", "reptile"] as const) {
    for (const batchTasks of [false, true]) {
      const snaps = [];
      for (let rep = 0; rep < 2; rep++) {
        const t = new LocalMetaTrainer(c.model, c.family, { ...c.cfg, algorithm, batchTasks });
        for (let i = 0; i < iterations; i++) await t.step();
        snaps.push(t.snapshot());
        t.dispose();
      }
      const [a, b] = snaps as [Record<string, Float32Array>, Record<string, Float32Array>];
      let differing = 0;
      let total = 0;
      for (const k of Object.keys(a)) {
        const x = new Uint32Array(a[k]!.buffer);
        const y = new Uint32Array(b[k]!.buffer);
        total += x.length;
        for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) differing++;
      }
      log(`${c.name} ${algorithm}${batchTasks ? " batched" : ""}: ${differing} of ${total} parameters differ between two runs`);
      rows.push({ case: c.name, algorithm, batchTasks, iterations, parameters: total, differing, bitIdentical: differing === 0 });
    }
  }
}
record(`determinism-${backend.backend}`, {
  benchmark: "bit-identical parameters from two runs with one config and seed",
  command: `node --import tsx bench/determinism.ts --backend ${backend.candidate} --iterations ${iterations}`,
  machine: machine(),
  backend: backend.backend,
  rows,
});
