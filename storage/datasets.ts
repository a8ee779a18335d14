// Loading image sets from disk: the packed Omniglot files and the documented user image-set format.
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { validateImageSet, type ImageClass, type ImageSet } from "../meta/tasks/imageset.js";
import type { OmniglotData } from "../meta/tasks/omniglot.js";

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

/**
 * Read one Omniglot-layout set: `<dir>/<setName>.index.json` and `<dir>/<setName>.28x28.u8`
 * (format: the dataset's README). Classes are characters named "<alphabet>/<character>", with
 * `group` = alphabet; pixels ink = 255. Cached per process by path.
 */
export function loadPackedImageSet(dir: string, setName: string): ImageSet {
  const indexPath = resolve(dir, `${setName}.index.json`);
  const hit = cache.get(indexPath);
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
  const images = readBytes(resolve(dir, `${setName}.28x28.u8`), index.imageCount! * 28 * 28, what, fix);
  const set: ImageSet = { name: setName, height: 28, width: 28, images, classes };
  validateImageSet(set);
  cache.set(indexPath, set);
  return set;
}

/** Both Omniglot sets, 28×28, from `dir` (default: `defaultOmniglotDir()`). */
export function loadOmniglot(dir?: string): OmniglotData {
  const d = dir ?? defaultOmniglotDir();
  return { background: loadPackedImageSet(d, "background"), evaluation: loadPackedImageSet(d, "evaluation") };
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
