// Nearest valid names for "did you mean" suggestions: one helper for the CLI, the workflow's config
// parse and the activities' (pure, no I/O, so the workflow bundle can use it).

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate nearest to `name`, if reasonably near (case-insensitive; at most max(2, ⌊length/2⌋) edits). */
export function nearest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(name.toLowerCase(), c.toLowerCase());
    if (dist < bestD) {
      bestD = dist;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 2)) ? best : undefined;
}

/**
 * `unknown config key 'failurePolicy.minShardFractoin' (did you mean 'failurePolicy.minShardFraction'?)`:
 * `prefix` is the dotted path of the object holding `key` (`""` at the top), `valid` its keys.
 */
export function unknownKeyLine(prefix: string, key: string, valid: readonly string[]): string {
  const near = nearest(key, valid);
  const dotted = (k: string) => (prefix ? `${prefix}.${k}` : k);
  return `unknown config key '${dotted(key)}'${near ? ` (did you mean '${dotted(near)}'?)` : ""}`;
}
