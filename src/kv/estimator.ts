/**
 * Per-store measurements that order the fan-out: exponentially weighted moving averages of a
 * request's fixed latency and of the bandwidth seen on larger values. `expectedMs(bytes)` is the
 * estimate the fan-out sorts by and derives its stagger delay from.
 */

const ALPHA = 0.2
/** Values below this size say little about bandwidth: they only update latency. */
const BANDWIDTH_MIN_BYTES = 64 * 1024

export class Estimator {
  /** Milliseconds for a small request; undefined until the first sample. */
  latencyMs: number | undefined
  /** Bytes per millisecond on large values; undefined until the first large sample. */
  bytesPerMs: number | undefined
  successes = 0
  failures = 0

  record (ms: number, bytes: number): void {
    this.successes++
    if (bytes >= BANDWIDTH_MIN_BYTES && this.latencyMs !== undefined && ms > this.latencyMs) {
      const rate = bytes / Math.max(ms - this.latencyMs, 0.01)
      this.bytesPerMs = this.bytesPerMs === undefined ? rate : ALPHA * rate + (1 - ALPHA) * this.bytesPerMs
    } else {
      this.latencyMs = this.latencyMs === undefined ? ms : ALPHA * ms + (1 - ALPHA) * this.latencyMs
    }
  }

  /** A request cancelled after `ms` (another store answered first): it takes at least that. */
  recordLowerBound (ms: number): void {
    if (this.latencyMs === undefined || this.latencyMs < ms) {
      this.latencyMs = this.latencyMs === undefined ? ms : ALPHA * ms + (1 - ALPHA) * this.latencyMs
    }
  }

  recordFailure (): void {
    this.failures++
  }

  /** Expected time for a value of `bytes`; unknown stores sort first (so they get measured). */
  expectedMs (bytes: number): number {
    if (this.latencyMs === undefined) return 0
    const transfer = this.bytesPerMs === undefined ? 0 : bytes / this.bytesPerMs
    return this.latencyMs + transfer
  }
}
