// Loading image sets from disk: the packed Omniglot files and the documented user image-set format.
import { existsSync, readFileSync, statSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { validateImageSet, type ImageClass, type ImageSet } from "../meta/tasks/imageset.js";
import type { OmniglotData, OmniglotResolution } from "../meta/tasks/omniglot.js";

/** Loaded sets by resolved path: a process loads each file once (there are only a few). */
const cache = new Map<string, ImageSet>();

/** The repository root: the nearest directory above this module holding metatrain's package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: unknown }).name === "metatrain") return dir;
      } catch {
        // not ours or unreadable: keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find metatrain's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Where Omniglot is read from by default: env METATRAIN_OMNIGLOT_DIR, else <repo>/../shared/data/omniglot. */
export function defaultOmniglotDir(): string {
  const env = process.env.METATRAIN_OMNIGLOT_DIR;
  return env && env.length > 0 ? resolve(env) : resolve(repoRoot(), "..", "shared", "data", "omniglot");
}

function readJson(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`${what}: cannot read ${path} (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what}: ${path} is not valid JSON (${(e as Error).message})`);
  }
}

function readBytes(path: string, expected: number, what: string, fix: string): Uint8Array {
  if (!existsSync(path)) throw new Error(`${what}: pixel file ${path} is missing; ${fix}`);
  const size = statSync(path).size;
  if (size !== expected) {
    throw new Error(`${what}: ${path} has ${size} bytes, expected ${expected}; ${fix}`);
  }
  const buf = readFileSync(path);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

interface PackedIndex {
  characters?: { alphabet: string; character: string; firstImage: number }[];
  drawingsPerCharacter?: number;
  imageCount?: number;
}

/** Bytes of one 105×105 image in `<set>.105x105.bits.gz` after gunzip: 11,025 bits, MSB first, 5 padding bits. */
const BITS_PER_IMAGE_BYTES = 1379;

/**
 * The 105×105 images of a gunzipped `.105x105.bits` buffer as one byte a pixel in the 28×28 files'
 * convention (ink = 255, background = 0): pixel k = y·105 + x of image i is bit 7 − (k & 7) of byte
 * i·1379 + (k >> 3), 1 = ink (the dataset's README).
 */
export function unpackBits105(bits: Uint8Array, imageCount: number): Uint8Array {
  const px = 105 * 105;
  const out = new Uint8Array(imageCount * px);
  for (let i = 0; i < imageCount; i++) {
    const base = i * BITS_PER_IMAGE_BYTES;
    for (let k = 0; k < px; k++) out[i * px + k] = ((bits[base + (k >> 3)]! >> (7 - (k & 7))) & 1) * 255;
  }
  return out;
}

/**
 * Read one Omniglot-layout set: `<dir>/<setName>.index.json` and `<dir>/<setName>.28x28.u8`, or
 * with `resolution` 105 the lossless `<dir>/<setName>.105x105.bits.gz` (format: the dataset's README;
 * unpacked to a byte a pixel, 11,025 bytes an image). Classes are characters named
 * "<alphabet>/<character>", with `group` = alphabet; pixels ink = 255. Cached per process by path.
 */
export function loadPackedImageSet(dir: string, setName: string, resolution: OmniglotResolution = 28): ImageSet {
  const indexPath = resolve(dir, `${setName}.index.json`);
  const cacheKey = resolution === 28 ? indexPath : `${indexPath}#${resolution}`;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const what = `Omniglot set '${setName}'`;
  const fix = `get the packed Omniglot files (see docs/datasets.md) or point METATRAIN_OMNIGLOT_DIR at them`;
  if (!existsSync(indexPath)) throw new Error(`${what}: ${indexPath} not found; ${fix}`);
  const index = readJson(indexPath, what) as PackedIndex;
  const perChar = index.drawingsPerCharacter;
  if (!Array.isArray(index.characters) || !Number.isInteger(perChar) || !Number.isInteger(index.imageCount)) {
    throw new Error(`${what}: ${indexPath} lacks characters[], drawingsPerCharacter or imageCount; ${fix}`);
  }
  const classes: ImageClass[] = index.characters.map((c) => ({
    name: `${c.alphabet}/${c.character}`,
    firstImage: c.firstImage,
    imageCount: perChar!,
    group: c.alphabet,
  }));
  const images =
    resolution === 28
      ? readBytes(resolve(dir, `${setName}.28x28.u8`), index.imageCount! * 28 * 28, what, fix)
      : readBits105(resolve(dir, `${setName}.105x105.bits.gz`), index.imageCount!, what, fix);
  const set: ImageSet = { name: setName, height: resolution, width: resolution, images, classes };
  validateImageSet(set);
  cache.set(cacheKey, set);
  return set;
}

function readBits105(path: string, imageCount: number, what: string, fix: string): Uint8Array {
  if (!existsSync(path)) throw new Error(`${what}: pixel file ${path} is missing; ${fix}`);
  let bits: Uint8Array;
  try {
    bits = gunzipSync(readFileSync(path));
  } catch (e) {
    throw new Error(`${what}: ${path} is not a readable gzip file (${(e as Error).message}); ${fix}`);
  }
  const expected = imageCount * BITS_PER_IMAGE_BYTES;
  if (bits.length !== expected) throw new Error(`${what}: ${path} unpacks to ${bits.length} bytes, expected ${expected}; ${fix}`);
  return unpackBits105(bits, imageCount);
}

/**
 * Both Omniglot sets from `dir` (default: `defaultOmniglotDir()`), 28×28 or the original 105×105.
 * The 105×105 sets take 11,025 bytes an image in memory: 358 MB for both (the 28×28: 25 MB).
 */
export function loadOmniglot(dir?: string, resolution: OmniglotResolution = 28): OmniglotData {
  const d = dir ?? defaultOmniglotDir();
  return { background: loadPackedImageSet(d, "background", resolution), evaluation: loadPackedImageSet(d, "evaluation", resolution) };
}

/**
 * The user image-set index, `<name>.index.json` (see docs/datasets.md). Pixels are in
 * `<name>.<height>x<width>.u8` beside it (or `pixels`, relative to the index): imageCount×H×W bytes.
 */
export interface ImageSetIndex {
  /** Must be "metatrain-imageset/1" when present. */
  format?: string;
  name: string;
  height: number;
  width: number;
  /** Pixel file, relative to the index file. Default `<name>.<height>x<width>.u8`. */
  pixels?: string;
  classes: ImageClass[];
}

/** Load a user image set from its index file, checking it against the pixel file. Cached by path. */
export function loadImageSet(indexPath: string): ImageSet {
  const path = resolve(indexPath);
  const hit = cache.get(path);
  if (hit) return hit;
  const what = `image set ${path}`;
  const idx = readJson(path, what) as Partial<ImageSetIndex>;
  if (idx.format !== undefined && idx.format !== "metatrain-imageset/1") {
    throw new Error(`${what}: unknown format '${idx.format}'; this version reads "metatrain-imageset/1"`);
  }
  if (typeof idx.name !== "string" || idx.name.length === 0) throw new Error(`${what}: 'name' must be a non-empty string`);
  const { height, width } = idx;
  if (!Number.isInteger(height) || height! <= 0 || !Number.isInteger(width) || width! <= 0) {
    throw new Error(`${what}: 'height' and 'width' must be positive integers, got ${height} and ${width}`);
  }
  if (!Array.isArray(idx.classes) || idx.classes.length === 0) {
    throw new Error(`${what}: 'classes' must be a non-empty array of {name, firstImage, imageCount}`);
  }
  const classes: ImageClass[] = idx.classes.map((c, i) => {
    if (typeof c !== "object" || c === null || typeof c.name !== "string") {
      throw new Error(`${what}: classes[${i}] must be an object with a string 'name'`);
    }
    const out: ImageClass = { name: c.name, firstImage: c.firstImage, imageCount: c.imageCount };
    if (typeof c.group === "string") out.group = c.group;
    return out;
  });
  const pixelsPath = resolve(dirname(path), idx.pixels ?? `${idx.name}.${height}x${width}.u8`);
  if (!existsSync(pixelsPath)) throw new Error(`${what}: pixel file ${pixelsPath} is missing`);
  const bytes = statSync(pixelsPath).size;
  const per = height! * width!;
  if (bytes % per !== 0) {
    throw new Error(
      `${what}: ${pixelsPath} has ${bytes} bytes, not a whole number of ${height}×${width} images (${per} bytes each); ` +
        `write one byte per pixel, images back to back, no header`,
    );
  }
  const images = readBytes(pixelsPath, bytes, what, "");
  const set: ImageSet = { name: idx.name, height: height!, width: width!, images, classes };
  validateImageSet(set);
  cache.set(path, set);
  return set;
}
