// Same config and seed twice on one backend: are the parameters bit-identical? The distributed
// system's reproducibility claim rests on this holding for the backend the workers use.
//   node --import tsx bench/determinism.ts --backend tfjs-node [--iterations 5]
import { FILE_DATA } from "../activities/build.js";
import { cheapestPreset, LEARNERS } from "../meta/algorithms/registry.js";
import type { RunConfigInput } from "../meta/run-config.js";
import { LocalMetaTrainer } from "../meta/trainer.js";
import { log, machine, numArg, record, setupBackend } from "./common.js";

const backend = await setupBackend();
const iterations = numArg("iterations", 5);
const cases: { name: string; cfg: RunConfigInput }[] = [
  { name: "sinusoid", cfg: { innerSteps: 1, innerLr: 0.01, metaLr: 1e-3, metaBatchSize: 25, shardSize: 5, iterations, seed: 3 } },
  { name: "omniglot-mlp", cfg: { task: { family: "omniglot" }, model: { kind: "omniglot-mlp" }, innerSteps: 1, innerLr: 0.4, metaLr: 1e-3, metaBatchSize: 8, shardSize: 4, iterations, seed: 3 } },
];
// Learners that cannot learn regression (the metric, model-based and learned-optimizer ones) need
// their own models or task kinds: each runs its cheapest preset instead of the two cases above.
const runs = LEARNERS.flatMap((l) =>
  l.needs.taskKinds.includes("regression")
    ? cases.map((c) => ({ name: c.name, algorithm: l.name, cfg: { ...c.cfg, algorithm: l.name, metaLr: l.name === "reptile" ? 0.5 : 1e-3 } as RunConfigInput }))
    : [{ name: cheapestPreset(l.presets).name, algorithm: l.name, cfg: { ...cheapestPreset(l.presets).config, iterations, seed: 3, evalEvery: 0 } as RunConfigInput }],
);
const rows = [];
for (const c of runs) {
  const algorithm = c.algorithm;
  for (const batchTasks of [false, true]) {
    const snaps = [];
    for (let rep = 0; rep < 2; rep++) {
      const t = new LocalMetaTrainer({ ...c.cfg, batchTasks }, FILE_DATA);
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
record(`determinism-${backend.backend}`, {
  benchmark: "bit-identical parameters from two runs with one config and seed",
  command: `node --import tsx bench/determinism.ts --backend ${backend.candidate} --iterations ${iterations}`,
  machine: machine(),
  backend: backend.backend,
  rows,
});
