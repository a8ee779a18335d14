// `metatrain submit [config.yaml] [--preset NAME] [--set key=value …] [--run-id ID] [--watch] [--json]`: validate and start a run.
import type { Command } from "commander";
import type { MetaTrainingInput } from "../../contracts/activities.js";
import type { RunConfig } from "../../meta/run-config.js";
import { TASK_QUEUES, WORKFLOW_TYPE } from "../../contracts/queues.js";
import { RUN_ID_PATTERN } from "../../storage/keys.js";
import { shardAdvice } from "../shard-advice.js";
import { CliError, ExitCodes, secondsOption, setExitCode } from "../errors.js";
import type { TemporalSession } from "../temporal.js";
import { collect } from "./config.js";
import { interruptSignal } from "./watch.js";

/** `submit --json` and `resume-from --json` (without --watch): what was started. */
export interface SubmitJson {
  runId: string;
  namespace: string;
  taskQueue: string;
  /** Temporal's id of the first execution. */
  executionRunId: string;
  /** A checkpoint key the run starts from (resume-from), else null. */
  resumeFrom: string | null;
  config: RunConfig;
}

/** A run id that is new and readable: `<name>-<yyyymmdd-hhmmss>-<4 hex>`. */
export function newRunId(name: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const rand = Math.floor(Math.random() * 0x10000).toString(16).padStart(4, "0");
  return `${name.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 40)}-${stamp}-${rand}`;
}

export function checkRunId(id: string): string {
  if (!RUN_ID_PATTERN.test(id)) {
    throw new CliError(`run id '${id}' is not valid: use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'`, ExitCodes.badInput, "e.g. --run-id sinusoid-maml-1");
  }
  return id;
}

export interface StartOptions {
  json?: boolean;
  watch?: boolean;
  intervalMs?: number;
}

/** Start a run (fresh or from a checkpoint key), print its id, and optionally watch it; returns the exit code. */
export async function startRun(
  s: TemporalSession,
  runId: string,
  config: RunConfig | null,
  resumeFrom: string | undefined,
  o: StartOptions,
  startLine: string,
  /** The config the run will use (for a resume without overrides: the checkpoint's). */
  effective: RunConfig = config!,
): Promise<number> {
  const input: MetaTrainingInput = { runId, config, ...(resumeFrom ? { resumeFrom } : {}) };
  const [{ WorkflowExecutionAlreadyStartedError }, { temporalError }, { exitCodeOf, watchRun }] = await Promise.all([
    import("@temporalio/client"),
    import("../temporal.js"),
    import("../watch.js"),
  ]);
  let handle;
  try {
    handle = await s.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: TASK_QUEUES.coordinator,
      workflowId: runId,
      args: [input],
      // A run id names storage keys (runs/<id>/…): never start a second run under one.
      workflowIdReusePolicy: "REJECT_DUPLICATE",
    });
  } catch (e) {
    if (e instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`run id '${runId}' is taken: a run by that id already exists`, ExitCodes.badInput, "choose another --run-id (or leave it out for a fresh one)");
    }
    throw temporalError(e, s.settings);
  }
  const info: SubmitJson = {
    runId,
    namespace: s.settings.namespace,
    taskQueue: TASK_QUEUES.coordinator,
    executionRunId: handle.firstExecutionRunId,
    resumeFrom: resumeFrom ?? null,
    config: effective,
  };
  if (!o.watch) {
    process.stdout.write(o.json ? `${JSON.stringify(info, null, 2)}\n` : `${startLine}\n${runId}\n`);
    return 0;
  }
  if (!o.json) process.stdout.write(`${startLine}\n`);
  const final = await watchRun(s, runId, { json: o.json, intervalMs: o.intervalMs, signal: interruptSignal() });
  return exitCodeOf(final);
}

export function registerSubmit(program: Command): void {
  program
    .command("submit")
    .argument("[config]", "run config, YAML or JSON (keys as in the configuration reference)")
    .description("validate a run config and start a run on the Temporal cluster; prints the run id")
    .option("--preset <name>", "start from a preset (see `metatrain presets`)")
    .option("--set <key=value>", "override one config key, e.g. --set iterations=500 (repeatable)", collect, [])
    .option("--run-id <id>", "the run's id (default: <preset or algorithm>-<date>-<time>-<4 hex>)")
    .option("--watch", "follow the run until it ends (as `metatrain watch`)")
    .option("--interval <seconds>", "with --watch: poll interval", "1")
    .option("--json", "print JSON: {runId, namespace, taskQueue, executionRunId, resumeFrom, config}; with --watch, NDJSON progress events")
    .action(async (file: string | undefined, opts: { preset?: string; set: string[]; runId?: string; watch?: boolean; interval: string; json?: boolean }) => {
      // A run is a deliberate choice: defaults alone are a 100-iteration sinusoid run nobody asked for.
      if (file === undefined && opts.preset === undefined) {
        throw new CliError("no run config given: submit needs a config file or --preset", ExitCodes.badInput, "e.g. metatrain submit --preset sinusoid-maml (`metatrain presets` lists them), or metatrain submit run.yaml");
      }
      const [{ resolveConfig }, { withTemporal }] = await Promise.all([import("../config.js"), import("../temporal.js")]);
      const config = resolveConfig({ file, preset: opts.preset, set: opts.set });
      const runId = checkRunId(opts.runId ?? newRunId(opts.preset ?? `${config.task.family}-${config.algorithm}`));
      // A valid config still starts; tiny shards only waste time, which the user should hear about.
      const advice = shardAdvice(config);
      if (advice) process.stderr.write(`warning: ${advice.message}\n`);
      const intervalMs = secondsOption("--interval", opts.interval) * 1000;
      const code = await withTemporal((s) =>
        startRun(s, runId, config, undefined, { json: opts.json, watch: opts.watch, intervalMs }, `started run ${runId} (${config.algorithm}, ${config.task.family}, ${config.iterations} iterations) on ${s.settings.address}`),
      );
      setExitCode(code);
    });
}
