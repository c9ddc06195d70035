/**
 * The fan-out's per-store counters (shown by `bazil store list --json`): what was asked, what
 * was asked because the store before was slow, who won, who was cancelled, which copies were
 * corrupt and which were rewritten.
 */
import { describe, expect, it } from 'vitest'
import { FanoutStore } from '../../src/kv/fanout.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import type { KV, KVOptions } from '../../src/kv/kv.ts'

/** A MemoryStore that answers after `delayMs` (or when aborted). */
class SlowStore extends MemoryStore implements KV {
  delayMs = 0
  override async get (key: Uint8Array, options?: KVOptions): Promise<Uint8Array> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, this.delayMs)
      options?.signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new BazilError(ErrorCode.ABORTED, 'aborted')) }, { once: true })
    })
    return await super.get(key, options)
  }
}

const key = new Uint8Array(32).fill(3)
const good = new Uint8Array([1, 2, 3])
const counters = (fanout: FanoutStore, name: string): unknown => fanout.status().find(s => s.name === name)?.counters

describe('FanoutStore counters', () => {
  it('count a staggered winner and a cancelled loser', async () => {
    const slow = new SlowStore()
    const fast = new SlowStore()
    await slow.put(key, good)
    await fast.put(key, good)
    slow.delayMs = 2000
    const fanout = new FanoutStore([{ name: 'slow', kv: slow }, { name: 'fast', kv: fast }], { initialStaggerMs: 10 })
    expect(await fanout.get(key)).toEqual(good)
    expect(counters(fanout, 'slow')).toEqual({ requests: 1, staggered: 0, wins: 0, cancelled: 1, corrupt: 0, repaired: 0 })
    expect(counters(fanout, 'fast')).toEqual({ requests: 1, staggered: 1, wins: 1, cancelled: 0, corrupt: 0, repaired: 0 })
  })

  it('count a corrupt copy and its repair', async () => {
    const bad = new MemoryStore()
    const fine = new MemoryStore()
    await bad.put(key, new Uint8Array([9, 9, 9]))
    await fine.put(key, good)
    const fanout = new FanoutStore([{ name: 'bad', kv: bad }, { name: 'fine', kv: fine }], {
      validate: (_key, value) => value[0] === 1
    })
    expect(await fanout.get(key)).toEqual(good)
    while ((fanout.status().find(s => s.name === 'bad')?.counters.repaired ?? 0) === 0) await new Promise(resolve => setTimeout(resolve, 5))
    expect(counters(fanout, 'bad')).toEqual({ requests: 1, staggered: 0, wins: 0, cancelled: 0, corrupt: 1, repaired: 1 })
    expect(await bad.get(key)).toEqual(good)
  })

  it('survive a rebuild for the stores that remain (a store added or removed)', async () => {
    const slow = new SlowStore()
    const fast = new SlowStore()
    await slow.put(key, good)
    await fast.put(key, good)
    slow.delayMs = 2000
    const first = new FanoutStore([{ name: 'slow', kv: slow }, { name: 'fast', kv: fast }], { initialStaggerMs: 10 })
    expect(await first.get(key)).toEqual(good)
    const other = new MemoryStore()
    const second = new FanoutStore([{ name: 'slow', kv: slow }, { name: 'fast', kv: fast }, { name: 'other', kv: other }], { initialStaggerMs: 10 }, first)
    expect(counters(second, 'fast')).toEqual(counters(first, 'fast'))
    // What was learned holds: the fast store is asked first now, and alone.
    expect(await second.get(key)).toEqual(good)
    expect(counters(second, 'slow')).toMatchObject({ requests: 1 })
    expect(counters(second, 'fast')).toMatchObject({ requests: 2, wins: 2 })
  })
})
