// MAML-RL on 2-D navigation (Finn et al. 2017, Table 4): train for a wall-clock budget, then the
// average return on 40 held-out goals after 0, 1, 2 and 3 policy-gradient steps (α = the preset's
// innerLr, 20 trajectories per step) for the trained policy and for its random initialisation.
// A "pretrained" baseline is the same run with innerLr 0 (plain policy gradient on the task mix),
// evaluated with the preset's α: pass --set innerLr=1e-8 --eval-inner-lr 0.1 --tag pretrained (the schema wants innerLr > 0; 1e-8 moves nothing).
//   node --import tsx bench/maml-rl.ts --preset point-2d-maml-rl --minutes 10 [--set key=value …]
//        [--eval-tasks 40] [--eval-inner-lr 0.1] [--seed 1] [--tag NAME] [--backend auto]
import { resolveConfig } from "../cli/config.js";
import { findPreset } from "../meta/algorithms/registry.js";
import { meanOf } from "../meta/algorithms/types.js";
import type { Params } from "../meta/params.js";
import { deriveSeed, Stream } from "../meta/rng.js";
import { LocalMetaTrainer } from "../meta/trainer.js";
import { arg, log, machine, numArg, record, setupBackend } from "./common.js";

const presetName = arg("preset", "point-2d-maml-rl");
const preset = findPreset(presetName);
if (!preset) throw new Error(`no preset '${presetName}' (metatrain presets lists them)`);
const minutes = numArg("minutes", 10);
const evalTasks = numArg("eval-tasks", 40);
const seed = numArg("seed", 1);
const sets = process.argv.slice(2).flatMap((a, i, all) => (a === "--set" && all[i + 1] ? [all[i + 1]!] : []));
const tag = arg("tag", "");
const backend = await setupBackend();
const config = { ...resolveConfig({ preset: presetName, set: [...sets, `seed=${seed}`] }), iterations: 100000 };
const evalInnerLr = numArg("eval-inner-lr", config.innerLr);
const steps = [0, 1, 2, 3];

const trainer = new LocalMetaTrainer(config);
// The evaluation's setup: the same run with the test-time step size (differs only for "pretrained").
const evaluator = new LocalMetaTrainer({ ...config, innerLr: evalInnerLr });
async function returnsAfterSteps(params: Params) {
  const ev = await evaluator.run.learner.evaluate(evaluator.run.setup, params, { tasks: evalTasks, steps, seed: deriveSeed(seed, Stream.evalTask), split: "test" });
  return ev.results.map((r) => ({ steps: r.steps, averageReturn: +(-r.loss.mean).toFixed(2), ci95: +r.loss.ci95.toFixed(2) }));
}
const random = await returnsAfterSteps(trainer.params);
log(`random init: ${random.map((r) => r.averageReturn).join(" → ")}`);

const t0 = performance.now();
const curve: { iteration: number; seconds: number; preReturn: number; postReturn: number }[] = [];
let i = 0;
while (performance.now() - t0 < minutes * 60_000) {
  const r = await trainer.step();
  i++;
  const point = { iteration: i, seconds: Math.round((performance.now() - t0) / 1000), preReturn: +(-meanOf(r.metrics, "preLoss")).toFixed(2), postReturn: +(-meanOf(r.metrics, "postLoss")).toFixed(2) };
  curve.push(point);
  if (i % 5 === 0) log(`iteration ${i}: train return ${point.preReturn} → ${point.postReturn} after one step, ${point.seconds} s`);
}
const trainSeconds = (performance.now() - t0) / 1000;
const trained = await returnsAfterSteps(trainer.params);
log(`trained (${i} iterations, ${Math.round(trainSeconds)} s): ${trained.map((r) => r.averageReturn).join(" → ")}`);
record(`maml-rl-${presetName}${tag ? `-${tag}` : ""}-${backend.backend}`, {
  benchmark: `2-D navigation, ${config.algorithm} (${(config as Record<string, unknown>)["maml-rl"] ? JSON.stringify((config as Record<string, unknown>)["maml-rl"]) : ""}), ${trainer.run.setup.model.name}`,
  command: `node --import tsx bench/maml-rl.ts --preset ${presetName} --minutes ${minutes} --backend ${backend.candidate}${sets.map((s) => ` --set ${s}`).join("")}${evalInnerLr !== config.innerLr ? ` --eval-inner-lr ${evalInnerLr}` : ""}${tag ? ` --tag ${tag}` : ""}`,
  machine: machine(),
  backend: backend.backend,
  preset: { name: presetName, source: preset.source },
  config,
  training: { iterations: i, seconds: Math.round(trainSeconds), curve },
  evaluation: { goals: evalTasks, innerLr: evalInnerLr, randomInit: random, trained },
  paper: { maml: [-40.41, -11.68, -3.33, -3.23], pretrained: [-40.81, -19.73, -11.72, -8.47], random: [-82.66, -57.96, -53.84, -46.81] },
});
trainer.dispose();
