// Filesystem blob store: one file per key under a root directory, self-verifying and written atomically.
//
// Each file holds the blob in the store envelope (storage/envelope.ts): an 80-byte header line with
// the payload's SHA-256, then the payload. Keeping the checksum inside the file (not in a sidecar)
// makes blob and checksum one atomic rename: no crash can leave one without the other.
//
// Writes go to a temporary file in the key's own directory (same filesystem, so rename is atomic),
// which is fsynced, renamed over the key, and the directory fsynced so the rename survives a power
// loss — except for blobs put as `recomputable` (shard results), which skip both fsyncs: losing
// one to a power cut costs a shard rerun, while the fsyncs cost several milliseconds on every
// shard of every round. Temporary names start with '.', which no valid key segment does, so list/get never see them.
import * as nodeFs from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  BlobNotFound,
  InvalidBlobKey,
  StoreAccessDenied,
  StoreError,
  StoreUnavailable,
  validateKey,
  validatePrefix,
  type BlobStore,
  type PutOptions,
} from "./blobstore.js";
import { openBlob, sealBlob } from "./envelope.js";

/** The filesystem calls the store makes; tests substitute some of them to simulate failures. */
export type FsOps = Pick<typeof nodeFs, "mkdir" | "open" | "rename" | "readFile" | "stat" | "readdir" | "unlink">;

/** Options of `FsBlobStore`. */
export interface FsStoreOptions {
  /** Absolute directory holding the blobs; created on first write. */
  root: string;
  /** Filesystem implementation. Default `node:fs/promises`. */
  fs?: FsOps;
}

/** A blob store in a local (or mounted) directory. */
export class FsBlobStore implements BlobStore {
  readonly root: string;
  private readonly fs: FsOps;

  constructor(opts: FsStoreOptions) {
    this.root = opts.root;
    this.fs = opts.fs ?? nodeFs;
  }

  describe(): string {
    return pathToFileURL(this.root).href;
  }

  /** Absolute path of a key's file. */
  pathOf(key: string): string {
    return join(this.root, ...validateKey(key).split("/"));
  }

  async put(key: string, bytes: Uint8Array, opts?: PutOptions): Promise<void> {
    const durable = !opts?.recomputable;
    const path = this.pathOf(key);
    const dir = dirname(path);
    const tmp = join(dir, `.${key.split("/").pop()}.${process.pid}-${randomBytes(6).toString("hex")}.tmp`);
    const sealed = sealBlob(bytes).bytes;
    try {
      await this.fs.mkdir(dir, { recursive: true });
      const fh = await this.fs.open(tmp, "wx", 0o644);
      try {
        await fh.writeFile(sealed);
        if (durable) await fh.sync();
      } finally {
        await fh.close();
      }
      await this.fs.rename(tmp, path);
    } catch (e) {
      // Best effort: a temp file left by a failed write is invisible to readers but wastes space.
      await this.fs.unlink(tmp).catch(() => undefined);
      throw this.mapError(e, "write", key, path);
    }
    if (durable) await this.syncDir(dir, key);
  }

  async get(key: string): Promise<Uint8Array> {
    const path = this.pathOf(key);
    let buf: Buffer;
    try {
      buf = await this.fs.readFile(path);
    } catch (e) {
      throw this.mapError(e, "read", key, path);
    }
    return openBlob(new Uint8Array(buf.buffer, buf.byteOffset, buf.length), { key, where: `file ${path}` });
  }

  async exists(key: string): Promise<boolean> {
    const path = this.pathOf(key);
    try {
      return (await this.fs.stat(path)).isFile();
    } catch (e) {
      if (isErrno(e, "ENOENT", "ENOTDIR")) return false;
      throw this.mapError(e, "stat", key, path);
    }
  }

  async list(prefix: string): Promise<string[]> {
    validatePrefix(prefix);
    const out: string[] = [];
    const slash = prefix.lastIndexOf("/");
    const startRel = slash < 0 ? "" : prefix.slice(0, slash);
    await this.walk(startRel, prefix, out);
    return out.sort();
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await this.fs.unlink(path);
    } catch (e) {
      // Idempotent: a retried delete, or a key that names a directory of other blobs, is a no-op.
      if (isErrno(e, "ENOENT", "ENOTDIR", "EISDIR")) return;
      throw this.mapError(e, "delete", key, path);
    }
  }

  /** Collect keys under `rel` (a '/'-separated directory relative to the root) that start with `prefix`. */
  private async walk(rel: string, prefix: string, out: string[]): Promise<void> {
    const dir = rel === "" ? this.root : join(this.root, ...rel.split("/"));
    let entries: import("node:fs").Dirent[];
    try {
      entries = await this.fs.readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isErrno(e, "ENOENT", "ENOTDIR")) return;
      throw this.mapError(e, "list", prefix, dir);
    }
    for (const ent of entries) {
      const key = rel === "" ? ent.name : `${rel}/${ent.name}`;
      if (!isValidKey(key)) continue; // temporary files and anything not written through a key
      if (ent.isDirectory()) {
        if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) await this.walk(key, prefix, out);
      } else if (ent.isFile() && key.startsWith(prefix)) {
        out.push(key);
      }
    }
  }

  private async syncDir(dir: string, key: string): Promise<void> {
    let fh: nodeFs.FileHandle | undefined;
    try {
      fh = await this.fs.open(dir, "r");
      await fh.sync();
    } catch (e) {
      // Some filesystems cannot fsync a directory; the rename itself has happened and is atomic.
      if (!isErrno(e, "EINVAL", "EISDIR", "EPERM", "ENOTSUP")) throw this.mapError(e, "write", key, dir);
    } finally {
      await fh?.close();
    }
  }

  private mapError(e: unknown, op: "read" | "write" | "stat" | "list" | "delete", key: string, path: string): StoreError {
    if (e instanceof StoreError) return e;
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    const where = this.describe();
    const cause = { cause: e };
    if (op === "read" && (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR")) return new BlobNotFound(key, where, cause);
    if (op === "write" && (code === "ENOTDIR" || code === "EISDIR" || code === "EEXIST")) {
      return new InvalidBlobKey(key, `on ${where} a path segment of it is already a blob, or the key is already a folder of blobs (${code})`, {
        ...cause,
        suggestion: "a filesystem store cannot hold both \"a\" and \"a/b\"; pick keys where no blob name is a folder of another",
      });
    }
    if (code === "ENAMETOOLONG") {
      return new InvalidBlobKey(key, `its path ${path} is too long for this filesystem`, {
        ...cause,
        suggestion: "use shorter keys or a store root with a shorter path",
      });
    }
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
      return new StoreAccessDenied(`permission denied to ${op} ${path} (${code})`, {
        ...cause,
        suggestion: `give this process read/write access to ${this.root}, or point the store URI at a writable directory`,
      });
    }
    if (code === "ENOSPC" || code === "EDQUOT") {
      return new StoreUnavailable(`no space left to ${op} ${path} (${code})`, {
        ...cause,
        suggestion: `free disk space on the filesystem of ${this.root}; the write can then be retried`,
      });
    }
    return new StoreUnavailable(`filesystem error during ${op} of ${path}: ${(e as Error)?.message ?? String(e)}`, {
      ...cause,
      suggestion: `check that ${this.root} is mounted and healthy; the operation can be retried`,
    });
  }
}

function isValidKey(key: string): boolean {
  try {
    validateKey(key);
    return true;
  } catch {
    return false;
  }
}

function isErrno(e: unknown, ...codes: string[]): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && codes.includes(code);
}
