// The `metatrain` command: one file per subcommand under cli/commands/, errors as one line.
import { Command, CommanderError } from "commander";
import { registerCancel } from "./commands/cancel.js";
import { registerConfig } from "./commands/config.js";
import { registerDev } from "./commands/dev.js";
import { registerEval } from "./commands/eval.js";
import { registerExport } from "./commands/export.js";
import { registerList } from "./commands/list.js";
import { registerPause } from "./commands/pause.js";
import { registerPresets } from "./commands/presets.js";
import { registerReport } from "./commands/report.js";
import { registerResume } from "./commands/resume.js";
import { registerResumeFrom } from "./commands/resume-from.js";
import { registerStatus } from "./commands/status.js";
import { registerSubmit } from "./commands/submit.js";
import { registerSweep } from "./commands/sweep.js";
import { registerWatch } from "./commands/watch.js";
import { registerWorker } from "./commands/worker.js";
import { ExitCodes, report, takeExitCode } from "./errors.js";

export function buildProgram(): Command {
  const program = new Command("metatrain")
    // Learners are not listed here: the registry brings TensorFlow.js, and --help answers without it.
    .description("Distributed meta-training on Temporal, TensorFlow.js and S3. `metatrain presets` lists the learners (the config's `algorithm`) with their paper presets.")
    .version("0.1.0")
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      "\nEnvironment: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE (default), METATRAIN_STORE (default file:./.metatrain/store).\n" +
        "Exit codes: 0 ok, 1 failure (or a watched run failed), 2 bad input, 3 unreachable, 4 not found, 5 access denied, 130 interrupted.\n" +
        "Reference: docs/cli.md",
    )
    .exitOverride();
  registerDev(program);
  registerSubmit(program);
  registerSweep(program);
  registerStatus(program);
  registerList(program);
  registerWatch(program);
  registerPause(program);
  registerResume(program);
  registerCancel(program);
  registerResumeFrom(program);
  registerEval(program);
  registerExport(program);
  registerReport(program);
  registerWorker(program);
  registerPresets(program);
  registerConfig(program);
  // Subcommands throw too (not process.exit) on usage errors.
  for (const c of program.commands) c.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  takeExitCode();
  try {
    await buildProgram().parseAsync(argv, { from: "user" });
    return takeExitCode();
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander already printed its message (usage errors, --help, --version).
      return e.exitCode === 0 ? 0 : ExitCodes.badInput;
    }
    return report(e);
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("cli/main.ts")) {
  process.exitCode = await main(process.argv.slice(2));
}
