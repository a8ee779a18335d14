// Blob stores: the self-verifying envelope on every backend (file, in-memory, S3 over a scripted HTTP
// server), the filesystem store (round trip, atomic writes, corruption, key rules), openStore URIs and the key layout.
import { test, describe, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  BlobCorrupt, BlobNotFound, InvalidBlobKey, InvalidStoreUri, StoreAccessDenied, StoreRequestRejected, StoreUnavailable,
  isStoreError, openStore, parseS3Uri, sha256Hex, validateKey,
} from "../../storage/blobstore.js";
import { ENVELOPE_HEADER_BYTES, openBlob, sealBlob } from "../../storage/envelope.js";
import { FsBlobStore } from "../../storage/fs-store.js";
import { MemoryBlobStore } from "../../storage/memory-store.js";
import { S3BlobStore } from "../../storage/s3-store.js";
import {
  checkpointManifestKey, contentAddress, iterationPrefix, latestCheckpointKey, optimKey, paramsKey,
  parseCheckpointManifestKey, parseShardKey, runPrefix, shardKey,
} from "../../storage/keys.js";
import { decodeArrays, encodeArrays } from "../../meta/params.js";

/** A small real tensor blob, as activities store them. */
function tensorBlob(seed: number, n = 257): Uint8Array {
  const data = new Float32Array(n).map((_, i) => Math.sin(seed + i));
  return encodeArrays([{ name: "w", shape: [n], data }], { seed });
}

let root: string;
let store: FsBlobStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "metatrain-fs-store-"));
  store = new FsBlobStore({ root });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** Every file under a directory, relative, '/'-separated. */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
    .sort();
}

/**
 * A minimal S3 over HTTP that keeps PUT bodies and their `x-amz-meta-sha256` in a Map and serves them
 * back, so the S3 store's envelope handling runs in a unit test (the real server: test/integration/s3-store.test.ts).
 */
async function scriptedS3(): Promise<{ store: S3BlobStore; objects: Map<string, { body: Buffer; sha256?: string }>; close: () => Promise<void> }> {
  const objects = new Map<string, { body: Buffer; sha256?: string }>();
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c)).on("end", () => {
      const key = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname.replace(/^\/b\//, ""));
      if (req.method === "PUT") {
        const sha = req.headers["x-amz-meta-sha256"];
        objects.set(key, { body: Buffer.concat(chunks), ...(typeof sha === "string" ? { sha256: sha } : {}) });
        res.writeHead(200).end();
        return;
      }
      const o = objects.get(key);
      if (!o) {
        res.writeHead(404, { "content-type": "application/xml" }).end("<Error><Code>NoSuchKey</Code></Error>");
        return;
      }
      res.writeHead(200, { "content-length": o.body.length, ...(o.sha256 ? { "x-amz-meta-sha256": o.sha256 } : {}) });
      res.end(req.method === "HEAD" ? undefined : o.body);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const store = new S3BlobStore({
    bucket: "b", region: "us-east-1", endpoint: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: "k", secretAccessKey: "s" },
  });
  return { store, objects, close: () => { store.destroy(); return new Promise((r) => srv.close(() => r())); } };
}

/** A backend under test: its store, and access to the bytes it keeps at rest (and the S3 metadata). */
interface Backend {
  store: { put(k: string, b: Uint8Array): Promise<void>; get(k: string): Promise<Uint8Array> };
  readStored(key: string): Uint8Array;
  writeStored(key: string, bytes: Uint8Array, opts?: { metadataSha256?: string }): void;
  close(): Promise<void>;
}

const backends: Record<string, () => Promise<Backend>> = {
  file: async () => {
    const fs = new FsBlobStore({ root: mkdtempSync(join(tmpdir(), "metatrain-envelope-")) });
    return {
      store: fs,
      readStored: (k) => readFileSync(fs.pathOf(k)),
      writeStored: (k, b) => {
        mkdirSync(dirname(fs.pathOf(k)), { recursive: true });
        writeFileSync(fs.pathOf(k), b);
      },
      close: async () => rmSync(fs.root, { recursive: true, force: true }),
    };
  },
  memory: async () => {
    const mem = new MemoryBlobStore();
    return { store: mem, readStored: (k) => mem.stored(k)!, writeStored: (k, b) => mem.setStored(k, new Uint8Array(b)), close: async () => {} };
  },
  s3: async () => {
    const s3 = await scriptedS3();
    return {
      store: s3.store,
      readStored: (k) => s3.objects.get(k)!.body,
      writeStored: (k, b, o) => s3.objects.set(k, { body: Buffer.from(b), ...(o?.metadataSha256 ? { sha256: o.metadataSha256 } : {}) }),
      close: s3.close,
    };
  },
};

describe("self-verifying blobs on every backend", () => {
  test("sealBlob: an 80-byte header line with the payload's SHA-256, then the payload unchanged", () => {
    const payload = new TextEncoder().encode('{"iteration":5}');
    const { bytes, sha256 } = sealBlob(payload);
    assert.equal(sha256, sha256Hex(payload));
    // "MTBLOB1 sha256=" (15) + 64 hex digits + "\n" (1) = 80.
    assert.equal(ENVELOPE_HEADER_BYTES, 80);
    assert.equal(Buffer.from(bytes.subarray(0, 80)).toString("latin1"), `MTBLOB1 sha256=${sha256}\n`);
    assert.deepEqual(bytes.subarray(80), payload);
    assert.deepEqual(openBlob(bytes, { key: "k", where: "here" }), payload);
    assert.throws(() => openBlob(sealBlob(payload).bytes.map((b, i) => (i === 6 ? 0x32 : b)), { key: "k", where: "here" }), /envelope version 2; this metatrain reads version 1/);
  });

  for (const [name, open] of Object.entries(backends)) {
    test(`${name}: a flipped byte anywhere in a JSON blob's stored bytes is BlobCorrupt; a blob with no metadata reads; a legacy blob reads`, async () => {
      const b = await open();
      try {
        // JSON has no checksum of its own: only the envelope can catch this.
        const json = new TextEncoder().encode(JSON.stringify({ manifestKey: "runs/r/checkpoints/00000005/manifest.json", iteration: 5 }));
        const key = "runs/r/checkpoints/latest.json";
        await b.store.put(key, json);
        assert.deepEqual(await b.store.get(key), json);
        const stored = Buffer.from(b.readStored(key));
        assert.equal(stored.length, ENVELOPE_HEADER_BYTES + json.length, "header + payload at rest");
        // One flip in the payload, one in the header's checksum digits, one in the magic: each is caught.
        for (const at of [ENVELOPE_HEADER_BYTES + 20, 30, 2]) {
          const bad = Buffer.from(stored);
          bad[at]! ^= 0x01;
          b.writeStored(key, bad);
          await assert.rejects(b.store.get(key), (e: unknown) => e instanceof BlobCorrupt && e.key === key && !e.retryable, `flip at byte ${at}`);
        }
        // The envelope without any metadata (a restarted rclone, a copy made with file tools): verified, read.
        b.writeStored(key, stored);
        assert.deepEqual(await b.store.get(key), json);
        // A legacy blob (raw bytes, as S3 objects were before the envelope), with its metadata checksum…
        b.writeStored(key, json, { metadataSha256: sha256Hex(json) });
        assert.deepEqual(await b.store.get(key), json);
        // …and without it: read as it is.
        b.writeStored(key, json);
        assert.deepEqual(await b.store.get(key), json);
        // A tensor blob in the legacy form keeps its own CRC-32: decoding still catches a flipped byte.
        const tensors = tensorBlob(3);
        const bad = Buffer.from(tensors);
        bad[100]! ^= 0x01;
        b.writeStored("runs/r/params/p.mtt", bad);
        assert.throws(() => decodeArrays(new Uint8Array(bad)), /checksum mismatch/);
        assert.deepEqual(await b.store.get("runs/r/params/p.mtt"), new Uint8Array(bad), "the store returns a legacy blob unverified");
      } finally {
        await b.close();
      }
    });
  }

  test("s3: metadata, when the server keeps it, is checked against the envelope and against a legacy blob", async () => {
    const s3 = await scriptedS3();
    try {
      const payload = tensorBlob(4);
      await s3.store.put("k.mtt", payload);
      assert.equal(s3.objects.get("k.mtt")!.sha256, sha256Hex(payload), "x-amz-meta-sha256 is still written: the payload's SHA-256");
      assert.deepEqual(await s3.store.get("k.mtt"), payload);
      // The envelope verifies, but the metadata names other bytes: someone rewrote one and not the other.
      s3.objects.get("k.mtt")!.sha256 = sha256Hex(tensorBlob(5));
      await assert.rejects(s3.store.get("k.mtt"), (e: unknown) => e instanceof BlobCorrupt && /disagrees with the verified embedded one/.test(e.message));
      // A legacy object whose bytes no longer match its metadata.
      s3.objects.set("old.mtt", { body: Buffer.from(tensorBlob(5)), sha256: sha256Hex(payload) });
      await assert.rejects(s3.store.get("old.mtt"), (e: unknown) => e instanceof BlobCorrupt && /metadata says/.test(e.message));
    } finally {
      await s3.close();
    }
  });

  test("memory: get returns a copy; what a caller does to it does not reach the store", async () => {
    const mem = new MemoryBlobStore();
    await mem.put("a", new Uint8Array([1, 2, 3]));
    (await mem.get("a"))[0] = 9;
    assert.deepEqual(await mem.get("a"), new Uint8Array([1, 2, 3]));
    assert.deepEqual(await mem.list(""), ["a"]);
    await mem.delete("a");
    await assert.rejects(mem.get("a"), BlobNotFound);
  });
});

describe("fs store", () => {
  test("round trip of a tensor blob: same bytes back, still a valid blob, checksum header on disk", async () => {
    const bytes = tensorBlob(1);
    await store.put("runs/r1/params/a.mtt", bytes);
    const back = await store.get("runs/r1/params/a.mtt");
    assert.deepEqual(back, bytes);
    assert.deepEqual(decodeArrays(back).meta, { seed: 1 });
    const onDisk = readFileSync(join(root, "runs", "r1", "params", "a.mtt"));
    assert.equal(onDisk.subarray(0, ENVELOPE_HEADER_BYTES).toString(), `MTBLOB1 sha256=${sha256Hex(bytes)}\n`);
    assert.equal(onDisk.length, ENVELOPE_HEADER_BYTES + bytes.length);
  });

  test("a durable put fsyncs the file and its directory; a recomputable put fsyncs neither and reads back the same", async () => {
    let syncs = 0;
    const counting = new FsBlobStore({
      root,
      fs: {
        ...fsp,
        open: (async (...args: Parameters<typeof fsp.open>) => {
          const fh = await fsp.open(...args);
          const sync = fh.sync.bind(fh);
          fh.sync = async () => { syncs++; return sync(); };
          return fh;
        }) as typeof fsp.open,
      },
    });
    await counting.put("runs/r1/params/p.mtt", tensorBlob(2));
    assert.equal(syncs, 2, "the temp file, then the directory after the rename");
    syncs = 0;
    await counting.put("runs/r1/shards/s.mtt", tensorBlob(3), { recomputable: true });
    assert.equal(syncs, 0);
    assert.deepEqual(await counting.get("runs/r1/shards/s.mtt"), tensorBlob(3));
  });

  test("empty blobs and overwrites round-trip", async () => {
    await store.put("k/empty", new Uint8Array(0));
    assert.equal((await store.get("k/empty")).length, 0);
    await store.put("k/x.json", new TextEncoder().encode('{"v":1}'));
    await store.put("k/x.json", new TextEncoder().encode('{"v":2}'));
    assert.equal(new TextDecoder().decode(await store.get("k/x.json")), '{"v":2}');
  });

  test("list is a sorted string-prefix listing; exists and delete; delete is idempotent", async () => {
    for (const k of ["runs/r1/iter/00000001/shard-0001.mtt", "runs/r1/iter/00000001/shard-0000.mtt", "runs/r1/iter/00000002/shard-0000.mtt", "runs/r2/x", "top"]) {
      await store.put(k, tensorBlob(k.length));
    }
    assert.deepEqual(await store.list("runs/r1/iter/00000001/"), ["runs/r1/iter/00000001/shard-0000.mtt", "runs/r1/iter/00000001/shard-0001.mtt"]);
    assert.deepEqual(await store.list("runs/r1/iter/0000000"), [
      "runs/r1/iter/00000001/shard-0000.mtt", "runs/r1/iter/00000001/shard-0001.mtt", "runs/r1/iter/00000002/shard-0000.mtt",
    ]);
    assert.deepEqual(await store.list("runs/r"), [
      "runs/r1/iter/00000001/shard-0000.mtt", "runs/r1/iter/00000001/shard-0001.mtt", "runs/r1/iter/00000002/shard-0000.mtt", "runs/r2/x",
    ]);
    assert.equal((await store.list("")).length, 5);
    assert.deepEqual(await store.list("nothing/here/"), []);
    assert.equal(await store.exists("runs/r2/x"), true);
    assert.equal(await store.exists("runs/r2"), false, "a folder is not a blob");
    assert.equal(await store.exists("runs/r2/x/y"), false, "below a blob is not a blob");
    await store.delete("runs/r2/x");
    await store.delete("runs/r2/x");
    assert.equal(await store.exists("runs/r2/x"), false);
    await assert.rejects(store.get("runs/r2/x"), (e: unknown) => e instanceof BlobNotFound && e.code === "BLOB_NOT_FOUND" && !e.retryable && /runs\/r2\/x/.test(e.message));
    await assert.rejects(store.get("runs"), BlobNotFound, "a folder reads as not found");
  });

  test("a store whose root does not exist yet lists nothing and finds nothing", async () => {
    const fresh = new FsBlobStore({ root: join(root, "not", "yet") });
    assert.deepEqual(await fresh.list(""), []);
    assert.equal(await fresh.exists("a"), false);
    await assert.rejects(fresh.get("a"), BlobNotFound);
  });

  test("a write that fails before the rename leaves the old blob intact and no file behind", async () => {
    await store.put("runs/r1/iter/00000003/shard-0000.mtt", tensorBlob(1));
    const failing = new FsBlobStore({
      root,
      fs: { ...fsp, rename: async () => { throw Object.assign(new Error("simulated I/O failure"), { code: "EIO" }); } },
    });
    await assert.rejects(
      failing.put("runs/r1/iter/00000003/shard-0000.mtt", tensorBlob(2)),
      (e: unknown) => e instanceof StoreUnavailable && e.retryable && /simulated I\/O failure/.test(e.message),
    );
    await assert.rejects(failing.put("runs/r1/iter/00000003/shard-0001.mtt", tensorBlob(3)), StoreUnavailable);
    assert.deepEqual(await store.get("runs/r1/iter/00000003/shard-0000.mtt"), tensorBlob(1), "old content survives");
    assert.equal(await store.exists("runs/r1/iter/00000003/shard-0001.mtt"), false, "no partial new blob");
    assert.deepEqual(filesUnder(root), ["runs/r1/iter/00000003/shard-0000.mtt"], "temporary files were removed");
  });

  test("a process killed between writing and renaming leaves no partial blob; its temp file is invisible", async () => {
    await store.put("runs/r1/params/p.mtt", tensorBlob(1));
    const fsStoreUrl = pathToFileURL(fileURLToPath(new URL("../../storage/fs-store.ts", import.meta.url))).href;
    // The child writes and fsyncs the temp file, then dies by SIGKILL where it would rename: no
    // catch block or finally runs, exactly as in a crash or an OOM kill.
    const child = spawnSync(process.execPath, [
      "--import", "tsx", "--input-type=module", "-e",
      `import { FsBlobStore } from ${JSON.stringify(fsStoreUrl)};
       import * as fsp from "node:fs/promises";
       const store = new FsBlobStore({ root: ${JSON.stringify(root)}, fs: { ...fsp, rename: async () => { process.kill(process.pid, "SIGKILL"); } } });
       await store.put("runs/r1/params/p.mtt", new Uint8Array(1 << 20).fill(7));
       await store.put("runs/r1/params/q.mtt", new Uint8Array(10));`,
    ], { encoding: "utf8", timeout: 30_000 });
    assert.equal(child.signal, "SIGKILL", `child should die by SIGKILL; stderr: ${child.stderr}`);
    const files = filesUnder(root);
    assert.equal(files.length, 2, `the blob and one leftover temp file: ${files.join(", ")}`);
    assert.match(files.find((f) => f !== "runs/r1/params/p.mtt")!, /^runs\/r1\/params\/\.p\.mtt\.\d+-[0-9a-f]+\.tmp$/);
    assert.deepEqual(await store.get("runs/r1/params/p.mtt"), tensorBlob(1), "readers still see the old, complete blob");
    assert.deepEqual(await store.list("runs/"), ["runs/r1/params/p.mtt"], "the temp file is not listed");
    assert.equal(await store.exists("runs/r1/params/q.mtt"), false);
  });

  test("a flipped byte on disk is BlobCorrupt naming the key; so are truncation and a damaged header", async () => {
    const bytes = tensorBlob(5);
    await store.put("runs/r1/optim/o.mtt", bytes);
    const path = join(root, "runs", "r1", "optim", "o.mtt");
    const disk = readFileSync(path);
    disk[ENVELOPE_HEADER_BYTES + 100]! ^= 0x01;
    writeFileSync(path, disk);
    await assert.rejects(store.get("runs/r1/optim/o.mtt"), (e: unknown) =>
      e instanceof BlobCorrupt && e.code === "BLOB_CORRUPT" && !e.retryable && e.key === "runs/r1/optim/o.mtt" &&
      /runs\/r1\/optim\/o\.mtt/.test(e.message) && /SHA-256 mismatch/.test(e.message) && e.suggestion !== undefined);
    writeFileSync(path, disk.subarray(0, disk.length - 1));
    await assert.rejects(store.get("runs/r1/optim/o.mtt"), /SHA-256 mismatch/);
    writeFileSync(path, disk.subarray(0, 20));
    await assert.rejects(store.get("runs/r1/optim/o.mtt"), /shorter than the 80-byte checksum header/);
    const badHeader = Buffer.from(disk);
    badHeader[10] = 0x21; // '!' inside "sha256=": the header line no longer parses
    writeFileSync(path, badHeader);
    await assert.rejects(store.get("runs/r1/optim/o.mtt"), /damaged checksum header line/);
  });

  test("bad keys are rejected before any I/O, with a message saying what is wrong", async () => {
    const cases: [string, RegExp][] = [
      ["", /it is empty/],
      ["/runs/r1/x", /starts with '\/'.*relative/],
      ["runs/r1/", /ends with '\/'/],
      ["runs//x", /empty segment/],
      ["runs/../etc/passwd", /'\.\.' segment/],
      ["./x", /'\.' segment/],
      ["runs/.hidden", /starts with '\.'/],
      ["runs/a b", /character other than/],
      ["runs/a\\b", /contains '\\'/],
      ["runs/é", /character other than/],
      ["x".repeat(513), /limit is 512/],
      [`runs/${"y".repeat(201)}`, /segment is 201 characters long; the limit is 200/],
    ];
    for (const [key, msg] of cases) {
      await assert.rejects(store.put(key, new Uint8Array(1)), (e: unknown) =>
        e instanceof InvalidBlobKey && e.code === "INVALID_BLOB_KEY" && !e.retryable && msg.test(e.message) && e.suggestion !== undefined,
      `put(${JSON.stringify(key)})`);
      await assert.rejects(store.get(key), InvalidBlobKey);
      await assert.rejects(store.exists(key), InvalidBlobKey);
      await assert.rejects(store.delete(key), InvalidBlobKey);
    }
    await assert.rejects(store.list("/abs"), InvalidBlobKey);
    await assert.rejects(store.list("../up/"), InvalidBlobKey);
    assert.deepEqual(filesUnder(root), [], "nothing was written");
    assert.equal(validateKey("runs/r-1_x/iter/00000001/shard-0000.mtt"), "runs/r-1_x/iter/00000001/shard-0000.mtt");
  });

  test("a key under an existing blob is a clear key conflict on the filesystem", async () => {
    await store.put("a", new Uint8Array(1));
    await assert.rejects(store.put("a/b", new Uint8Array(1)), (e: unknown) => e instanceof InvalidBlobKey && /already a blob/.test(e.message));
  });

  test("permission and disk-full errors map to StoreAccessDenied (final) and StoreUnavailable (retryable)", async () => {
    // Injected, because the tests run as root, which no permission bit stops.
    const errno = (code: string) => async () => { throw Object.assign(new Error(`${code}: simulated`), { code }); };
    const denied = new FsBlobStore({ root, fs: { ...fsp, mkdir: errno("EACCES") } });
    await assert.rejects(denied.put("x/y", new Uint8Array(1)), (e: unknown) =>
      e instanceof StoreAccessDenied && !e.retryable && /permission denied to write/.test(e.message) && /read\/write access/.test(e.suggestion ?? ""));
    const unreadable = new FsBlobStore({ root, fs: { ...fsp, readFile: errno("EACCES") as typeof fsp.readFile } });
    await assert.rejects(unreadable.get("x/y"), StoreAccessDenied);
    const full = new FsBlobStore({ root, fs: { ...fsp, open: errno("ENOSPC") as typeof fsp.open } });
    await assert.rejects(full.put("x/y", new Uint8Array(1)), (e: unknown) =>
      e instanceof StoreUnavailable && e.retryable && /no space left/.test(e.message) && /free disk space/.test(e.suggestion ?? ""));
  });
});

describe("openStore", () => {
  test("file: URIs, absolute and relative, open a filesystem store there", async () => {
    const abs = await openStore(pathToFileURL(root).href, {});
    assert.ok(abs instanceof FsBlobStore);
    assert.equal(abs.root, root);
    await abs.put("x/y", new Uint8Array([1, 2, 3]));
    const rel = await openStore("file:./sub/dir", {}, { cwd: root });
    assert.ok(rel instanceof FsBlobStore);
    assert.equal(rel.root, join(root, "sub", "dir"));
    assert.equal(rel.describe(), pathToFileURL(join(root, "sub", "dir")).href);
    assert.deepEqual(await (await openStore(`file://localhost${root}`, {})).get("x/y"), new Uint8Array([1, 2, 3]));
  });

  test("s3: URIs are configured from the environment without I/O", async () => {
    const s = await openStore("s3://my-bucket/team/exp1/", {
      AWS_ENDPOINT_URL: "http://ignored:1", AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000", AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b",
    });
    assert.ok(s instanceof S3BlobStore);
    assert.equal(s.bucket, "my-bucket");
    assert.equal(s.prefix, "team/exp1");
    assert.equal(s.describe(), "s3://my-bucket/team/exp1 at http://127.0.0.1:9000 (path-style)");
    assert.equal(await s.client.config.region(), "us-east-1");
    assert.equal(s.client.config.forcePathStyle, true);
    assert.deepEqual(await (s.client.config.credentials as () => Promise<{ accessKeyId: string }>)().then((c) => c.accessKeyId), "a");
    s.destroy();
    const aws = (await openStore("s3://my-bucket", { AWS_REGION: "eu-west-3" })) as S3BlobStore;
    assert.equal(aws.describe(), "s3://my-bucket at AWS S3 eu-west-3");
    assert.equal(aws.client.config.forcePathStyle, false);
    assert.equal(await aws.client.config.region(), "eu-west-3");
    aws.destroy();
    const forced = (await openStore("s3://my-bucket", { METATRAIN_S3_FORCE_PATH_STYLE: "true" })) as S3BlobStore;
    assert.equal(forced.client.config.forcePathStyle, true);
    forced.destroy();
  });

  test("bad URIs and settings are InvalidStoreUri saying what to change", async () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      ["", {}, /it is empty/],
      ["/data/blobs", {}, /no scheme/],
      ["gs://bucket", {}, /unsupported scheme "gs:"/],
      ["file://server/share", {}, /cannot name a host/],
      ["file:/abs", {}, /three slashes/],
      ["s3://", {}, /names no bucket/],
      ["s3://Bad_Bucket", {}, /not a valid bucket name/],
      ["s3://ok-bucket/a/../b", {}, /prefix/],
      ["s3://ok-bucket", { AWS_ENDPOINT_URL_S3: "localhost:9000" }, /AWS_ENDPOINT_URL_S3="localhost:9000" is not an http\(s\) URL/],
      ["s3://ok-bucket", { METATRAIN_S3_FORCE_PATH_STYLE: "yes" }, /must be "true" or "false"/],
      ["s3://ok-bucket", { AWS_MAX_ATTEMPTS: "0" }, /positive integer/],
    ];
    for (const [uri, env, msg] of cases) {
      await assert.rejects(openStore(uri, env), (e: unknown) =>
        e instanceof InvalidStoreUri && e.code === "INVALID_STORE_URI" && !e.retryable && msg.test(e.message) && e.suggestion !== undefined,
      `openStore(${JSON.stringify(uri)})`);
    }
    assert.deepEqual(parseS3Uri("s3://b.with.dots/p"), { bucket: "b.with.dots", prefix: "p" });
  });

  test("errors are StoreErrors with code, retryable and suggestion", () => {
    const e = new StoreUnavailable("x", { suggestion: "retry" });
    assert.ok(isStoreError(e));
    assert.equal(e.code, "STORE_UNAVAILABLE");
    assert.equal(e.retryable, true);
    assert.equal(e.name, "StoreUnavailable");
    assert.ok(!isStoreError(new Error("x")));
  });
});

describe("key layout", () => {
  const sha = contentAddress(new TextEncoder().encode("abc"));

  test("content address is SHA-256 hex", () => {
    // SHA-256("abc") is the FIPS 180-2 example digest.
    assert.equal(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  test("keys follow the documented layout, zero-padded so lexical order is numeric order", () => {
    assert.equal(runPrefix("r1"), "runs/r1/");
    assert.equal(paramsKey("r1", sha), `runs/r1/params/${sha}.mtt`);
    assert.equal(optimKey("r1", sha), `runs/r1/optim/${sha}.mtt`);
    assert.equal(shardKey("r1", 42, 3), "runs/r1/iter/00000042/shard-0003.mtt");
    assert.equal(iterationPrefix("r1", 42), "runs/r1/iter/00000042/");
    assert.equal(checkpointManifestKey("r1", 1000), "runs/r1/checkpoints/00001000/manifest.json");
    assert.equal(latestCheckpointKey("r1"), "runs/r1/checkpoints/latest.json");
    const shards = [shardKey("r", 9, 10), shardKey("r", 10, 2), shardKey("r", 9, 2)];
    assert.deepEqual([...shards].sort(), [shardKey("r", 9, 2), shardKey("r", 9, 10), shardKey("r", 10, 2)]);
    for (const k of [...shards, paramsKey("r1", sha), latestCheckpointKey("r1")]) assert.equal(validateKey(k), k);
  });

  test("the same shard always maps to the same key, and keys parse back", () => {
    assert.equal(shardKey("run.a", 7, 1), shardKey("run.a", 7, 1));
    assert.deepEqual(parseShardKey(shardKey("run.a", 7, 1)), { runId: "run.a", iteration: 7, shardIndex: 1 });
    assert.deepEqual(parseCheckpointManifestKey(checkpointManifestKey("r", 5)), { runId: "r", iteration: 5 });
    assert.equal(parseShardKey(paramsKey("r", sha)), undefined);
  });

  test("bad run ids, iterations, shard indices and hashes are InvalidBlobKey", () => {
    assert.throws(() => runPrefix("../x"), (e: unknown) => e instanceof InvalidBlobKey && /run id/.test(e.message));
    assert.throws(() => runPrefix(""), InvalidBlobKey);
    assert.throws(() => runPrefix("a/b"), InvalidBlobKey);
    assert.throws(() => shardKey("r", -1, 0), /iteration must be an integer from 0 to 99999999, got -1/);
    assert.throws(() => shardKey("r", 1.5, 0), /iteration/);
    assert.throws(() => shardKey("r", 100_000_000, 0), /iteration/);
    assert.throws(() => shardKey("r", 0, 10_000), /shard index must be an integer from 0 to 9999/);
    assert.throws(() => checkpointManifestKey("r", NaN), /iteration/);
    assert.throws(() => paramsKey("r", sha.toUpperCase()), /64 lowercase hex/);
    assert.throws(() => optimKey("r", "abc"), /64 lowercase hex/);
  });
});

describe("S3 error mapping (against a scripted HTTP server, for answers a healthy S3 never gives on cue)", () => {
  /** Serve each request with `reply`; returns an S3 store pointed at it. */
  async function scripted(reply: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ store: S3BlobStore; close: () => Promise<void> }> {
    const srv = createServer((req, res) => req.resume().on("end", () => reply(req, res)));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const endpoint = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    const store = new S3BlobStore({
      bucket: "b", region: "us-east-1", endpoint, forcePathStyle: true, maxAttempts: 1,
      credentials: { accessKeyId: "k", secretAccessKey: "s" },
    });
    return { store, close: () => { store.destroy(); return new Promise((r) => srv.close(() => r())); } };
  }
  const xmlError = (res: ServerResponse, status: number, code: string) => {
    res.writeHead(status, { "content-type": "application/xml" });
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>scripted ${code}</Message></Error>`);
  };

  test("bytes that fail the SDK's transit checksum are BlobCorrupt", async () => {
    const body = Buffer.from("abc");
    const { store, close } = await scripted((_req, res) => {
      res.writeHead(200, { "content-length": body.length, "x-amz-meta-sha256": sha256Hex(body), "x-amz-checksum-crc32": "AAAAAA==" });
      res.end(body);
    });
    try {
      await assert.rejects(store.get("k"), (e: unknown) => e instanceof BlobCorrupt && /Checksum mismatch/.test(e.message));
    } finally {
      await close();
    }
  });

  test("5xx is StoreUnavailable (retryable); other 4xx is StoreRequestRejected (final)", async () => {
    let status = 503;
    const { store, close } = await scripted((_req, res) => xmlError(res, status, status === 503 ? "SlowDown" : "InvalidArgument"));
    try {
      await assert.rejects(store.put("k", new Uint8Array(1)), (e: unknown) => e instanceof StoreUnavailable && e.retryable && /SlowDown/.test(e.message));
      status = 400;
      await assert.rejects(store.put("k", new Uint8Array(1)), (e: unknown) =>
        e instanceof StoreRequestRejected && e.code === "STORE_REQUEST_REJECTED" && !e.retryable && /InvalidArgument/.test(e.message));
    } finally {
      await close();
    }
  });
});
