// `metatrain dev`: the embedded local stack in the foreground — a Temporal dev server, one worker in role `all`, a filesystem store under ./.metatrain; Ctrl-C stops it all.
import type { Command } from "commander";
import { CliError, ExitCodes, intOption, setExitCode } from "../errors.js";
import type { LocalStack } from "../stack.js";

/** Variables a client in another terminal needs when the stack is not at the defaults. */
async function envPrefix(stack: LocalStack): Promise<string> {
  const [{ DEFAULT_STORE_URI, displayStoreUri }, { DEFAULT_TEMPORAL_ADDRESS }] = await Promise.all([import("../store.js"), import("../temporal.js")]);
  const vars: string[] = [];
  if (stack.address !== DEFAULT_TEMPORAL_ADDRESS) vars.push(`TEMPORAL_ADDRESS=${stack.address}`);
  if (displayStoreUri(DEFAULT_STORE_URI) !== stack.storeUri) vars.push(`METATRAIN_STORE=${stack.storeUri}`);
  return vars.map((v) => `${v} `).join("");
}

export function registerDev(program: Command): void {
  program
    .command("dev")
    .description("run a local stack in the foreground: Temporal dev server (with Web UI), one worker (role all), a filesystem store under --dir; Ctrl-C stops everything")
    .option("--dir <dir>", "where the Temporal database, the store and the logs live", ".metatrain")
    .option("--ip <ip>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "Temporal frontend port (clients use TEMPORAL_ADDRESS=<ip>:<port>)", "7233")
    .option("--ui-port <port>", "Temporal Web UI port", "8233")
    .option("--metrics-port <port>", "the worker's Prometheus /metrics port (default: env METATRAIN_METRICS_PORT, else 9464)")
    .option("--temporal-metrics-port <port>", "the worker's Temporal SDK metrics port; 0 picks a free one (default: env METATRAIN_TEMPORAL_METRICS_PORT, else 9465)")
    .option("--quiet", "do not echo the worker's log lines (they are in <dir>/worker.log)")
    .action(async (opts: { dir: string; ip: string; port: string; uiPort: string; metricsPort?: string; temporalMetricsPort?: string; quiet?: boolean }) => {
      const port = intOption("--port", opts.port, 1, 65535);
      const uiPort = intOption("--ui-port", opts.uiPort, 1, 65535);
      const metricsRaw = opts.metricsPort ?? process.env.METATRAIN_METRICS_PORT ?? "9464";
      const metricsPort = intOption(opts.metricsPort ? "--metrics-port" : "METATRAIN_METRICS_PORT", metricsRaw, 1, 65535);
      const sdkRaw = opts.temporalMetricsPort ?? process.env.METATRAIN_TEMPORAL_METRICS_PORT?.trim() ?? "";
      const sdkPicked = sdkRaw === "" ? undefined : intOption(opts.temporalMetricsPort ? "--temporal-metrics-port" : "METATRAIN_TEMPORAL_METRICS_PORT", sdkRaw, 0, 65535);
      // 0: picked here rather than by the worker, so that the line below can say where it is.
      // The stack (Temporal client, worker launcher) loads only here, not for `dev --help`.
      const [{ pickFreePort }, { startLocalStack }] = await Promise.all([import("../../telemetry/server.js"), import("../stack.js")]);
      const temporalMetricsPort = sdkPicked === 0 ? await pickFreePort(opts.ip) : sdkPicked;
      const say = (line: string) => process.stdout.write(`metatrain dev: ${line}\n`);
      let died: ((what: string) => void) | undefined;
      const diedP = new Promise<string>((res) => (died = res));
      let interrupted: (() => void) | undefined;
      const interruptP = new Promise<void>((res) => (interrupted = res));
      // Listen before the stack starts: a Ctrl-C while it starts stops what was started.
      for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => interrupted?.());
      const stackP = startLocalStack({
        dir: opts.dir,
        ip: opts.ip,
        port,
        uiPort,
        metricsPort,
        ...(temporalMetricsPort !== undefined ? { temporalMetricsPort } : {}),
        say,
        workerLine: opts.quiet ? undefined : (line) => process.stdout.write(`  worker | ${line}\n`),
        onExit: (what, code) => died?.(`the ${what === "temporal" ? "Temporal dev server" : "worker"} exited (code ${code})`),
      });
      const first = await Promise.race([stackP.then(() => "ready" as const), interruptP.then(() => "interrupted" as const)]);
      if (first === "interrupted") {
        say("interrupted while starting; stopping …");
        const stack = await stackP.catch(() => undefined);
        await stack?.stop();
        setExitCode(ExitCodes.interrupted);
        return;
      }
      const stack = await stackP;
      const prefix = await envPrefix(stack);
      process.stdout.write(
        [
          "",
          "metatrain dev: local stack ready",
          `  Temporal   ${stack.address} (namespace ${stack.namespace}; pid ${stack.serverPid ?? "?"})`,
          `  Web UI     ${stack.uiUrl}`,
          `  metrics    ${stack.metricsUrl} (Temporal SDK: ${stack.temporalMetricsUrl})`,
          `  store      ${stack.storeUri}`,
          `  worker     role all (pid ${stack.workerPid ?? "?"}), log ${stack.dir}/worker.log`,
          "",
          "In another terminal:",
          `  ${prefix}npx metatrain submit --preset sinusoid-maml --set iterations=300 --watch`,
          "Ctrl-C stops everything.",
          "",
        ].join("\n") + "\n",
      );
      const why = await Promise.race([interruptP.then(() => undefined), diedP]);
      say(why ? `${why}; stopping …` : "stopping the worker (in-flight tasks finish or are retried next time), then the Temporal server …");
      await stack.stop();
      say("stopped");
      if (why) throw new CliError(why, ExitCodes.failure, `logs: ${stack.dir}/temporal.log, ${stack.dir}/worker.log`);
    });
}
