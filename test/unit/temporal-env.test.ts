// The Temporal connection variables, parsed once (contracts/temporal-env.ts) for the worker and the
// CLI: defaults, mTLS, CA and SNI, API key (which turns TLS on), and the same errors from both.
import { test } from "node:test";
import assert from "node:assert/strict";
import { temporalEnv, TemporalEnvError } from "../../contracts/temporal-env.js";
import { temporalSettings } from "../../cli/temporal.js";
import { CliError, ExitCodes } from "../../cli/errors.js";
import { EXIT, main as workerMain, parseWorkerConfig } from "../../workers/main.js";

const files: Record<string, string> = { "/c.pem": "CERT", "/k.pem": "KEY", "/ca.pem": "CA" };
const read = (p: string): Uint8Array => {
  if (!(p in files)) throw Object.assign(new Error(`no such file ${p}`), { code: "ENOENT" });
  return new TextEncoder().encode(files[p]!);
};
const text = (b?: Uint8Array) => (b ? new TextDecoder().decode(b) : undefined);

test("defaults: the local dev server, namespace default, no TLS", () => {
  assert.deepEqual(temporalEnv({}, read), { address: "127.0.0.1:7233", namespace: "default", security: "off" });
  assert.deepEqual(temporalEnv({ TEMPORAL_ADDRESS: " h:1 ", TEMPORAL_NAMESPACE: "ns", TEMPORAL_API_KEY: " " }, read), { address: "h:1", namespace: "ns", security: "off" });
});

test("mTLS reads both PEM files; CA and SNI alone mean server-verified TLS; an API key turns TLS on", () => {
  const m = temporalEnv({ TEMPORAL_TLS_CERT_PATH: "/c.pem", TEMPORAL_TLS_KEY_PATH: "/k.pem", TEMPORAL_TLS_CA_PATH: "/ca.pem", TEMPORAL_TLS_SERVER_NAME: "sni" }, read);
  assert.equal(m.security, "mtls");
  assert.deepEqual([text(m.tls?.clientCertPair?.crt), text(m.tls?.clientCertPair?.key), text(m.tls?.serverRootCACertificate), m.tls?.serverNameOverride], ["CERT", "KEY", "CA", "sni"]);
  assert.equal(temporalEnv({ TEMPORAL_TLS_SERVER_NAME: "sni" }, read).security, "tls");
  const ca = temporalEnv({ TEMPORAL_TLS_CA_PATH: "/ca.pem" }, read);
  assert.deepEqual([ca.security, text(ca.tls?.serverRootCACertificate), ca.tls?.clientCertPair], ["tls", "CA", undefined]);
  const k = temporalEnv({ TEMPORAL_API_KEY: "secret" }, read);
  assert.deepEqual([k.security, k.apiKey, k.tls], ["api-key", "secret", {}]);
  const both = temporalEnv({ TEMPORAL_API_KEY: "secret", TEMPORAL_TLS_CERT_PATH: "/c.pem", TEMPORAL_TLS_KEY_PATH: "/k.pem" }, read);
  assert.deepEqual([both.security, text(both.tls?.clientCertPair?.crt)], ["api-key+mtls", "CERT"]);
});

test("half an mTLS pair or an unreadable file: one error, worded the same by the worker and the CLI", () => {
  const half = { TEMPORAL_TLS_CERT_PATH: "/c.pem" };
  assert.throws(() => temporalEnv(half, read), (e) => e instanceof TemporalEnvError && /set both TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH for mTLS, or neither \(only the certificate is set\)/.test(e.message));
  assert.throws(() => temporalSettings(half), (e) => e instanceof CliError && e.exitCode === ExitCodes.badInput && /only the certificate is set/.test(e.message));
  assert.throws(() => parseWorkerConfig([], { ...half, METATRAIN_STORE: "file:///tmp/x" }), /only the certificate is set/);
  assert.throws(() => temporalEnv({ TEMPORAL_TLS_KEY_PATH: "/k.pem" }, read), /only the key is set/);
  const missing = { TEMPORAL_TLS_CA_PATH: "/nope.pem" };
  assert.throws(() => temporalEnv(missing, read), (e) => e instanceof TemporalEnvError && e.message === "TEMPORAL_TLS_CA_PATH=/nope.pem cannot be read (ENOENT)" && e.suggestion === "point it at a PEM file");
  assert.throws(() => parseWorkerConfig([], { ...missing, METATRAIN_STORE: "file:///tmp/x" }), /TEMPORAL_TLS_CA_PATH=\/nope\.pem cannot be read \(ENOENT\); point it at a PEM file/);
  // The CLI keeps the suggestion apart (printed on its own line) and reads real files through node:fs.
  const nope = "/nonexistent/metatrain-ca.pem";
  assert.throws(
    () => temporalSettings({ TEMPORAL_TLS_CA_PATH: nope }),
    (e) => e instanceof CliError && e.exitCode === ExitCodes.badInput && e.message === `TEMPORAL_TLS_CA_PATH=${nope} cannot be read (ENOENT)` && e.suggestion === "point it at a PEM file",
  );
});

test("the worker exits with its configuration code (3) on a bad connection variable, before it connects", async (t) => {
  const lines: string[] = [];
  t.mock.method(console, "error", (line: string) => void lines.push(line));
  assert.equal(await workerMain([], { TEMPORAL_TLS_KEY_PATH: "/k.pem", METATRAIN_STORE: "file:///tmp/x" }), EXIT.config);
  assert.equal(EXIT.config, 3);
  assert.deepEqual(lines, ["metatrain worker: set both TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH for mTLS, or neither (only the key is set)"]);
});

test("the worker and the CLI read the same address, namespace and security", () => {
  const env = { TEMPORAL_ADDRESS: "temporal:7233", TEMPORAL_NAMESPACE: "ml", TEMPORAL_API_KEY: "k", METATRAIN_STORE: "file:///tmp/x" };
  const w = parseWorkerConfig([], env)!;
  const c = temporalSettings(env);
  assert.deepEqual([w.address, w.namespace, w.apiKey, w.security], [c.address, c.namespace, c.apiKey, "api-key"]);
});
