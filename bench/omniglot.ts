// Omniglot meta-training of one preset within a wall-clock budget, with its training curve, then
// accuracy with a 95% CI over held-out tasks of the test characters (the learner's own test rule).
//   node --import tsx bench/omniglot.ts --preset omniglot-5w1s-fomaml-mlp [--minutes 15]
//        [--set key=value …] [--backend auto] [--eval-tasks 600] [--eval-steps 0,1,3] [--seed 1] [--tag NAME]
//        [--eval-ways 5,20]   (embedding learners: the same trained network also tested at other ways)
//   (--algorithm NAME --model mlp|conv4 picks the learner's omniglot-5w1s-NAME-MODEL preset)
// Hyperparameters are the preset's (meta/algorithms/<learner>.ts, with their sources); only the
// iteration count is sized to the budget, so that schedules (Reptile's annealed ε) end with it.
import { resolveConfig } from "../cli/config.js";
import { FILE_DATA } from "../activities/build.js";
import { meanOf } from "../meta/algorithms/types.js";
import { findPreset } from "../meta/algorithms/registry.js";
import { deriveSeed, Stream } from "../meta/rng.js";
import { LocalMetaTrainer } from "../meta/trainer.js";
import { resolveRun, type ResolvedRun } from "../meta/run-config.js";
import { arg, log, machine, median, numArg, record, setupBackend } from "./common.js";

const presetName = arg("preset", "") || `omniglot-5w1s-${arg("algorithm", "maml")}-${arg("model", "mlp")}`;
const preset = findPreset(presetName);
if (!preset) throw new Error(`no preset '${presetName}' (metatrain presets lists them)`);
const minutes = numArg("minutes", 15);
const evalTasks = numArg("eval-tasks", 600);
const seed = numArg("seed", 1);
const sets = process.argv.slice(2).flatMap((a, i, all) => (a === "--set" && all[i + 1] ? [all[i + 1]!] : []));
const tag = arg("tag", "");

const backend = await setupBackend();
const base = resolveConfig({ preset: presetName, set: [...sets, `seed=${seed}`] });
const evalSteps = arg("eval-steps", "").split(",").filter(Boolean).map(Number);
const steps = evalSteps.length ? evalSteps : [...new Set([0, 1, base.evalSteps])];

// Calibrate: time iterations on a throwaway trainer to size the run (Reptile's annealing needs
// the total number of iterations up front). The first few are slower than the rest (kernel
// set-up, caches warming): three are left out, then the median of up to 10 (or of those in 30 s,
// at least 3). The mean of three after one warm-up had overestimated the steady cost by up to
// 1.65×, so 12-minute runs ended after 7 to 11 minutes.
const probe = new LocalMetaTrainer({ ...base, iterations: 1000 }, FILE_DATA);
for (let i = 0; i < 3; i++) await probe.step();
const probeTimes: number[] = [];
const probeStart = performance.now();
while (probeTimes.length < 10 && (probeTimes.length < 3 || performance.now() - probeStart < 30_000)) {
  const tc = performance.now();
  await probe.step();
  probeTimes.push(performance.now() - tc);
}
const msPerIt = median(probeTimes);
probe.dispose();
const iterations = Math.max(1, Math.floor((minutes * 60_000) / msPerIt));
const config = { ...base, iterations };
const trainer = new LocalMetaTrainer(config, FILE_DATA);
const { learner, setup } = trainer.run;
log(`${presetName} (${learner.name}, ${setup.model.name}): ~${msPerIt.toFixed(0)} ms/iteration, planning ${iterations} iterations for ${minutes} min`);

const t0 = performance.now();
const curve: { iteration: number; seconds: number; preAccuracy: number; postAccuracy: number; postLoss: number }[] = [];
let acc: { pre: number[]; post: number[]; loss: number[] } = { pre: [], post: [], loss: [] };
const every = Math.max(1, Math.floor(iterations / 30));
for (let i = 0; i < iterations; i++) {
  const r = await trainer.step();
  acc.pre.push(meanOf(r.metrics, "preAccuracy"));
  acc.post.push(meanOf(r.metrics, "postAccuracy"));
  acc.loss.push(meanOf(r.metrics, "postLoss"));
  if ((i + 1) % every === 0 || i + 1 === iterations) {
    const m = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const seconds = Math.round((performance.now() - t0) / 1000);
    curve.push({ iteration: i + 1, seconds, preAccuracy: +m(acc.pre).toFixed(4), postAccuracy: +m(acc.post).toFixed(4), postLoss: +m(acc.loss).toFixed(4) });
    log(`iteration ${i + 1}/${iterations}: train query accuracy ${m(acc.pre).toFixed(3)} → ${m(acc.post).toFixed(3)} after adaptation, ${seconds} s`);
    acc = { pre: [], post: [], loss: [] };
  }
}
const trainSeconds = (performance.now() - t0) / 1000;
const evalWays = arg("eval-ways", "").split(",").filter(Boolean).map(Number);
const testWays = (config.task as { ways?: number }).ways;
/** The learner's own test rule on `evalTasks` held-out tasks of `run`'s test family. */
async function evaluateOn(run: ResolvedRun) {
  const te = performance.now();
  const ev = await run.learner.evaluate(run.setup, trainer.params, {
    tasks: evalTasks,
    steps,
    // The held-out stream a run's own evaluations use.
    seed: deriveSeed(seed, Stream.evalTask),
    split: "test",
    onTask: (d, n) => {
      if (d % 100 === 0) log(`evaluated ${d}/${n} test tasks`);
    },
  });
  return { ev, seconds: Math.round((performance.now() - te) / 1000) };
}
const { ev, seconds: evalSeconds } = await evaluateOn(trainer.run);
const otherWays = [];
for (const ways of evalWays.filter((w) => w !== testWays)) {
  // Training does not change (its episodes are the learner's train* options); only the test tasks do.
  const run = resolveRun({ ...config, task: { ...config.task, ways } as typeof config.task }, FILE_DATA);
  if (run.setup.model.outputs !== setup.model.outputs) throw new Error(`--eval-ways: ${setup.model.name}'s outputs depend on the ways; it needs an embedding model`);
  const r = await evaluateOn(run);
  otherWays.push({ ways, tasks: evalTasks, seconds: r.seconds, accuracyPercent: r.ev.results.map((x) => ({ steps: x.steps, mean: +(100 * x.accuracy!.mean).toFixed(2), ci95: +(100 * x.accuracy!.ci95).toFixed(2) })) });
  log(`${ways}-way: ${JSON.stringify(otherWays.at(-1)!.accuracyPercent)}`);
}
const pct = (x: number) => +(100 * x).toFixed(2);
const t = config.task as { ways?: number; shots?: number; instances?: number };
// Sequence tasks (MANN) have instances per class, not shots, and report accuracy per instance.
const shape = t.instances !== undefined ? `${t.ways} classes × ${t.instances} instances` : `${t.ways}-way ${t.shots}-shot`;
const byInstance = ev.byInstance?.map((a, i) => ({ instance: i + 1, mean: pct(a.mean), ci95: pct(a.ci95) }));
if (byInstance) log(`accuracy by instance: ${byInstance.map((b) => `${b.instance}: ${b.mean} ± ${b.ci95}`).join(", ")}`);
record(`omniglot-${presetName}${tag ? `-${tag}` : ""}-${backend.backend}`, {
  benchmark: `Omniglot ${shape}, ${learner.name}, ${setup.model.name}`,
  command: `node --import tsx bench/omniglot.ts --preset ${presetName} --minutes ${minutes} --backend ${backend.candidate}${sets.map((s) => ` --set ${s}`).join("")}${evalWays.length ? ` --eval-ways ${evalWays.join(",")}` : ""}`,
  machine: machine(),
  backend: backend.backend,
  preset: { name: presetName, source: preset.source },
  batchNorm: ev.batchNorm,
  evaluationMode: ev.batchNorm === "none" ? "non-transductive" : ev.batchNorm === "per-example" ? "non-transductive (batch norm over the support set plus one query)" : "transductive (batch norm uses query-batch statistics)",
  config,
  training: { iterations, seconds: Math.round(trainSeconds), msPerIteration: Math.round((1000 * trainSeconds) / iterations), curve },
  evaluation: {
    tasks: evalTasks,
    seconds: evalSeconds,
    accuracyPercent: ev.results.map((r) => ({ steps: r.steps, mean: pct(r.accuracy!.mean), ci95: pct(r.accuracy!.ci95) })),
    ...(byInstance ? { accuracyPercentByInstance: byInstance } : {}),
  },
  ...(otherWays.length ? { evaluationAtOtherWays: otherWays } : {}),
});
trainer.dispose();
