// Dense float64 linear algebra that tfjs lacks (tf.linalg has no solve or Cholesky): a Cholesky
// factorisation and the solve of a symmetric positive-definite system, for small systems such as the
// RL baseline's normal equations (8 × 8). Plain arrays, row-major, deterministic on any machine.

/** The lower-triangular L with L·Lᵀ = A for a symmetric positive-definite n × n `a` (row-major), or undefined when A is not positive definite (a pivot ≤ 0 or not finite). */
export function cholesky(a: Float64Array, n: number): Float64Array | undefined {
  if (a.length !== n * n) throw new RangeError(`cholesky: ${a.length} entries is not ${n} × ${n}`);
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j]!;
    for (let k = 0; k < j; k++) d -= l[j * n + k]! ** 2;
    if (!(d > 0) || !Number.isFinite(d)) return undefined;
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < j; k++) s -= l[i * n + k]! * l[j * n + k]!;
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** x with L·Lᵀ·x = b, by forward then back substitution. */
export function choleskySolve(l: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i * n + k]! * y[k]!;
    y[i] = s / l[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= l[k * n + i]! * x[k]!;
    x[i] = s / l[i * n + i]!;
  }
  return x;
}

/**
 * The ridge least-squares fit c = argmin ‖F·c − y‖² + reg·‖c‖² for an m × n design `f` (row-major),
 * from the normal equations (FᵀF + reg·I)·c = Fᵀy. When they are not positive definite to working
 * precision the regulariser is multiplied by 10, up to `retries` times (rllab's
 * LinearFeatureBaseline does the same with numpy's lstsq); throws if it never is.
 */
export function ridgeFit(f: Float64Array, m: number, n: number, y: ArrayLike<number>, reg: number, retries = 5): Float64Array {
  if (f.length !== m * n || y.length !== m) throw new RangeError(`ridgeFit: design ${f.length} entries and ${y.length} targets do not make ${m} × ${n}`);
  const ftf = new Float64Array(n * n);
  const fty = new Float64Array(n);
  for (let r = 0; r < m; r++) {
    for (let i = 0; i < n; i++) {
      const fi = f[r * n + i]!;
      fty[i] = fty[i]! + fi * y[r]!;
      for (let j = 0; j <= i; j++) ftf[i * n + j] = ftf[i * n + j]! + fi * f[r * n + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) ftf[j * n + i] = ftf[i * n + j]!;
  let lambda = reg;
  for (let attempt = 0; attempt <= retries; attempt++, lambda *= 10) {
    const a = ftf.slice();
    for (let i = 0; i < n; i++) a[i * n + i] = a[i * n + i]! + lambda;
    const l = cholesky(a, n);
    if (l) {
      const c = choleskySolve(l, n, fty);
      if (c.every(Number.isFinite)) return c;
    }
  }
  throw new Error(`ridgeFit: the ${n} × ${n} normal equations stay singular up to a regulariser of ${lambda / 10}`);
}
