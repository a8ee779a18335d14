// `metatrain watch <run> [--json]`: follow a run until it ends (progress bar on a terminal, lines otherwise).
import type { Command } from "commander";
import { secondsOption, setExitCode } from "../errors.js";

let interrupt: AbortController | undefined;
/** Aborts on the first Ctrl-C (SIGINT): watching stops, the run goes on. */
export function interruptSignal(): AbortSignal {
  if (!interrupt) {
    const c = new AbortController();
    interrupt = c;
    process.once("SIGINT", () => c.abort());
  }
  return interrupt.signal;
}

export function registerWatch(program: Command): void {
  program
    .command("watch")
    .argument("<run>", "run id (or sweep id)")
    .description("follow a run until it ends: iteration, ETA, pre/post-adaptation loss and accuracy, evaluation; exit 0 when it completes or is cancelled, 1 when it fails")
    .option("--interval <seconds>", "poll interval", "1")
    .option("--json", "NDJSON: {event:\"progress\",…} per change, then {event:\"end\",run:<status>}")
    .action(async (runId: string, opts: { interval: string; json?: boolean }) => {
      const intervalMs = secondsOption("--interval", opts.interval) * 1000;
      const [{ withTemporal }, { exitCodeOf, watchRun }, sweeps] = await Promise.all([import("../temporal.js"), import("../watch.js"), import("../sweeps.js")]);
      // One connection: a sweep is watched as a sweep, anything else as a run.
      const code = await withTemporal(async (s) =>
        (await sweeps.isSweep(s, runId))
          ? sweeps.sweepExitCode(await sweeps.watchSweep(s, runId, { json: opts.json, intervalMs, signal: interruptSignal() }))
          : exitCodeOf(await watchRun(s, runId, { json: opts.json, intervalMs, signal: interruptSignal() })),
      );
      setExitCode(code);
    });
}
