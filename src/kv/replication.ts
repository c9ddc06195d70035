/**
 * The replication queue: writes land in the local store first; this queue copies them to the
 * volume's other stores in the background until each target has them. The queue is durable
 * (a level database: `<target>:<hex key>` → enqueue time), so a restart resumes where it left
 * off. Each target is worked on independently; a target that fails (dead server, wrong
 * credentials) backs off exponentially and is retried later, while the others go on.
 *
 * A target that has been failing for longer than `reroute.afterMs` has its queued keys moved
 * to other stores (the caller says which, in order of preference, per key): each to the first
 * that is healthy, not queued for the key already and not holding it, so the number of copies
 * is met by any stores (git-annex's numcopies). The move is one level batch per page of
 * entries, so a crash leaves every entry either where it was or where it went. The keys moved
 * are not copied back when the target returns.
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
  /** Re-routing around a target that keeps failing; without it a key waits for its target. */
  reroute?: RerouteOptions
}

export interface RerouteOptions {
  /** How long a target must have been failing without a success before its keys move, ms. */
  afterMs: number
  /**
   * Where a key may go instead of the target it was queued for, best first: the stores its
   * policy did not pick (the target itself and unknown names are skipped).
   */
  fallbacks: (key: Uint8Array) => string[]
}

/** The default grace before a failing target's keys are re-routed (10 minutes). */
export const DEFAULT_REROUTE_AFTER_MS = 10 * 60_000

interface TargetState {
  kv: KV
  running: boolean
  failures: number
  retryAt: number
  lastError: string | undefined
  /** When the current run of failures began (undefined while the target works). */
  failingSince: number | undefined
  copied: number
  /** Keys moved from this target's queue to another store's. */
  rerouted: number
}

export interface TargetBacklog {
  name: string
  pending: number
  copied: number
  failures: number
  lastError: string | undefined
  retryInMs: number
  rerouted: number
}

export class ReplicationQueue {
  private readonly targets = new Map<string, TargetState>()
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly abort = new AbortController()
  /** Re-routes run one at a time, so two of them never pick the same store for one key. */
  private rerouting: Promise<void> = Promise.resolve()

  private constructor (private readonly db: Level<string, string>, private readonly options: ReplicationOptions) {
    for (const [name, kv] of options.targets) {
      this.targets.set(name, { kv, running: false, failures: 0, retryAt: 0, lastError: undefined, failingSince: undefined, copied: 0, rerouted: 0 })
    }
  }

  /** Opens the queue; the entries of a target not in `options.targets` (a removed store) are dropped. */
  static async open (dir: string, options: ReplicationOptions): Promise<ReplicationQueue> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' })
    try {
      await db.open()
    } catch (err) {
      throw fromSystemError((err as { cause?: unknown }).cause ?? err, `opening the replication queue in ${dir}`)
    }
    await dropOtherTargets(db, options.targets)
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

  /**
   * Makes the queue match a policy: each key is queued for exactly `targets`, and its entries
   * for every other target are dropped (the policy no longer picks them).
   */
  async replaceMany (items: Array<{ key: Uint8Array, targets: string[] }>): Promise<void> {
    const ops = items.flatMap(({ key, targets }) => {
      const hex = Buffer.from(key).toString('hex')
      const now = String(Date.now())
      return [...this.targets.keys()].map(name => targets.includes(name)
        ? { type: 'put' as const, key: `${name}:${hex}`, value: now }
        : { type: 'del' as const, key: `${name}:${hex}` })
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
      out.push({ name, pending, copied: state.copied, failures: state.failures, lastError: state.lastError, retryInMs: Math.max(0, state.retryAt - Date.now()), rerouted: state.rerouted })
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
            // Any success ends a run of failures: only a target that does nothing is re-routed around.
            state.failingSince = undefined
          } catch (err) {
            failed ??= err
          }
        }
      }))
      if (failed !== undefined) {
        if (this.stopped && isBazilError(failed, 'ABORTED')) return
        state.failures++
        state.failingSince ??= Date.now()
        state.lastError = (failed as Error).message
        const delay = Math.min((this.options.backoffMs ?? 500) * 2 ** Math.min(state.failures - 1, 16), this.options.maxBackoffMs ?? 60_000)
        state.retryAt = Date.now() + delay
        log('replication to %s failed (%s); retrying in %d ms', name, state.lastError, delay)
        const reroute = this.options.reroute
        if (reroute !== undefined && Date.now() - state.failingSince >= reroute.afterMs) {
          const run = this.rerouting.then(async () => { await this.reroute(name, state, reroute) })
          this.rerouting = run.catch(() => {})
          await run
        }
        return
      }
      state.failures = 0
      state.failingSince = undefined
      state.lastError = undefined
    }
  }

  /** Moves what is queued for a failing target to other stores, where one fits (see the module doc). */
  private async reroute (name: string, state: TargetState, reroute: RerouteOptions): Promise<void> {
    let after = `${name}:`
    let moved = 0
    for (;;) {
      if (this.stopped) return
      const page: Array<[string, string]> = []
      for await (const entry of this.db.iterator({ gt: after, lt: `${name};`, limit: 256 })) page.push(entry)
      const last = page.at(-1)
      if (last === undefined) break
      after = last[0]
      const destinations = await mapLimit(page, this.options.concurrency ?? 4, async ([entry]) =>
        await this.fallbackFor(name, entry.slice(name.length + 1), reroute))
      const ops = page.flatMap(([entry, queuedAt], i) => {
        const to = destinations[i]
        if (to === undefined) return []
        return [{ type: 'del' as const, key: entry }, { type: 'put' as const, key: `${to}:${entry.slice(name.length + 1)}`, value: queuedAt }]
      })
      if (this.stopped) return
      if (ops.length === 0) continue
      await this.db.batch(ops)
      moved += ops.length / 2
    }
    if (moved === 0) return
    state.rerouted += moved
    log.error('store %s has been failing since %s: %d queued objects re-routed to other stores', name, new Date(state.failingSince ?? Date.now()).toISOString(), moved)
    this.kick()
  }

  /**
   * The first of the key's fallbacks that works, is not queued for the key and does not hold it
   * (a store that holds it may be the one an earlier re-route chose: counting it again would
   * leave the key a copy short).
   */
  private async fallbackFor (from: string, hex: string, reroute: RerouteOptions): Promise<string | undefined> {
    const key = Buffer.from(hex, 'hex')
    for (const name of reroute.fallbacks(key)) {
      const target = this.targets.get(name)
      if (name === from || target === undefined || target.failures > 0) continue
      if (await this.db.get(`${name}:${hex}`) !== undefined) continue
      try {
        if (hasCapability(target.kv, 'has') && await target.kv.has(key, { signal: this.abort.signal })) continue
      } catch {
        continue
      }
      return name
    }
    return undefined
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

/** Drops the entries of every target not in `targets`: one seek per target found in the db. */
async function dropOtherTargets (db: Level<string, string>, targets: Map<string, KV>): Promise<void> {
  let after = ''
  for (;;) {
    let first: string | undefined
    for await (const key of db.keys({ gt: after, limit: 1 })) first = key
    if (first === undefined) return
    if (!first.includes(':')) { await db.del(first); continue }
    const name = first.slice(0, first.indexOf(':'))
    if (!targets.has(name)) {
      await db.clear({ gte: `${name}:`, lt: `${name};` })
      log('dropped the replication queue of %s (no longer a store)', name)
    }
    after = `${name};`
  }
}

/** `fn` over `items` with at most `limit` calls in flight; the results in order. */
async function mapLimit<T, R> (items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i] as T)
    }
  }))
  return out
}
