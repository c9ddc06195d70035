/**
 * Shared slots for opened chunks (slots.ts): the pool's bookkeeping, the cache's use of it (a
 * dropped chunk gives its slot back, a full pool makes the cache drop its oldest), and the CAS
 * read path through it: right bytes, copies that stay right after the slot is reused, CORRUPT
 * with the slot given back, and the caller's sealed bytes left alone by `admit`; a chunk read to
 * its end goes first when room is needed, so read-ahead the reader has not reached stays.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cas } from '../../src/cas/cas.ts'
import { deriveContentKeys } from '../../src/cas/keys.ts'
import type { ContentKeys } from '../../src/cas/keys.ts'
import { Sealer } from '../../src/cas/sealer.ts'
import { SlotPool } from '../../src/cas/slots.ts'
import { ErrorCode, isBazilError } from '../../src/errors.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { LruCache } from '../../src/util/lru.ts'

const KiB = 1024

async function codeOf (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'resolved'
  } catch (err) {
    return isBazilError(err) ? err.code : String(err)
  }
}

describe('SlotPool', () => {
  it('gives the smallest class that fits, none when full, and a released slot again with a new generation', () => {
    const pool = new SlotPool([{ size: 300 * KiB, count: 1 }, { size: 100 * KiB, count: 2 }])
    const a = pool.take(50 * KiB)
    const b = pool.take(100 * KiB)
    expect([a?.bytes.byteLength, b?.bytes.byteLength]).toEqual([100 * KiB, 100 * KiB])
    const c = pool.take(10 * KiB) // the small class is full: the larger one serves
    expect(c?.bytes.byteLength).toBe(300 * KiB)
    expect(pool.take(1)).toBeUndefined()
    expect(pool.take(301 * KiB)).toBeUndefined()
    expect(pool.taken).toBe(3)
    if (a === undefined || b === undefined) throw new Error('no slot')
    expect(a.bytes.buffer).toBe(b.bytes.buffer) // one SharedArrayBuffer per class
    expect(a.bytes.byteOffset).not.toBe(b.bytes.byteOffset)

    pool.release(a)
    pool.release(a) // a second release of the same ref is ignored
    expect(pool.taken).toBe(2)
    expect(pool.live(a)).toBe(false)
    const again = pool.take(1)
    expect(again?.index).toBe(a.index)
    expect(again?.gen).not.toBe(a.gen)
    if (again === undefined) throw new Error('no slot')
    expect(pool.live(again)).toBe(true)
    pool.release(a) // stale: must not free the slot now held by `again`
    expect(pool.live(again)).toBe(true)
    expect(pool.taken).toBe(3)
  })
})

describe('LruCache onDrop', () => {
  it('sees every value that leaves: evicted, replaced, deleted, refused, cleared; not one set again', () => {
    const dropped: string[] = []
    const cache = new LruCache<string, string>(3, v => v.length, v => dropped.push(v))
    cache.set('a', 'x')
    cache.set('b', 'y')
    cache.set('c', 'zz') // over 3: evicts the oldest
    expect(dropped).toEqual(['x'])
    const same = 'zz'
    cache.set('c', same) // the same value again: not dropped
    cache.set('b', 'w') // replaced
    cache.delete('b')
    cache.set('d', 'long') // larger than the cache: refused
    expect(dropped).toEqual(['x', 'y', 'w', 'long'])
    expect(cache.dropOldest(v => v === 'nope')).toBe(false)
    cache.set('e', 'e')
    expect(cache.dropOldest(v => v.length === 1)).toBe(true) // the oldest that matches: 'e' ('zz' is older)
    cache.clear()
    expect(dropped).toEqual(['x', 'y', 'w', 'long', 'e', 'zz'])
  })
})

describe('LruCache demote', () => {
  it('evicts demoted values first, in demotion order, until they are used again', () => {
    const dropped: string[] = []
    const cache = new LruCache<string, string>(4, () => 1, v => dropped.push(v))
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, k)
    cache.demote('c')
    cache.demote('b')
    cache.demote('nope') // absent: nothing happens
    cache.set('e', 'e')
    expect(dropped).toEqual(['c']) // not 'a', the least recently used
    expect(cache.get('b')).toBe('b') // used again: back among the recent
    cache.set('f', 'f')
    expect(dropped).toEqual(['c', 'a'])
    cache.demote('e')
    expect(cache.dropOldest(v => v !== 'e')).toBe(true) // a demoted value `pick` refuses is passed over
    expect(dropped).toEqual(['c', 'a', 'd'])
    cache.set('e', 'E') // replaced while demoted (the old value is dropped): the new one is recent
    cache.set('g', 'g')
    cache.set('h', 'h')
    expect(dropped).toEqual(['c', 'a', 'd', 'e', 'b'])
    cache.clear()
    expect(dropped.slice(5).sort()).toEqual(['E', 'f', 'g', 'h'])
  })
})

describe('Cas read-ahead against a full pool', () => {
  it('a chunk read to its end makes room before one loaded ahead and not read yet', async () => {
    const keys = deriveContentKeys(randomBytes(32))
    const pool = new SlotPool([{ size: 300 * KiB, count: 3 }])
    const sealer = new Sealer(keys, pool)
    try {
      const kv = new MemoryStore()
      const writer = new Cas(kv, keys)
      const chunks: Array<{ id: Uint8Array, plain: Uint8Array }> = []
      for (let i = 0; i < 6; i++) {
        const plain = new Uint8Array(randomBytes(200 * KiB + i))
        chunks.push({ id: await writer.put(plain), plain })
      }
      let gets = 0
      const counting = Object.assign(Object.create(kv) as MemoryStore, {
        get: async (id: Uint8Array, options?: { signal?: AbortSignal }) => { gets++; return await kv.get(id, options) }
      })
      const cas = new Cas(counting, keys, { sealer })
      const chunk = (i: number): { id: Uint8Array, plain: Uint8Array } => chunks[i] as { id: Uint8Array, plain: Uint8Array }
      const read = async (i: number): Promise<void> => {
        const { id, plain } = chunk(i)
        const half = plain.byteLength >> 1
        const target = new Uint8Array(plain.byteLength)
        await cas.readInto(id, plain.byteLength, 0, half, target, 0)
        await cas.readInto(id, plain.byteLength, half, plain.byteLength - half, target, half)
        expect(Buffer.from(target).equals(plain)).toBe(true)
      }
      // A sequential reader two chunks ahead of itself, with room for three: each load must drop
      // the chunk just read, never one loaded ahead (which a plain LRU would, as the older one).
      await cas.load(chunk(0).id)
      await cas.load(chunk(1).id)
      for (let i = 0; i < chunks.length; i++) {
        if (i + 2 < chunks.length) await cas.load(chunk(i + 2).id)
        await read(i)
      }
      expect(gets).toBe(chunks.length) // every chunk fetched once
      expect(pool.taken).toBe(3)
    } finally {
      await sealer.close()
    }
  })
})

describe('Cas reads through shared slots', () => {
  let keys: ContentKeys
  let sealer: Sealer
  let pool: SlotPool
  beforeAll(() => {
    keys = deriveContentKeys(randomBytes(32))
    pool = new SlotPool([{ size: 600 * KiB, count: 3 }])
    sealer = new Sealer(keys, pool)
  })
  afterAll(async () => { await sealer.close() })

  async function stored (kv: MemoryStore, count: number): Promise<Array<{ id: Uint8Array, plain: Uint8Array }>> {
    const writer = new Cas(kv, keys)
    const chunks = []
    for (let i = 0; i < count; i++) {
      const plain = new Uint8Array(randomBytes(200 * KiB + i * 1000))
      chunks.push({ id: await writer.put(plain), plain })
    }
    return chunks
  }

  it('reads right, holds a slot per cached chunk, and drops its oldest when the pool is full', async () => {
    const kv = new MemoryStore()
    const chunks = await stored(kv, 5)
    const cas = new Cas(kv, keys, { sealer })
    for (const { id, plain } of chunks) {
      const target = new Uint8Array(plain.byteLength + 10)
      await cas.readInto(id, plain.byteLength, 0, plain.byteLength, target, 10)
      expect(Buffer.from(target.subarray(10)).equals(plain)).toBe(true)
      expect(pool.taken).toBeLessThanOrEqual(3)
    }
    expect(pool.taken).toBe(3) // the three last chunks, cached in slots
    expect(pool.misses).toBeGreaterThan(0) // the pool ran out; the cache made room
    // A copy from `get` is the caller's: reading other chunks (reusing every slot) leaves it intact.
    const first = chunks[0] as { id: Uint8Array, plain: Uint8Array }
    const copy = await cas.get(first.id)
    for (const { id } of chunks.slice(1)) await cas.load(id)
    expect(Buffer.from(copy).equals(first.plain)).toBe(true)
    expect(copy.buffer).not.toBeInstanceOf(SharedArrayBuffer)
    // A part from the middle, and a manifest length that disagrees.
    const part = new Uint8Array(1000)
    await cas.readInto(first.id, first.plain.byteLength, 5000, 1000, part, 0)
    expect(Buffer.from(part).equals(first.plain.subarray(5000, 6000))).toBe(true)
    expect(await codeOf(cas.readInto(first.id, first.plain.byteLength + 1, 0, 10, part, 0))).toBe(ErrorCode.CORRUPT)
  })

  it('a tampered chunk is CORRUPT and gives its slot back', async () => {
    const kv = new MemoryStore()
    const [chunk] = await stored(kv, 1)
    if (chunk === undefined) throw new Error('no chunk')
    const tampered = new Uint8Array(await kv.get(chunk.id))
    tampered[5000] = (tampered[5000] as number) ^ 1
    const bad = new MemoryStore()
    await bad.put(chunk.id, tampered)
    const cas = new Cas(bad, keys, { sealer })
    const before = pool.taken
    expect(await codeOf(cas.readInto(chunk.id, chunk.plain.byteLength, 0, 10, new Uint8Array(10), 0))).toBe(ErrorCode.CORRUPT)
    expect(pool.taken).toBe(before)
  })

  it('admit opens into a slot from a copy and leaves the caller its sealed bytes', async () => {
    const kv = new MemoryStore()
    const [chunk] = await stored(kv, 1)
    if (chunk === undefined) throw new Error('no chunk')
    const sealed = await kv.get(chunk.id)
    const before = Buffer.from(sealed)
    const cas = new Cas(new MemoryStore(), keys, { sealer }) // the chunk is in no store it reads
    await cas.admit(chunk.id, sealed)
    expect(Buffer.from(sealed).equals(before)).toBe(true)
    expect(Buffer.from(await cas.get(chunk.id)).equals(chunk.plain)).toBe(true)
    const bad = new Uint8Array(sealed)
    bad[100] = (bad[100] as number) ^ 1
    const taken = pool.taken
    expect(await codeOf(cas.admit(chunk.id, bad))).toBe(ErrorCode.CORRUPT)
    expect(pool.taken).toBe(taken)
  })
})
