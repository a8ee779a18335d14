// The README's demo: a short sinusoid MAML run in this process (the engine alone; the Temporal
// orchestration arrives with the `metatrain` CLI), with progress, then evaluation on held-out tasks.
//   npm run demo [-- --iterations 2000 --backend auto]
import { selectBackend, describeBackend, type BackendPreference } from "../meta/backend.js";
import { sinusoidMlp } from "../meta/models.js";
import { sinusoidFamily } from "../meta/tasks/sinusoid.js";
import { LocalMetaTrainer, meanOf } from "../meta/trainer.js";
import { evaluate } from "../meta/evaluate.js";
import { arg, numArg } from "../bench/common.js";

const iterations = numArg("iterations", 2000);
const seed = numArg("seed", 1);
if (!Number.isInteger(iterations) || iterations < 1) {
  console.error(`--iterations must be a positive integer, got '${arg("iterations", "")}'`);
  process.exit(2);
}
const backend = await selectBackend(arg("backend", "auto") as BackendPreference, process.env);
console.log(`metatrain demo: sinusoid regression, MAML (Finn et al. 2017), ${iterations} meta-iterations, seed ${seed}`);
console.log(describeBackend(backend));
const model = sinusoidMlp();
const trainer = new LocalMetaTrainer(model, sinusoidFamily({ shots: 10 }), {
  algorithm: "maml", innerSteps: 1, innerLr: 0.01, metaLr: 1e-3, metaBatchSize: 25, iterations, seed, batchTasks: true,
});
const t0 = performance.now();
let window: number[] = [];
for (let i = 0; i < iterations; i++) {
  const r = await trainer.step();
  window.push(meanOf(r.metrics, "postLoss"));
  if ((i + 1) % Math.max(1, Math.floor(iterations / 20)) === 0 || i + 1 === iterations) {
    const elapsed = (performance.now() - t0) / 1000;
    const eta = (elapsed / (i + 1)) * (iterations - i - 1);
    const mse = window.reduce((a, b) => a + b, 0) / window.length;
    console.log(`  iteration ${String(i + 1).padStart(String(iterations).length)}/${iterations}  post-adaptation MSE ${mse.toFixed(3)}  ${elapsed.toFixed(0)} s elapsed, ETA ${eta.toFixed(0)} s`);
    window = [];
  }
}
const ev = await evaluate(model, sinusoidFamily({ shots: 10, queryShots: 100 }), trainer.params, { tasks: 200, steps: [0, 1, 10], innerLr: 0.01, seed: 1000 + seed });
console.log("evaluation on 200 held-out tasks (K = 10, α = 0.01), query MSE with 95% CI:");
for (const r of ev.results) console.log(`  ${String(r.steps).padStart(2)} steps: ${r.loss.mean.toFixed(3)} ± ${r.loss.ci95.toFixed(3)}`);
trainer.dispose();
