// In-memory blob store for tests and in-process tools: the same envelope and verification as the
// file and S3 stores, so what a test does to the stored bytes is caught exactly as on disk.
import { BlobNotFound, validateKey, validatePrefix, type BlobStore, type PutOptions } from "./blobstore.js";
import { openBlob, sealBlob } from "./envelope.js";

/** A blob store in a Map of key → stored (enveloped) bytes. Nothing persists beyond the process. */
export class MemoryBlobStore implements BlobStore {
  private readonly blobs = new Map<string, Uint8Array>();

  constructor(private readonly name = "memory") {}

  describe(): string {
    return `memory:${this.name}`;
  }

  async put(key: string, bytes: Uint8Array, _opts?: PutOptions): Promise<void> {
    this.blobs.set(validateKey(key), sealBlob(bytes).bytes);
  }

  async get(key: string): Promise<Uint8Array> {
    const stored = this.blobs.get(validateKey(key));
    if (stored === undefined) throw new BlobNotFound(key, this.describe());
    // A copy: a caller that changes what it got must not change what is stored.
    return openBlob(stored, { key, where: `${this.describe()}/${key}` }).slice();
  }

  async exists(key: string): Promise<boolean> {
    return this.blobs.has(validateKey(key));
  }

  async list(prefix: string): Promise<string[]> {
    validatePrefix(prefix);
    return [...this.blobs.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async delete(key: string): Promise<void> {
    this.blobs.delete(validateKey(key));
  }

  /** The bytes as stored (envelope included), for tests that damage them; undefined when absent. */
  stored(key: string): Uint8Array | undefined {
    return this.blobs.get(validateKey(key));
  }

  /** Replace the stored bytes as they are (no envelope added): damage, or a blob in an older format. */
  setStored(key: string, bytes: Uint8Array): void {
    this.blobs.set(validateKey(key), bytes);
  }
}
