// The `metatrain` command: one file per subcommand under cli/commands/, errors as one line.
import { Command, CommanderError } from "commander";
import { registerPresets } from "./commands/presets.js";
import { registerConfig } from "./commands/config.js";
import { ExitCodes, report } from "./errors.js";

export function buildProgram(): Command {
  const program = new Command("metatrain")
    .description("Distributed meta-training (MAML, first-order MAML, Reptile) on Temporal, TensorFlow.js and S3")
    .version("0.1.0")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  registerPresets(program);
  registerConfig(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: "user" });
    return 0;
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
