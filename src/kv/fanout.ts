/**
 * The fan-out: one KV over several stores (local disk, peers, SFTP, S3). A read goes to the
 * store expected to answer first (moving averages of latency and bandwidth, src/kv/estimator.ts);
 * if it has not answered after a stagger delay derived from what it usually takes, the next
 * store is asked too, and a failure or a miss moves on at once. The delay is "usually" in two
 * senses: with many requests in flight (`busyInFlight`) it is the mean plus four mean
 * deviations of that store's request times — a hedge then only goes out for a request that is
 * really late, since every extra one competes with the others — and with few in flight, when
 * spare capacity costs nothing, the mean plus one deviation. The first valid answer wins and
 * the others are cancelled through their AbortSignal. Each store sits behind a circuit breaker
 * (cockatiel): a store that keeps failing is skipped, probed again later, and comes back by
 * itself. A value that fails validation (the CAS's verify) counts as a failure of that store,
 * the next one is asked, and the bad copy is rewritten from the good one in the background.
 *
 * Writes go to the stores marked `primary` (the local store); replication to the others is the
 * replication queue's job, not the fan-out's. With `keep`, a validated value that a non-primary
 * store answered is also written to the primaries (content read from a peer or a remote store
 * stays on this device and reads offline later).
 */
import { circuitBreaker, ConsecutiveBreaker, CircuitState, handleWhen } from 'cockatiel'
import type { CircuitBreakerPolicy } from 'cockatiel'
import { BazilError, ErrorCode, isBazilError, throwIfAborted } from '../errors.ts'
import { logger } from '../util/log.ts'
import { Estimator } from './estimator.ts'
import { hasCapability } from './kv.ts'
import type { KV, KVHas, KVOptions, KVPutOptions } from './kv.ts'

const log = logger('bazil:kv:fanout')

export interface FanoutMember {
  name: string
  kv: KV
  /** Receives writes (the local store). */
  primary?: boolean
}

export interface FanoutOptions {
  /** Smallest stagger delay, ms. */
  minStaggerMs?: number
  /** Requests in flight (over all stores) from which the fan-out staggers cautiously. */
  busyInFlight?: number
  /** The stagger delay is this many times the expected time of the store being waited on. */
  /** Stagger delay before any measurement exists, ms. */
  initialStaggerMs?: number
  /** Consecutive failures that open a store's breaker. */
  breakAfter?: number
  /** How long an open breaker waits before letting a probe through, ms. */
  halfOpenAfterMs?: number
  /** Checks a value before it is returned (the CAS opens and re-hashes); false = corrupt copy. */
  validate?: (key: Uint8Array, value: Uint8Array) => boolean | Promise<boolean>
  /** Size hint for ordering when the caller does not know the value's size. */
  typicalBytes?: number
  /** Copy validated values that came from a non-primary store into the primaries (needs `validate`). */
  keep?: boolean
}

export interface MemberStatus {
  name: string
  state: 'closed' | 'open' | 'half-open' | 'isolated'
  latencyMs: number | undefined
  bytesPerMs: number | undefined
  successes: number
  failures: number
  counters: MemberCounters
}

/** What happened to the requests sent to one store (cumulative, since the fan-out was built). */
export interface MemberCounters {
  /** Gets sent to the store. */
  requests: number
  /** Of those, sent because the store asked before it had not answered within its stagger delay. */
  staggered: number
  /** Gets whose answer was the one returned. */
  wins: number
  /** Gets cancelled because another store answered first. */
  cancelled: number
  /** Answers that failed validation. */
  corrupt: number
  /** Corrupt copies rewritten with a good one. */
  repaired: number
}

interface Member extends FanoutMember {
  estimator: Estimator
  breaker: CircuitBreakerPolicy
  counters: MemberCounters
}

/** Failures that say something about the store (not "absent" and not the caller's abort). */
const storeFailure = (err: Error): boolean => !isBazilError(err, 'NOT_FOUND') && !isBazilError(err, 'ABORTED')

export class FanoutStore implements KV, KVHas {
  private readonly members: Member[]
  /** Requests sent to stores and not settled yet, over every get. */
  private inFlight = 0
  private readonly options: Required<Omit<FanoutOptions, 'validate' | 'keep'>> & Pick<FanoutOptions, 'validate'> & { keep: boolean }

  /**
   * `previous`: a fan-out this one replaces (stores added or removed); members with the same
   * name keep their measurements, breaker and counters, so the order learned is not lost.
   */
  constructor (members: FanoutMember[], options: FanoutOptions = {}, previous?: FanoutStore) {
    if (members.length === 0) throw new BazilError(ErrorCode.INVALID, 'a fan-out needs at least one store')
    this.options = {
      minStaggerMs: options.minStaggerMs ?? 2,
      busyInFlight: options.busyInFlight ?? 4,
      initialStaggerMs: options.initialStaggerMs ?? 50,
      breakAfter: options.breakAfter ?? 5,
      halfOpenAfterMs: options.halfOpenAfterMs ?? 10_000,
      typicalBytes: options.typicalBytes ?? 256 * 1024,
      validate: options.validate,
      keep: options.keep === true && options.validate !== undefined
    }
    const kept = new Map(previous?.members.map(m => [m.name, m]))
    this.members = members.map(m => {
      const old = kept.get(m.name)
      return old !== undefined ? { ...m, estimator: old.estimator, counters: old.counters, breaker: old.breaker } : this.fresh(m)
    })
  }

  private fresh (m: FanoutMember): Member {
    return {
      ...m,
      estimator: new Estimator(),
      counters: { requests: 0, staggered: 0, wins: 0, cancelled: 0, corrupt: 0, repaired: 0 },
      breaker: circuitBreaker(handleWhen(storeFailure), {
        halfOpenAfter: this.options.halfOpenAfterMs,
        breaker: new ConsecutiveBreaker(this.options.breakAfter)
      })
    }
  }

  status (): MemberStatus[] {
    const names = { [CircuitState.Closed]: 'closed', [CircuitState.Open]: 'open', [CircuitState.HalfOpen]: 'half-open', [CircuitState.Isolated]: 'isolated' } as const
    return this.members.map(m => ({
      name: m.name,
      state: names[m.breaker.state],
      latencyMs: m.estimator.latencyMs,
      bytesPerMs: m.estimator.bytesPerMs,
      successes: m.estimator.successes,
      failures: m.estimator.failures,
      counters: { ...m.counters }
    }))
  }

  async put (key: Uint8Array, value: Uint8Array, options?: KVPutOptions): Promise<void> {
    const primaries = this.members.filter(m => m.primary === true)
    if (primaries.length === 0) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'no primary store to write to')
    await Promise.all(primaries.map(async m => { await m.kv.put(key, value, options) }))
  }

  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    for (const m of this.ordered()) {
      if (!hasCapability(m.kv, 'has')) continue
      try {
        if (await m.breaker.execute(async () => await (m.kv as KV & KVHas).has(key, options))) return true
      } catch (err) {
        if (isBazilError(err, 'ABORTED')) throw err
      }
    }
    return false
  }

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    throwIfAborted(options?.signal)
    const order = await this.primariesLack(key, options) ? this.ordered().filter(m => m.primary !== true) : this.ordered()
    const race = new AbortController()
    const onAbort = (): void => { race.abort(options?.signal?.reason) }
    options?.signal?.addEventListener('abort', onAbort, { once: true })
    const corrupt: Member[] = []
    let notFound = 0
    let lastError: unknown
    try {
      return await new Promise<Uint8Array>((resolve, reject) => {
        let next = 0
        let running = 0
        let settled = false
        let timer: NodeJS.Timeout | undefined
        const inflight = new Map<Member, number>()
        const finish = (): void => {
          if (settled || running > 0 || next < order.length) return
          settled = true
          if (options?.signal?.aborted === true) reject(new BazilError(ErrorCode.ABORTED, 'get aborted', { cause: options.signal.reason }))
          else if (notFound === order.length) reject(new BazilError(ErrorCode.NOT_FOUND, 'no store has the object'))
          else if (corrupt.length > 0 && notFound + corrupt.length === order.length) reject(new BazilError(ErrorCode.CORRUPT, 'every copy failed verification'))
          else reject(new BazilError(ErrorCode.UNAVAILABLE, 'no store could answer', { cause: lastError }))
        }
        const launch = (staggered = false): void => {
          if (settled || next >= order.length) { finish(); return }
          const m = order[next++] as Member
          m.counters.requests++
          if (staggered) m.counters.staggered++
          running++
          this.inFlight++
          const started = performance.now()
          inflight.set(m, started)
          clearTimeout(timer)
          // Stagger: if this one is slow, ask the next one too.
          if (next < order.length) {
            // Late by the quiet measure: hedge, unless many requests are in flight by now and
            // it is not late by the busy one yet.
            const quiet = this.staggerMs(m, false)
            timer = setTimeout(() => {
              const busy = this.staggerMs(m, true) - quiet
              if (this.inFlight >= this.options.busyInFlight && busy > 0) timer = setTimeout(() => { launch(true) }, busy)
              else launch(true)
            }, quiet)
          }
          m.breaker.execute(async () => await m.kv.get(key, { signal: race.signal }), race.signal)
            .then(async value => {
              if (this.options.validate !== undefined && !await this.options.validate(key, value)) {
                throw new BazilError(ErrorCode.CORRUPT, `${m.name} returned a corrupt copy`)
              }
              return value
            })
            .then(value => {
              running--
              this.inFlight--
              inflight.delete(m)
              if (settled) return
              const now = performance.now()
              m.estimator.record(now - started, value.byteLength)
              m.counters.wins++
              // The losers take at least this long: they are asked later next time.
              for (const [loser, since] of inflight) {
                loser.estimator.recordLowerBound(now - since)
                loser.counters.cancelled++
              }
              settled = true
              clearTimeout(timer)
              // Only losers still running need the abort (it costs a DOMException per get).
              if (inflight.size > 0) race.abort()
              // The caller owns what get resolves to (the CAS may transfer it to a worker), so
              // the background writes below get their own copy.
              const keep = this.options.keep && m.primary !== true
              const copy = corrupt.length > 0 || keep ? new Uint8Array(value) : value
              resolve(value)
              this.repair(key, copy, corrupt)
              if (keep) this.keepCopy(key, copy)
            }, (err: unknown) => {
              running--
              this.inFlight--
              inflight.delete(m)
              if (settled) return
              if (isBazilError(err, 'NOT_FOUND')) notFound++
              else if (isBazilError(err, 'CORRUPT')) { corrupt.push(m); m.counters.corrupt++; m.estimator.recordFailure() } else if (!race.signal.aborted) {
                m.estimator.recordFailure()
                lastError = err
                log('%s failed: %s', m.name, (err as Error).message)
              }
              if (race.signal.aborted) { finish(); return }
              launch()
            })
        }
        launch()
      })
    } finally {
      options?.signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * True when every primary (local) store says, through `has`, that it lacks the key: a stat,
   * where a get's miss is a read on the thread pool. The reads that a read-ahead starts
   * together then reach a peer in the same tick and share its want list, instead of each
   * arriving after its own miss. A `has` that fails says nothing (the store is asked).
   */
  private async primariesLack (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    const primaries = this.members.filter(m => m.primary === true)
    if (primaries.length === 0 || primaries.length === this.members.length) return false
    for (const m of primaries) {
      if (!hasCapability(m.kv, 'has')) return false
      try {
        if (await m.kv.has(key, options)) return false
      } catch {
        return false
      }
    }
    return true
  }

  /** Members in the order to ask: closed breakers first, by expected time; open ones last. */
  private ordered (): Member[] {
    const bytes = this.options.typicalBytes
    const open = (m: Member): number => (m.breaker.state === CircuitState.Open || m.breaker.state === CircuitState.Isolated ? 1 : 0)
    return [...this.members].sort((a, b) => open(a) - open(b) || a.estimator.expectedMs(bytes) - b.estimator.expectedMs(bytes))
  }

  /** How long `m` may take before the next store is asked too, with few or many requests in flight. */
  private staggerMs (m: Member, busy: boolean): number {
    const usual = m.estimator.usualMs(busy ? 4 : 1)
    if (usual === undefined) return this.options.initialStaggerMs
    return Math.max(this.options.minStaggerMs, usual)
  }

  /** Writes a value fetched from elsewhere into the primaries (best effort, in the background). */
  private keepCopy (key: Uint8Array, value: Uint8Array): void {
    for (const m of this.members) {
      if (m.primary !== true) continue
      // Lazy: a kept copy is a cache; if a power cut loses it, it is fetched again.
      m.kv.put(key, value, { lazy: true }).catch((err: unknown) => { log('keeping a copy in %s: %s', m.name, (err as Error).message) })
    }
  }

  /** Rewrites copies that failed validation with the good value (best effort, in the background). */
  private repair (key: Uint8Array, value: Uint8Array, corrupt: Member[]): void {
    for (const m of corrupt) {
      const fix = async (): Promise<void> => {
        if (hasCapability(m.kv, 'delete')) await m.kv.delete(key)
        await m.kv.put(key, value)
        m.counters.repaired++
        log('rewrote a corrupt copy in %s', m.name)
      }
      fix().catch((err: unknown) => { log.error('could not repair %s: %s', m.name, (err as Error).message) })
    }
  }
}
