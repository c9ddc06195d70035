/**
 * A tiny actor: a Startable with a bounded mailbox worked off with a fixed concurrency
 * (1 by default, so state touched inside a job needs no locks). `ask` honours the caller's
 * AbortSignal (a queued job that is aborted never runs); a full mailbox rejects with BUSY
 * rather than growing without bound; `stop()` rejects every queued job with CLOSED and waits
 * for the running ones, so no caller hangs.
 */
import { BazilError, ErrorCode } from '../errors.ts'

export interface ActorOptions {
  name: string
  /** Jobs waiting (not counting running ones) before `ask` rejects with BUSY. */
  mailboxSize?: number
  concurrency?: number
}

interface Job {
  run: () => Promise<unknown>
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
  signal?: AbortSignal
  onAbort?: () => void
}

export class Actor {
  readonly name: string
  private readonly mailboxSize: number
  private readonly concurrency: number
  private readonly queue: Job[] = []
  private running = 0
  private stopped = false
  private idleWaiters: Array<() => void> = []

  constructor (options: ActorOptions) {
    this.name = options.name
    this.mailboxSize = options.mailboxSize ?? 1024
    this.concurrency = options.concurrency ?? 1
  }

  get pending (): number { return this.queue.length + this.running }

  /** Runs `fn` inside the actor, after the jobs already queued. */
  async ask<T> (fn: () => Promise<T> | T, options?: { signal?: AbortSignal }): Promise<T> {
    if (this.stopped) throw new BazilError(ErrorCode.CLOSED, `${this.name} is stopped`)
    const signal = options?.signal
    if (signal?.aborted === true) throw new BazilError(ErrorCode.ABORTED, `${this.name}: aborted`, { cause: signal.reason })
    if (this.queue.length >= this.mailboxSize) throw new BazilError(ErrorCode.BUSY, `${this.name}: mailbox full`)
    return await new Promise<T>((resolve, reject) => {
      const job: Job = { run: async () => await fn(), resolve: resolve as (v: unknown) => void, reject, signal }
      if (signal !== undefined) {
        job.onAbort = () => {
          const i = this.queue.indexOf(job)
          if (i >= 0) {
            this.queue.splice(i, 1)
            reject(new BazilError(ErrorCode.ABORTED, `${this.name}: aborted`, { cause: signal.reason }))
          }
        }
        signal.addEventListener('abort', job.onAbort, { once: true })
      }
      this.queue.push(job)
      this.pump()
    })
  }

  private pump (): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const job = this.queue.shift() as Job
      if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort)
      this.running++
      job.run().then(job.resolve, job.reject).finally(() => {
        this.running--
        this.pump()
        if (this.running === 0 && this.queue.length === 0) {
          const waiters = this.idleWaiters
          this.idleWaiters = []
          for (const w of waiters) w()
        }
      })
    }
  }

  /** Resolves when nothing is queued or running. */
  async idle (): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return
    await new Promise<void>(resolve => this.idleWaiters.push(resolve))
  }

  /** Rejects queued jobs with CLOSED and waits for running ones. */
  async stop (): Promise<void> {
    this.stopped = true
    const queued = this.queue.splice(0)
    for (const job of queued) {
      if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort)
      job.reject(new BazilError(ErrorCode.CLOSED, `${this.name} is stopped`))
    }
    await this.idle()
  }
}
