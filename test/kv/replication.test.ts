import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ReplicationQueue } from '../../src/kv/replication.ts'
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
    await this.inner.put(key, value, options)
  }
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
})
