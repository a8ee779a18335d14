// CLI errors: one clear line for the user, an exit code, and never a stack trace.
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    message: string,
    /** Process exit code (see ExitCodes): 2 bad input, 3 unreachable, 4 not found, 5 access denied, 1 anything else. */
    readonly exitCode = 1,
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

/**
 * Exit codes of every `metatrain` command (documented in docs/cli.md):
 * 0 success; 1 failure (a watched run that failed, anything unexpected); 2 bad input (usage, config,
 * preset, value, URI); 3 a service cannot be reached (Temporal, the S3 endpoint); 4 not found (run
 * id, checkpoint, namespace); 5 access denied (S3 credentials or bucket, Temporal credentials);
 * 130 interrupted (Ctrl-C while watching).
 */
export const ExitCodes = { failure: 1, badInput: 2, unreachable: 3, notFound: 4, accessDenied: 5, interrupted: 130 } as const;

export { editDistance, nearest } from "../contracts/names.js";

/** Print an error as the user should see it, and return its exit code. */
export function report(e: unknown, write: (s: string) => void = (s) => process.stderr.write(s)): number {
  if (e instanceof CliError) {
    write(`metatrain: ${e.message}\n`);
    if (e.suggestion) write(`  ${e.suggestion}\n`);
    return e.exitCode;
  }
  const msg = e instanceof Error ? e.message : String(e);
  write(`metatrain: ${msg.split("\n")[0]}\n`);
  if (process.env.METATRAIN_DEBUG) write(`${(e as Error)?.stack ?? ""}\n`);
  else write("  (set METATRAIN_DEBUG=1 for details)\n");
  return ExitCodes.failure;
}

let pendingExitCode = 0;
/** A command's exit code when it ends without an error (e.g. `watch` of a run that failed: 1). */
export function setExitCode(code: number): void {
  pendingExitCode = code;
}
/** Read and reset the code set by `setExitCode` (cli/main.ts, once per command). */
export function takeExitCode(): number {
  const c = pendingExitCode;
  pendingExitCode = 0;
  return c;
}

/** A positive number of seconds from an option value, or a CliError naming the option. */
export function secondsOption(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`${name} must be a positive number of seconds, got '${raw}'`, ExitCodes.badInput);
  return n;
}

/** A positive integer from an option value, or a CliError naming the option and its range. */
export function intOption(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new CliError(`${name} must be an integer from ${min} to ${max}, got '${raw}'`, ExitCodes.badInput);
  return n;
}
