// `metatrain worker [--role gpu|coordinator|all]`: a worker process (what the Kubernetes pods run), via workers/main.ts.
import type { Command } from "commander";
import { CliError, ExitCodes, nearest } from "../errors.js";

const ROLES = ["gpu", "coordinator", "all"] as const;

export function registerWorker(program: Command): void {
  program
    .command("worker")
    .description(
      "run a worker: gpu (shard inner loops, evaluation), coordinator (workflows, outer step, checkpoints) or all; " +
        "configured by TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, METATRAIN_STORE (required), METATRAIN_BACKEND, … (see `metatrain worker --env-help`)",
    )
    .option("--role <role>", "gpu, coordinator or all (default: env METATRAIN_ROLE, else all)")
    .option("--env-help", "print the environment variables the worker reads, and exit")
    .action(async (opts: { role?: string; envHelp?: boolean }) => {
      const role = opts.role ?? process.env.METATRAIN_ROLE?.trim() ?? "all";
      if (!opts.envHelp && !(ROLES as readonly string[]).includes(role)) {
        const near = nearest(role, ROLES);
        throw new CliError(`role '${role}' is not one of ${ROLES.join(", ")}${near ? ` (did you mean '${near}'?)` : ""}`, ExitCodes.badInput);
      }
      // Loaded here: the worker brings the Temporal native runtime and TensorFlow.js.
      const { main, EXIT } = await import("../../workers/main.js");
      const code = await main(opts.envHelp ? ["--help"] : ["--role", role], process.env);
      // The worker's own codes (2 connection, 3 configuration) as every metatrain command uses them.
      const mapped = code === EXIT.connection ? ExitCodes.unreachable : code === EXIT.config ? ExitCodes.badInput : code;
      process.exit(mapped);
    });
}
