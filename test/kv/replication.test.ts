import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ReplicationQueue } from '../../src/kv/replication.ts'
import type { TargetBacklog } from '../../src/kv/replication.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import type { KV, KVOptions } from '../../src/kv/kv.ts'
import { tmpDir } from '../helpers/tmp.ts'

class Switchable implements KV {
  readonly inner = new MemoryStore()
  down = false
  async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> { return await this.inner.get(key, options) }
  async put (key: Uint8Array, value: Uint8Array, options?: KVOptions): Promise<void> {
    if (this.down) throw new BazilError(ErrorCode.UNAVAILABLE, 'down')
    this.puts++
    await this.inner.put(key, value, options)
  }

  puts = 0
  async has (key: Uint8Array, options?: KVOptions): Promise<boolean> {
    if (this.down) throw new BazilError(ErrorCode.UNAVAILABLE, 'down')
    return await this.inner.has(key, options)
  }
}

/** Polls until `done` holds; the test's own timeout is the only deadline. */
async function until (done: () => Promise<boolean>): Promise<void> {
  while (!await done()) await new Promise(resolve => setTimeout(resolve, 10))
}

async function backlogOf (queue: ReplicationQueue, name: string): Promise<TargetBacklog> {
  const found = (await queue.backlog()).find(t => t.name === name)
  if (found === undefined) throw new Error(`no target ${name}`)
  return found
}

function targetsOf (stores: Record<string, Switchable>): Map<string, KV> {
  return new Map<string, KV>(Object.entries(stores))
}

const keyOf = (i: number): Uint8Array => new Uint8Array(32).fill(i)

describe('ReplicationQueue', () => {
  it('copies queued keys to every target, and a dead target catches up after it returns', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const a = new Switchable()
    const b = new Switchable()
    b.down = true
    for (let i = 1; i <= 20; i++) await source.put(keyOf(i), new Uint8Array([i]))
    const queue = await ReplicationQueue.open(dir, { source, targets: new Map<string, KV>([['a', a], ['b', b]]), backoffMs: 10, maxBackoffMs: 20 })
    queue.start(10)
    for (let i = 1; i <= 20; i++) await queue.enqueue(keyOf(i))
    await expect(queue.drain({ timeoutMs: 300 })).rejects.toSatisfy(e => (e as BazilError).code === 'UNAVAILABLE')
    const backlog = await queue.backlog()
    expect(backlog.find(t => t.name === 'a')?.pending).toBe(0)
    expect(backlog.find(t => t.name === 'b')?.pending).toBe(20)
    expect(backlog.find(t => t.name === 'b')?.lastError).toBe('down')
    b.down = false
    await queue.drain({ timeoutMs: 5000 })
    for (let i = 1; i <= 20; i++) expect(await b.get(keyOf(i))).toEqual(new Uint8Array([i]))
    await queue.stop()
  })

  it('survives a restart with work still queued', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const target = new Switchable()
    target.down = true
    await source.put(keyOf(1), new Uint8Array([1]))
    const first = await ReplicationQueue.open(dir, { source, targets: new Map<string, KV>([['t', target]]) })
    await first.enqueue(keyOf(1))
    await first.stop()
    target.down = false
    const second = await ReplicationQueue.open(dir, { source, targets: new Map<string, KV>([['t', target]]) })
    expect((await second.backlog())[0]?.pending).toBe(1)
    second.start(10)
    await second.drain({ timeoutMs: 5000 })
    expect(await target.get(keyOf(1))).toEqual(new Uint8Array([1]))
    await second.stop()
  })

  it('re-routes the keys of a target that keeps failing to the first working fallback, and does not copy them back', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const stores = { a: new Switchable(), b: new Switchable(), c: new Switchable(), d: new Switchable() }
    stores.b.down = true
    for (let i = 1; i <= 11; i++) await source.put(keyOf(i), new Uint8Array([i]))
    const queue = await ReplicationQueue.open(dir, {
      source,
      targets: targetsOf(stores),
      backoffMs: 10,
      maxBackoffMs: 20,
      reroute: { afterMs: 50, fallbacks: () => ['c', 'd'] }
    })
    queue.start(10)
    for (let i = 1; i <= 10; i++) await queue.enqueue(keyOf(i), ['a', 'b'])
    await queue.drain({ timeoutMs: 30_000 })
    for (let i = 1; i <= 10; i++) {
      expect(await stores.a.inner.has(keyOf(i))).toBe(true)
      expect(await stores.c.inner.has(keyOf(i))).toBe(true)
    }
    expect(stores.d.puts).toBe(0)
    expect((await backlogOf(queue, 'b')).rerouted).toBe(10)
    expect(await queue.underReplicated()).toBe(0)

    // b is back: what went to c stays there; only new work reaches b.
    stores.b.down = false
    await queue.enqueue(keyOf(11), ['a', 'b'])
    await queue.drain({ timeoutMs: 30_000 })
    expect(stores.b.puts).toBe(1)
    expect(await stores.b.inner.has(keyOf(11))).toBe(true)
    await queue.stop()
  })

  it('a re-routed key skips a fallback that holds it or is queued for it, so each dead target adds a copy elsewhere', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const stores = { a: new Switchable(), b: new Switchable(), c: new Switchable(), d: new Switchable(), e: new Switchable() }
    stores.a.down = true
    stores.b.down = true
    await source.put(keyOf(1), new Uint8Array([1]))
    await stores.c.inner.put(keyOf(1), new Uint8Array([1]))
    const queue = await ReplicationQueue.open(dir, {
      source,
      targets: targetsOf(stores),
      backoffMs: 10,
      maxBackoffMs: 20,
      reroute: { afterMs: 0, fallbacks: () => ['c', 'd', 'e'] }
    })
    queue.start(10)
    await queue.enqueue(keyOf(1), ['a', 'b'])
    await queue.drain({ timeoutMs: 30_000 })
    expect(stores.c.puts).toBe(0)
    expect(await stores.d.inner.has(keyOf(1))).toBe(true)
    expect(await stores.e.inner.has(keyOf(1))).toBe(true)
    await queue.stop()
  })

  it('with no working fallback a key stays queued for its target (and under-replicated) until one works', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const stores = { a: new Switchable(), b: new Switchable() }
    stores.a.down = true
    stores.b.down = true
    for (let i = 1; i <= 2; i++) await source.put(keyOf(i), new Uint8Array([i]))
    const queue = await ReplicationQueue.open(dir, {
      source,
      targets: targetsOf(stores),
      backoffMs: 10,
      maxBackoffMs: 20,
      reroute: { afterMs: 0, fallbacks: () => ['b'] }
    })
    queue.start(10)
    // b fails first (key 2 is queued for it, and its only fallback is itself) ...
    await queue.enqueue(keyOf(2), ['b'])
    await until(async () => (await backlogOf(queue, 'b')).failures > 0)
    // ... so a's key has nowhere to go while b fails.
    await queue.enqueue(keyOf(1), ['a'])
    await until(async () => (await backlogOf(queue, 'a')).failures >= 3)
    expect((await backlogOf(queue, 'a')).pending).toBe(1)
    expect((await backlogOf(queue, 'a')).rerouted).toBe(0)
    expect(await queue.underReplicated()).toBe(2)

    stores.b.down = false
    await queue.drain({ timeoutMs: 30_000 })
    expect(await stores.b.inner.has(keyOf(1))).toBe(true)
    expect(await stores.b.inner.has(keyOf(2))).toBe(true)
    expect((await backlogOf(queue, 'a')).rerouted).toBe(1)
    await queue.stop()
  })

  it('does not re-route before the target has been failing for the grace period', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const stores = { a: new Switchable(), b: new Switchable() }
    stores.a.down = true
    await source.put(keyOf(1), new Uint8Array([1]))
    const queue = await ReplicationQueue.open(dir, {
      source,
      targets: targetsOf(stores),
      backoffMs: 10,
      maxBackoffMs: 20,
      reroute: { afterMs: 3_600_000, fallbacks: () => ['b'] }
    })
    queue.start(10)
    await queue.enqueue(keyOf(1), ['a'])
    await until(async () => (await backlogOf(queue, 'a')).failures >= 3)
    expect((await backlogOf(queue, 'a')).pending).toBe(1)
    expect(stores.b.puts).toBe(0)
    await queue.stop()
  })

  it('replaceMany queues each key for exactly the targets given and drops its other entries', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const stores = { a: new Switchable(), b: new Switchable(), c: new Switchable() }
    for (const store of Object.values(stores)) store.down = true
    const queue = await ReplicationQueue.open(dir, { source, targets: targetsOf(stores) })
    await queue.enqueue(keyOf(1))
    await queue.enqueue(keyOf(2), ['c'])
    await queue.replaceMany([{ key: keyOf(1), targets: ['a'] }, { key: keyOf(2), targets: ['a', 'b'] }])
    expect(Object.fromEntries((await queue.backlog()).map(t => [t.name, t.pending]))).toEqual({ a: 2, b: 1, c: 0 })
    expect(await queue.underReplicated()).toBe(2)
    await queue.stop()
  })

  it('opening the queue drops the entries of a target that is no longer configured', async () => {
    const dir = join(await tmpDir(), 'queue')
    const source = new MemoryStore()
    const stores = { a: new Switchable(), b: new Switchable(), c: new Switchable() }
    for (const store of Object.values(stores)) store.down = true
    const first = await ReplicationQueue.open(dir, { source, targets: targetsOf(stores) })
    for (let i = 1; i <= 3; i++) await first.enqueue(keyOf(i))
    await first.stop()
    const withoutB = await ReplicationQueue.open(dir, { source, targets: targetsOf({ a: stores.a, c: stores.c }) })
    await withoutB.stop()
    // b comes back under the same name: nothing of the old b is left to copy.
    const again = await ReplicationQueue.open(dir, { source, targets: targetsOf(stores) })
    expect(Object.fromEntries((await again.backlog()).map(t => [t.name, t.pending]))).toEqual({ a: 3, b: 0, c: 3 })
    await again.stop()
  })
})
