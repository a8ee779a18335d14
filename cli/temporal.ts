// The CLI's Temporal client: connection settings from the same environment as the workers, one
// connection per command, and Temporal's errors turned into one-line CliErrors with exit codes.
import { readFileSync } from "node:fs";
import { Client, Connection, NamespaceNotFoundError, WorkflowFailedError, WorkflowNotFoundError, isGrpcServiceError, type TLSConfig } from "@temporalio/client";
import { CliError, ExitCodes, nearest } from "./errors.js";
import { DEFAULT_TEMPORAL_ADDRESS } from "../contracts/queues.js";
import { temporalEnv, TemporalEnvError, type TemporalEnv } from "../contracts/temporal-env.js";

type Env = Readonly<Record<string, string | undefined>>;

/** Where the workers' Temporal server is: the variables `metatrain worker` reads too. */
export interface TemporalSettings {
  /** TEMPORAL_ADDRESS, default 127.0.0.1:7233 (what `metatrain dev` serves). */
  address: string;
  /** TEMPORAL_NAMESPACE, default "default". */
  namespace: string;
  tls?: TLSConfig;
  apiKey?: string;
}

/** Default frontend address of a local dev server. */
export { DEFAULT_TEMPORAL_ADDRESS } from "../contracts/queues.js";

/** Connection settings from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_* and TEMPORAL_API_KEY (parsed as the workers parse them). */
export function temporalSettings(env: Env = process.env): TemporalSettings {
  let t: TemporalEnv;
  try {
    t = temporalEnv(env, (path) => readFileSync(path));
  } catch (e) {
    if (e instanceof TemporalEnvError) throw new CliError(e.message, ExitCodes.badInput, e.suggestion);
    throw e;
  }
  return { address: t.address, namespace: t.namespace, ...(t.tls ? { tls: t.tls } : {}), ...(t.apiKey ? { apiKey: t.apiKey } : {}) };
}

/** A connected client; `close()` when done. */
export interface TemporalSession {
  client: Client;
  connection: Connection;
  settings: TemporalSettings;
  close(): Promise<void>;
}

const firstLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split("\n")[0]!;

export function unreachable(settings: TemporalSettings, detail: string): CliError {
  return new CliError(
    `cannot reach Temporal at ${settings.address} (namespace ${settings.namespace}): ${detail}`,
    ExitCodes.unreachable,
    settings.address === DEFAULT_TEMPORAL_ADDRESS
      ? "start the local stack with `metatrain dev` (or `temporal server start-dev`) in another terminal, or set TEMPORAL_ADDRESS to your cluster's frontend"
      : "check TEMPORAL_ADDRESS (host:port of the frontend) and the TLS or API-key variables, or unset it and run `metatrain dev` for a local stack",
  );
}

/** Connect and check the namespace exists; unreachable servers and missing namespaces become CliErrors. */
export async function connectTemporal(env: Env = process.env, opts: { connectTimeoutMs?: number } = {}): Promise<TemporalSession> {
  const settings = temporalSettings(env);
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: settings.address,
      ...(settings.tls ? { tls: settings.tls } : {}),
      ...(settings.apiKey ? { apiKey: settings.apiKey } : {}),
      connectTimeout: `${opts.connectTimeoutMs ?? 5000}ms`,
    });
  } catch (e) {
    throw unreachable(settings, firstLine(e));
  }
  try {
    await connection.withDeadline(Date.now() + 10_000, () => connection.workflowService.describeNamespace({ namespace: settings.namespace }));
  } catch (e) {
    await connection.close().catch(() => {});
    throw temporalError(e, settings);
  }
  const client = new Client({ connection, namespace: settings.namespace });
  return { client, connection, settings, close: () => connection.close().catch(() => {}) };
}

/** Run `fn` with a connected session, always closing it. */
export async function withTemporal<T>(fn: (s: TemporalSession) => Promise<T>, env: Env = process.env): Promise<T> {
  const s = await connectTemporal(env);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** gRPC status codes we tell apart. */
const GRPC = { CANCELLED: 1, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

function grpcCode(e: unknown): number | undefined {
  for (let c: unknown = e, d = 0; c instanceof Error && d < 5; c = (c as Error).cause, d++) {
    if (isGrpcServiceError(c)) return c.code;
  }
  return undefined;
}

/** Turn what the Temporal client threw into a CliError (unknown errors pass through). */
export function temporalError(e: unknown, settings: TemporalSettings, runId?: string, knownRuns?: readonly string[]): unknown {
  if (e instanceof CliError) return e;
  if (e instanceof WorkflowNotFoundError && runId !== undefined) return unknownRun(runId, settings, knownRuns);
  if (e instanceof NamespaceNotFoundError) return namespaceMissing(settings);
  const code = grpcCode(e);
  if (code === GRPC.NOT_FOUND && /namespace/i.test(firstLine(e))) return namespaceMissing(settings);
  if (code === GRPC.NOT_FOUND && runId !== undefined) return unknownRun(runId, settings, knownRuns);
  if (code === GRPC.UNAVAILABLE || code === GRPC.DEADLINE_EXCEEDED) return unreachable(settings, firstLine(e));
  if (code === GRPC.PERMISSION_DENIED || code === GRPC.UNAUTHENTICATED) {
    return new CliError(`Temporal at ${settings.address} refused the request: ${firstLine(e)}`, ExitCodes.accessDenied, "check TEMPORAL_API_KEY or the TEMPORAL_TLS_* certificate variables");
  }
  return e;
}

function namespaceMissing(settings: TemporalSettings): CliError {
  return new CliError(
    `namespace '${settings.namespace}' does not exist on the Temporal server at ${settings.address}`,
    ExitCodes.notFound,
    `set TEMPORAL_NAMESPACE to an existing namespace, or create it: temporal operator namespace create ${settings.namespace}`,
  );
}

export function unknownRun(runId: string, settings: TemporalSettings, knownRuns: readonly string[] = []): CliError {
  const near = nearest(runId, knownRuns);
  return new CliError(
    `no run '${runId}' in namespace ${settings.namespace} at ${settings.address}${near ? ` (did you mean '${near}'?)` : ""}`,
    ExitCodes.notFound,
    "`metatrain list` shows the runs",
  );
}

/** The innermost failure of a failed workflow: its error type (ApplicationFailure.type) and message. */
export function failureOf(e: unknown): { type: string | null; message: string } {
  let type: string | null = null;
  let message = firstLine(e);
  let c: unknown = e instanceof WorkflowFailedError ? e.cause : e;
  for (let d = 0; c instanceof Error && d < 20; c = c.cause, d++) {
    const t = (c as { type?: unknown }).type;
    if (typeof t === "string" && t) type = t;
    if (c.message) message = firstLine(c);
    // The workflow's own failure message already names the step and the activity's reason.
    if (typeof t === "string" && t) break;
  }
  return { type, message };
}
