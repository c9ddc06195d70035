/**
 * Per-store measurements that order the fan-out: exponentially weighted moving averages of a
 * request's fixed latency and of the bandwidth seen on larger values — `expectedMs(bytes)` is the
 * estimate the fan-out sorts by — and, for its stagger delay, the mean and mean deviation of a
 * whole request's time as TCP keeps them for its retransmission timeout (Jacobson and Karels,
 * "Congestion Avoidance and Control", 1988): a request that takes longer than `meanMs + k·devMs`
 * is unusual for this store whatever its usual jitter.
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
  /** A whole request's time, ms (smoothed, gain 1/8); undefined until the first sample. */
  meanMs: number | undefined
  /** Its mean deviation, ms (smoothed, gain 1/4). */
  devMs = 0

  record (ms: number, bytes: number): void {
    this.successes++
    this.recordTime(ms)
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
    if (this.meanMs === undefined || this.meanMs < ms) this.recordTime(ms)
  }

  private recordTime (ms: number): void {
    if (this.meanMs === undefined) {
      this.meanMs = ms
      this.devMs = ms / 2
      return
    }
    const err = ms - this.meanMs
    this.meanMs += err / 8
    this.devMs += (Math.abs(err) - this.devMs) / 4
  }

  /** How long a request normally takes at most: the mean plus `k` mean deviations. */
  usualMs (k: number): number | undefined {
    return this.meanMs === undefined ? undefined : this.meanMs + k * this.devMs
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
