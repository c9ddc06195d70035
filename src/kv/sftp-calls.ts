/**
 * Per-call plumbing for the SFTP store: a `Deadline` that joins the caller's AbortSignal with a
 * time limit, `Slots` bounding how many operations share the connection at once, and
 * `pipelined`, which keeps several chunk requests of one transfer in flight (SFTP answers each
 * request separately, so throughput needs many outstanding at once).
 */
import { BazilError, ErrorCode } from '../errors.ts'

/** Fires on the caller's abort (ABORTED) or when the time is up (TIMEOUT); `dispose()` after. */
export class Deadline {
  readonly #controller = new AbortController()
  readonly #timer: NodeJS.Timeout
  readonly #caller: AbortSignal | undefined
  readonly #onAbort: () => void

  constructor (what: string, timeoutMs: number, caller: AbortSignal | undefined) {
    this.#caller = caller
    this.#onAbort = () => {
      this.#fire(new BazilError(ErrorCode.ABORTED, `${what}: aborted`, { cause: caller?.reason }))
    }
    if (caller?.aborted === true) this.#onAbort()
    else caller?.addEventListener('abort', this.#onAbort, { once: true })
    this.#timer = setTimeout(() => {
      this.#fire(new BazilError(ErrorCode.TIMEOUT, `${what}: no answer within ${timeoutMs} ms`))
    }, timeoutMs)
  }

  get signal (): AbortSignal {
    return this.#controller.signal
  }

  /** Throws the deadline's error if it has fired. */
  check (): void {
    if (this.#controller.signal.aborted) throw this.#controller.signal.reason as BazilError
  }

  /** Settles like `promise`, or rejects with the deadline's error first. */
  async race<T> (promise: Promise<T>): Promise<T> {
    this.check()
    const signal = this.#controller.signal
    let onFire = (): void => {}
    try {
      return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
        onFire = () => { reject(signal.reason) }
        signal.addEventListener('abort', onFire, { once: true })
      })])
    } finally {
      signal.removeEventListener('abort', onFire)
    }
  }

  dispose (): void {
    clearTimeout(this.#timer)
    this.#caller?.removeEventListener('abort', this.#onAbort)
  }

  #fire (error: BazilError): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(error)
  }
}

/** A counting semaphore whose waits end when a signal fires (rejecting with its reason). */
export class Slots {
  readonly #limit: number
  #used = 0
  readonly #waiting: Array<() => void> = []

  constructor (limit: number) {
    this.#limit = limit
  }

  /** Resolves to the slot's release function (call it exactly once). */
  async acquire (signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) throw signal.reason
    if (this.#used < this.#limit) {
      this.#used++
      return this.#releaser()
    }
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => { signal.removeEventListener('abort', onAbort); resolve() }
      const onAbort = (): void => {
        const at = this.#waiting.indexOf(grant)
        if (at >= 0) this.#waiting.splice(at, 1)
        reject(signal.reason)
      }
      this.#waiting.push(grant)
      signal.addEventListener('abort', onAbort, { once: true })
    })
    return this.#releaser() // the slot was handed over by a release: #used already counts it
  }

  #releaser (): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.#waiting.shift()
      if (next !== undefined) next()
      else this.#used--
    }
  }
}

/**
 * Runs `step(offset, length)` over `[0, total)` in chunks of `chunk` bytes, up to `depth` at a
 * time, in offset order. Stops issuing new steps on the first failure or once `signal` fires,
 * but always waits for the steps already issued, so a caller can close its handle afterwards.
 */
export async function pipelined (total: number, chunk: number, depth: number, signal: AbortSignal,
  step: (offset: number, length: number) => Promise<void>): Promise<void> {
  let next = 0
  let failure: unknown
  let failed = false
  const worker = async (): Promise<void> => {
    while (next < total && !failed) {
      if (signal.aborted) { failed = true; failure = signal.reason; return }
      const offset = next
      const length = Math.min(chunk, total - offset)
      next += length
      try {
        await step(offset, length)
      } catch (err) {
        if (!failed) { failed = true; failure = err }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(depth, Math.ceil(total / chunk)) }, worker))
  if (failed) throw failure
}

/** Maps `items` through `fn`, at most `limit` at once; rejects with the first failure. */
export async function mapLimit<T, R> (items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const at = next++
      out[at] = await fn(items[at] as T)
    }
  }))
  return out
}
