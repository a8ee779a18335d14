// Where Temporal is and how to reach it, from the environment every metatrain process reads
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_*, TEMPORAL_API_KEY): parsed here once for the
// worker and the CLI. Pure: files are read through the given function, errors carry a suggestion.
import { DEFAULT_TEMPORAL_ADDRESS } from "./queues.js";

type Env = Readonly<Record<string, string | undefined>>;

/** TLS material as both the worker's NativeConnection and the CLI's Connection take it. */
export interface TemporalTls {
  clientCertPair?: { crt: Uint8Array; key: Uint8Array };
  serverRootCACertificate?: Uint8Array;
  serverNameOverride?: string;
}

export interface TemporalEnv {
  /** TEMPORAL_ADDRESS, default 127.0.0.1:7233 (what `metatrain dev` serves). */
  address: string;
  /** TEMPORAL_NAMESPACE, default "default". */
  namespace: string;
  /** Present when any TLS variable or an API key is set (an API key implies TLS). */
  tls?: TemporalTls;
  /** TEMPORAL_API_KEY (Temporal Cloud). */
  apiKey?: string;
  /** `off`, `tls`, `mtls`, `api-key` or `api-key+mtls`, for the startup log line. */
  security: string;
}

/** A variable set wrongly; `suggestion` says what to change. */
export class TemporalEnvError extends Error {
  override readonly name = "TemporalEnvError";
  constructor(
    message: string,
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

const nonEmpty = (env: Env, name: string): string | undefined => {
  const v = env[name]?.trim();
  return v ? v : undefined;
};

/** Parse the connection variables; `readFile` reads PEM files (fs.readFileSync in both callers). */
export function temporalEnv(env: Env, readFile: (path: string) => Uint8Array): TemporalEnv {
  const pem = (path: string, variable: string): Uint8Array => {
    try {
      return readFile(path);
    } catch (e) {
      throw new TemporalEnvError(`${variable}=${path} cannot be read (${(e as { code?: string }).code ?? (e as Error).message})`, "point it at a PEM file");
    }
  };
  const cert = nonEmpty(env, "TEMPORAL_TLS_CERT_PATH");
  const key = nonEmpty(env, "TEMPORAL_TLS_KEY_PATH");
  if ((cert === undefined) !== (key === undefined)) {
    throw new TemporalEnvError(`set both TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH for mTLS, or neither (only ${cert ? "the certificate" : "the key"} is set)`);
  }
  const apiKey = nonEmpty(env, "TEMPORAL_API_KEY");
  const ca = nonEmpty(env, "TEMPORAL_TLS_CA_PATH");
  const serverName = nonEmpty(env, "TEMPORAL_TLS_SERVER_NAME");
  const wantsTls = cert !== undefined || apiKey !== undefined || ca !== undefined || serverName !== undefined;
  const tls: TemporalTls | undefined = wantsTls
    ? {
        ...(cert && key ? { clientCertPair: { crt: pem(cert, "TEMPORAL_TLS_CERT_PATH"), key: pem(key, "TEMPORAL_TLS_KEY_PATH") } } : {}),
        ...(ca ? { serverRootCACertificate: pem(ca, "TEMPORAL_TLS_CA_PATH") } : {}),
        ...(serverName ? { serverNameOverride: serverName } : {}),
      }
    : undefined;
  const security = [apiKey ? "api-key" : "", cert ? "mtls" : "", !apiKey && !cert && wantsTls ? "tls" : ""].filter(Boolean).join("+") || "off";
  return {
    address: nonEmpty(env, "TEMPORAL_ADDRESS") ?? DEFAULT_TEMPORAL_ADDRESS,
    namespace: nonEmpty(env, "TEMPORAL_NAMESPACE") ?? "default",
    ...(tls ? { tls } : {}),
    ...(apiKey ? { apiKey } : {}),
    security,
  };
}
