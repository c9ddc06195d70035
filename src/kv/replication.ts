/**
 * The replication queue: writes land in the local store first; this queue copies them to the
 * volume's other stores in the background until each target has them. The queue is durable
 * (a level database: `<target>:<hex key>` → enqueue time), so a restart resumes where it left
 * off. Each target is worked on independently; a target that fails (dead server, wrong
 * credentials) backs off exponentially and is retried later, while the others go on.
 */
import { Level } from 'level'
import { BazilError, ErrorCode, fromSystemError, isBazilError } from '../errors.ts'
import { logger } from '../util/log.ts'
import { hasCapability } from './kv.ts'
import type { KV, KVOptions } from './kv.ts'

const log = logger('bazil:kv:replication')

export interface ReplicationOptions {
  /** Where queued keys are read from (the local store). */
  source: KV
  /** The stores to replicate to, by name. */
  targets: Map<string, KV>
  /** Copies in flight per target. */
  concurrency?: number
  /** First retry delay after a failure, ms (doubles up to maxBackoffMs). */
  backoffMs?: number
  maxBackoffMs?: number
}

interface TargetState {
  kv: KV
  running: boolean
  failures: number
  retryAt: number
  lastError: string | undefined
  copied: number
}

export interface TargetBacklog {
  name: string
  pending: number
  copied: number
  failures: number
  lastError: string | undefined
  retryInMs: number
}

export class ReplicationQueue {
  private readonly targets = new Map<string, TargetState>()
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly abort = new AbortController()

  private constructor (private readonly db: Level<string, string>, private readonly options: ReplicationOptions) {
    for (const [name, kv] of options.targets) {
      this.targets.set(name, { kv, running: false, failures: 0, retryAt: 0, lastError: undefined, copied: 0 })
    }
  }

  static async open (dir: string, options: ReplicationOptions): Promise<ReplicationQueue> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' })
    try {
      await db.open()
    } catch (err) {
      throw fromSystemError((err as { cause?: unknown }).cause ?? err, `opening the replication queue in ${dir}`)
    }
    return new ReplicationQueue(db, options)
  }

  /** Queues `key` for every target (or the named ones). Durable when it resolves. */
  async enqueue (key: Uint8Array, targets?: string[]): Promise<void> {
    const names = targets ?? [...this.targets.keys()]
    if (names.length === 0) return
    const hex = Buffer.from(key).toString('hex')
    const now = String(Date.now())
    await this.db.batch(names.map(name => ({ type: 'put' as const, key: `${name}:${hex}`, value: now })))
    this.kick()
  }

  /** Queues many keys at once, each for its own targets (a re-scan after a policy change). */
  async enqueueMany (items: Array<{ key: Uint8Array, targets: string[] }>): Promise<void> {
    const now = String(Date.now())
    const ops = items.flatMap(({ key, targets }) => {
      const hex = Buffer.from(key).toString('hex')
      return targets.filter(name => this.targets.has(name)).map(name => ({ type: 'put' as const, key: `${name}:${hex}`, value: now }))
    })
    if (ops.length === 0) return
    await this.db.batch(ops)
    this.kick()
  }

  /** Objects with a copy still to make to at least one target: below the policy until done. */
  async underReplicated (): Promise<number> {
    const keys = new Set<string>()
    for (const name of this.targets.keys()) {
      for await (const entry of this.db.keys({ gt: `${name}:`, lt: `${name};` })) keys.add(entry.slice(name.length + 1))
    }
    return keys.size
  }

  /** Starts the background work (and keeps it going every `intervalMs`). */
  start (intervalMs = 1000): void {
    this.timer = setInterval(() => { this.kick() }, intervalMs)
    this.timer.unref()
    this.kick()
  }

  async backlog (): Promise<TargetBacklog[]> {
    const out: TargetBacklog[] = []
    for (const [name, state] of this.targets) {
      let pending = 0
      for await (const _ of this.db.keys({ gt: `${name}:`, lt: `${name};` })) pending++
      out.push({ name, pending, copied: state.copied, failures: state.failures, lastError: state.lastError, retryInMs: Math.max(0, state.retryAt - Date.now()) })
    }
    return out
  }

  /** Resolves when every target's queue is empty (or rejects with UNAVAILABLE after timeoutMs). */
  async drain (options: KVOptions & { timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000)
    for (;;) {
      const backlog = await this.backlog()
      if (backlog.every(t => t.pending === 0)) return
      if (options.signal?.aborted === true) throw new BazilError(ErrorCode.ABORTED, 'drain aborted')
      if (Date.now() > deadline) throw new BazilError(ErrorCode.UNAVAILABLE, `replication backlog remains: ${backlog.map(t => `${t.name} ${t.pending}`).join(', ')}`)
      this.kick()
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    this.abort.abort()
    while ([...this.targets.values()].some(t => t.running)) await new Promise(resolve => setTimeout(resolve, 5))
    await this.db.close()
  }

  private kick (): void {
    if (this.stopped) return
    for (const [name, state] of this.targets) {
      if (state.running || Date.now() < state.retryAt) continue
      state.running = true
      this.work(name, state)
        .catch((err: unknown) => { log.error('replication to %s: %s', name, (err as Error).message) })
        .finally(() => { state.running = false })
    }
  }

  /** Copies queued keys to one target until its queue is empty or it fails. */
  private async work (name: string, state: TargetState): Promise<void> {
    const concurrency = this.options.concurrency ?? 4
    for (;;) {
      if (this.stopped) return
      const batch: string[] = []
      for await (const key of this.db.keys({ gt: `${name}:`, lt: `${name};`, limit: 64 })) batch.push(key)
      if (batch.length === 0) return
      let next = 0
      let failed: unknown
      await Promise.all(Array.from({ length: Math.min(concurrency, batch.length) }, async () => {
        while (next < batch.length && failed === undefined && !this.stopped) {
          const entry = batch[next++] as string
          try {
            await this.copy(entry.slice(name.length + 1), state.kv)
            await this.db.del(entry)
            state.copied++
          } catch (err) {
            failed ??= err
          }
        }
      }))
      if (failed !== undefined) {
        if (this.stopped && isBazilError(failed, 'ABORTED')) return
        state.failures++
        state.lastError = (failed as Error).message
        const delay = Math.min((this.options.backoffMs ?? 500) * 2 ** Math.min(state.failures - 1, 16), this.options.maxBackoffMs ?? 60_000)
        state.retryAt = Date.now() + delay
        log('replication to %s failed (%s); retrying in %d ms', name, state.lastError, delay)
        return
      }
      state.failures = 0
      state.lastError = undefined
    }
  }

  private async copy (hex: string, target: KV): Promise<void> {
    const key = Buffer.from(hex, 'hex')
    const signal = this.abort.signal
    if (hasCapability(target, 'has') && await target.has(key, { signal })) return
    let value: Uint8Array
    try {
      value = await this.options.source.get(key, { signal })
    } catch (err) {
      // Gone from the source (e.g. collected): nothing to replicate.
      if (isBazilError(err, 'NOT_FOUND')) return
      throw err
    }
    await target.put(key, value, { signal })
  }
}
