import { describe, expect, it } from 'vitest'
import { FanoutStore } from '../../src/kv/fanout.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { BazilError, ErrorCode, isBazilError } from '../../src/errors.ts'
import type { KV, KVOptions } from '../../src/kv/kv.ts'
import { kvComplianceSuite } from '../compliance/kv.suite.ts'

/** A store in front of a MemoryStore with a settable delay and failure, that records aborts. */
class TestStore implements KV {
  readonly inner = new MemoryStore()
  delayMs = 0
  down = false
  gets = 0
  aborted = 0
  corruptValue: Uint8Array | undefined

  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    this.gets++
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, this.delayMs)
      options?.signal?.addEventListener('abort', () => {
        clearTimeout(timer)
        this.aborted++
        reject(new BazilError(ErrorCode.ABORTED, 'aborted'))
      }, { once: true })
    })
    if (this.down) throw new BazilError(ErrorCode.UNAVAILABLE, 'store is down')
    if (this.corruptValue !== undefined) return this.corruptValue
    return await this.inner.get(key, options)
  }

  async put (key: Uint8Array, value: Uint8Array): Promise<void> {
    this.corruptValue = undefined
    await this.inner.put(key, value)
  }
}

const key = new Uint8Array(32).fill(7)
const value = new Uint8Array([1, 2, 3])

describe('FanoutStore', () => {
  kvComplianceSuite('fan-out over two memory stores', async () => {
    const a = new MemoryStore()
    const b = new MemoryStore()
    return { kv: new FanoutStore([{ name: 'a', kv: a, primary: true }, { name: 'b', kv: b }]) }
  })

  it('a staggered request to a second store wins over a slow first one, which is cancelled', async () => {
    const slow = new TestStore()
    const fast = new TestStore()
    await slow.put(key, value)
    await fast.put(key, value)
    const fanout = new FanoutStore([{ name: 'slow', kv: slow }, { name: 'fast', kv: fast }], { initialStaggerMs: 10, minStaggerMs: 500 })
    slow.delayMs = 2000
    expect(await fanout.get(key)).toEqual(value)
    expect(fast.gets).toBe(1)
    expect(slow.aborted).toBe(1)
    // Measured now: the fast store is asked first next time, and alone.
    expect(await fanout.get(key)).toEqual(value)
    expect(fast.gets).toBe(2)
    expect(slow.gets).toBe(1)
  })

  it('moves on at once from a miss or a failure, and says NOT_FOUND only when nobody has it', async () => {
    const empty = new TestStore()
    const down = new TestStore()
    const full = new TestStore()
    await full.put(key, value)
    down.down = true
    const fanout = new FanoutStore([{ name: 'empty', kv: empty }, { name: 'down', kv: down }, { name: 'full', kv: full }], { initialStaggerMs: 10_000 })
    expect(await fanout.get(key)).toEqual(value)
    const other = new Uint8Array(32).fill(9)
    await expect(new FanoutStore([{ name: 'empty', kv: empty }]).get(other)).rejects.toSatisfy(e => isBazilError(e, 'NOT_FOUND'))
    await expect(new FanoutStore([{ name: 'down', kv: down }]).get(key)).rejects.toSatisfy(e => isBazilError(e, 'UNAVAILABLE'))
  })

  it('asks a primary with `has` first, and goes straight to the others when it lacks the key', async () => {
    class LocalStore extends TestStore {
      async has (k: Uint8Array): Promise<boolean> { return await this.inner.has(k) }
    }
    const local = new LocalStore()
    const peer = new TestStore()
    await peer.put(key, value)
    const fanout = new FanoutStore([{ name: 'local', kv: local, primary: true }, { name: 'peer', kv: peer }], { initialStaggerMs: 10_000 })
    expect(await fanout.get(key)).toEqual(value)
    expect([local.gets, peer.gets]).toEqual([0, 1]) // no miss on the local store first
    await local.put(key, value)
    expect(await fanout.get(key)).toEqual(value)
    expect([local.gets, peer.gets]).toEqual([1, 1])
  })

  it('opens the breaker of a failing store, skips it, and lets it back after a probe', async () => {
    const flaky = new TestStore()
    const good = new TestStore()
    await flaky.put(key, value)
    await good.put(key, value)
    flaky.down = true
    const fanout = new FanoutStore([{ name: 'flaky', kv: flaky }, { name: 'good', kv: good }],
      { breakAfter: 2, halfOpenAfterMs: 100, initialStaggerMs: 10_000 })
    for (let i = 0; i < 3; i++) expect(await fanout.get(key)).toEqual(value)
    expect(fanout.status().find(s => s.name === 'flaky')?.state).toBe('open')
    const asked = flaky.gets
    good.delayMs = 0
    await fanout.get(key)
    expect(flaky.gets).toBe(asked) // an open breaker is not asked while another store answers
    flaky.down = false
    good.down = true
    await new Promise(resolve => setTimeout(resolve, 150))
    expect(await fanout.get(key)).toEqual(value) // the half-open probe succeeds
    expect(fanout.status().find(s => s.name === 'flaky')?.state).toBe('closed')
  })

  it('fetches a corrupt copy again from another store and rewrites it', async () => {
    const bad = new TestStore()
    const good = new TestStore()
    await bad.put(key, value)
    await good.put(key, value)
    bad.corruptValue = new Uint8Array([6, 6, 6])
    const fanout = new FanoutStore([{ name: 'bad', kv: bad }, { name: 'good', kv: good }], {
      initialStaggerMs: 10_000,
      validate: (_k, v) => v.length === 3 && v[0] === 1
    })
    expect(await fanout.get(key)).toEqual(value)
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(bad.corruptValue).toBeUndefined()
    expect(await bad.get(key)).toEqual(value)
  })

  it('hedges a late request at once when few are in flight, and only a really late one when many are', async () => {
    const a = new TestStore()
    const b = new TestStore()
    const keys = Array.from({ length: 30 }, (_, i) => new Uint8Array(32).fill(i + 1))
    for (const k of keys) { await a.put(k, value); await b.put(k, value) }
    // B is measured first (slow), then A with jitter: requests of 20 or 100 ms, one at a time.
    const first = new FanoutStore([{ name: 'b', kv: b }], { initialStaggerMs: 10_000 })
    b.delayMs = 200
    await first.get(keys[0] as Uint8Array)
    const fanout = new FanoutStore([{ name: 'a', kv: a }, { name: 'b', kv: b }], { initialStaggerMs: 10_000, busyInFlight: 4 }, first)
    b.delayMs = 5000 // hedges during the learning lose and are cancelled
    for (let i = 0; i < 16; i++) {
      a.delayMs = i % 2 === 0 ? 20 : 100
      await fanout.get(keys[i % 8] as Uint8Array)
    }
    const learnt = fanout.status().find(s => s.name === 'b')?.counters.staggered ?? 0
    const estimate = (fanout as unknown as { members: Array<{ name: string, estimator: { usualMs: (k: number) => number } }> }).members.find(m => m.name === 'a')?.estimator
    if (estimate === undefined) throw new Error('no estimator for a')
    const quiet = estimate.usualMs(1)
    const busy = estimate.usualMs(4)
    expect(busy - quiet).toBeGreaterThan(60) // three deviations of a jitter of ±40 ms
    // Many in flight and A late by its quiet measure only: nobody else is asked.
    a.delayMs = Math.round((quiet + busy) / 2)
    b.delayMs = 0
    await Promise.all(keys.slice(8, 16).map(async k => await fanout.get(k)))
    expect(fanout.status().find(s => s.name === 'b')?.counters.staggered).toBe(learnt)
    // One alone, and late by the quiet measure: B is asked, and wins.
    a.delayMs = Math.round(estimate.usualMs(1) + 200)
    await fanout.get(keys[20] as Uint8Array)
    const bStatus = fanout.status().find(s => s.name === 'b')
    expect(bStatus?.counters.staggered).toBe(learnt + 1)
    expect(bStatus?.counters.wins).toBe(2)
  })

  it('with keep, copies a valid value from another store into the primary, never a corrupt one', async () => {
    const local = new MemoryStore()
    const remote = new TestStore()
    const other = new Uint8Array(32).fill(8)
    await remote.put(key, value)
    await remote.put(other, new Uint8Array([6, 6, 6]))
    const fanout = new FanoutStore([{ name: 'local', kv: local, primary: true }, { name: 'remote', kv: remote }], {
      keep: true,
      validate: (_k, v) => v.length === 3 && v[0] === 1
    })
    expect(await fanout.get(key)).toEqual(value)
    await expect(fanout.get(other)).rejects.toSatisfy(e => isBazilError(e, 'CORRUPT'))
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(await local.get(key)).toEqual(value)
    await expect(local.get(other)).rejects.toSatisfy(e => isBazilError(e, 'NOT_FOUND'))
    // Without keep, nothing is copied.
    const plain = new MemoryStore()
    await new FanoutStore([{ name: 'local', kv: plain, primary: true }, { name: 'remote', kv: remote }], { validate: () => true }).get(key)
    await new Promise(resolve => setTimeout(resolve, 20))
    await expect(plain.get(key)).rejects.toSatisfy(e => isBazilError(e, 'NOT_FOUND'))
  })

  it('passes the caller’s abort to every request in flight', async () => {
    const a = new TestStore()
    const b = new TestStore()
    await a.put(key, value)
    await b.put(key, value)
    a.delayMs = 5000
    b.delayMs = 5000
    const fanout = new FanoutStore([{ name: 'a', kv: a }, { name: 'b', kv: b }], { initialStaggerMs: 5 })
    const ac = new AbortController()
    const pending = fanout.get(key, { signal: ac.signal })
    await new Promise(resolve => setTimeout(resolve, 30))
    ac.abort()
    await expect(pending).rejects.toSatisfy(e => isBazilError(e, 'ABORTED'))
    expect(a.aborted + b.aborted).toBe(2)
  })
})
