/**
 * PeerStore: a paired peer as a read-only KV over block exchange. The read side of the KV
 * compliance suite runs against a second libp2p node (same process, 127.0.0.1) serving a real
 * LocalStore; then what only a remote store meets: strangers (refused, and the server says so
 * in its log), and a peer that goes away mid-transfer — stopped, crashed (its process killed),
 * or stuck — which fails the reads with UNAVAILABLE or TIMEOUT and leaves nothing hanging.
 */
import { randomBytes } from 'node:crypto'
import { format } from 'node:util'
import debug from 'debug'
import { describe, expect, it, onTestFinished } from 'vitest'
import { blockExchange, type BlockExchange, type BlockExchangeInit } from '../../protocols/block-exchange/index.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import type { KV } from '../../src/kv/kv.ts'
import { LocalStore } from '../../src/kv/local.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { PeerStore } from '../../src/kv/peer.ts'
import { startPeerProcess } from '../../scripts/bench/peer-process.ts'
import { kvComplianceSuite } from '../compliance/kv.suite.ts'
import { connect, pair, startNode, type TestNode } from '../helpers/net.ts'
import { tmpDir } from '../helpers/tmp.ts'

type BlockNode = TestNode<{ blocks: BlockExchange }>
type AnyNode = TestNode<Record<string, unknown>>
const MiB = 1024 * 1024

async function startBlockNode (store: KV, init: Partial<BlockExchangeInit> = {}): Promise<BlockNode> {
  return await startNode<{ blocks: BlockExchange }>({ services: (trust, traffic) => ({ blocks: blockExchange({ store, trust, traffic, ...init }) }) })
}

/** A node serving `store` and a paired, connected client node; the PeerStore reads through the client. */
async function startPeerStore (store: KV, clientInit: Partial<BlockExchangeInit> = {}): Promise<{ kv: PeerStore, server: BlockNode, client: BlockNode }> {
  const server = await startBlockNode(store)
  const client = await startBlockNode(new MemoryStore(), clientInit)
  await pair(client as AnyNode, server as AnyNode)
  await connect(client, server)
  return { kv: new PeerStore(client.services.blocks, server.peerId), server, client }
}

let seeded: LocalStore | undefined
kvComplianceSuite('PeerStore', async () => {
  const local = await LocalStore.open(await tmpDir(), { fsync: false })
  seeded = local
  const { kv } = await startPeerStore(local)
  return { kv, teardown: async () => { await local.close() } }
}, {
  readOnly: {
    seed: async (key, value) => {
      if (seeded === undefined) throw new Error('no serving store yet')
      await seeded.put(key, value)
    }
  }
})

async function codeOf (promise: Promise<unknown>): Promise<string> {
  return await promise.then(() => 'resolved', (err: unknown) => err instanceof BazilError ? err.code : `not a BazilError: ${String(err)}`)
}

/** Turns on bazil:* debug output for the test and collects its lines. */
function captureLogs (): string[] {
  const lines: string[] = []
  const originalLog = debug.log
  const previous = debug.disable()
  debug.log = (...args: unknown[]) => { lines.push(format(...args)) }
  debug.enable('bazil:*')
  onTestFinished(() => {
    debug.log = originalLog
    debug.disable()
    if (previous !== '') debug.enable(previous)
  })
  return lines
}

describe('PeerStore', () => {
  it('is read-only: put fails with NOT_SUPPORTED and stores nothing', async () => {
    const store = new MemoryStore()
    const { kv } = await startPeerStore(store)
    const key = randomBytes(32)
    expect(await codeOf(kv.put(key, randomBytes(10)))).toBe(ErrorCode.NOT_SUPPORTED)
    expect(await store.has(key)).toBe(false)
  })

  it('batches concurrent reads into few requests', async () => {
    const store = new MemoryStore()
    const { server, client } = await startPeerStore(store)
    const requests: number[] = []
    const counting: Pick<BlockExchange, 'fetch' | 'has'> = {
      fetch: (peerId, ids, options) => { requests.push(ids.length); return client.services.blocks.fetch(peerId, ids, options) },
      has: async (peerId, ids, options) => { requests.push(ids.length); return await client.services.blocks.has(peerId, ids, options) }
    }
    const kv = new PeerStore(counting, server.peerId)
    const keys = Array.from({ length: 300 }, () => randomBytes(32))
    for (const key of keys.slice(0, 250)) await store.put(key, key)
    const values = await Promise.all(keys.map(async key => await kv.get(key).catch((err: unknown) => err)))
    values.forEach((value, i) => {
      if (i < 250) expect(Buffer.compare(value as Uint8Array, keys[i] as Uint8Array)).toBe(0)
      else expect((value as BazilError).code).toBe(ErrorCode.NOT_FOUND)
    })
    expect(requests).toEqual([128, 128, 44])
    requests.length = 0
    expect(await Promise.all(keys.slice(240, 260).map(async key => await kv.has(key)))).toEqual(keys.slice(240, 260).map((_, i) => i < 10))
    expect(requests).toEqual([20])
  })

  it('an aborted read rejects at once with ABORTED while the others in its batch complete', async () => {
    const store = new MemoryStore()
    const { kv } = await startPeerStore(store)
    const keys = Array.from({ length: 20 }, () => randomBytes(32))
    for (const key of keys) await store.put(key, randomBytes(MiB))
    const controller = new AbortController()
    const reads = keys.map(async (key, i) => await kv.get(key, i === 3 ? { signal: controller.signal } : {}))
    controller.abort()
    const settled = await Promise.allSettled(reads)
    settled.forEach((result, i) => {
      if (i === 3) expect(result).toMatchObject({ status: 'rejected', reason: { code: ErrorCode.ABORTED } })
      else expect(result.status).toBe('fulfilled')
    })
  })
})

describe('strangers', () => {
  it('a third node the server has not paired gets nothing; the server logs the refusal', async () => {
    const store = new MemoryStore()
    const key = randomBytes(32)
    await store.put(key, randomBytes(100))
    const server = await startBlockNode(store)
    const friend = await startBlockNode(new MemoryStore())
    await pair(friend as AnyNode, server as AnyNode)
    await connect(friend, server)
    const stranger = await startBlockNode(new MemoryStore())
    await pair(stranger as AnyNode, server as AnyNode, true) // it trusts the server; the server does not trust it
    await connect(stranger, server)
    const logs = captureLogs()

    const refused = await codeOf(new PeerStore(stranger.services.blocks, server.peerId).get(key))
    expect([ErrorCode.UNAVAILABLE, ErrorCode.PERMISSION]).toContain(refused)
    expect(await codeOf(new PeerStore(stranger.services.blocks, server.peerId).has(key))).toBe(refused)
    expect(logs.some(line => line.includes('refused') && line.includes(stranger.peerId))).toBe(true)
    expect(stranger.traffic.get(server.peerId).received).toBe(0)
    expect(server.traffic.get(stranger.peerId)).toEqual({ sent: 0, received: 0 })
    // ...while the paired node is served as before.
    expect((await new PeerStore(friend.services.blocks, server.peerId).get(key)).byteLength).toBe(100)
  })

  it('a node that has not paired the server does not even ask (PERMISSION)', async () => {
    const server = await startBlockNode(new MemoryStore())
    const stranger = await startBlockNode(new MemoryStore())
    await connect(stranger, server)
    expect(await codeOf(new PeerStore(stranger.services.blocks, server.peerId).get(randomBytes(32)))).toBe(ErrorCode.PERMISSION)
  })
})

describe('a peer that goes away mid-transfer', () => {
  /** A store whose first `ready` blocks come at once and the rest never (until the node goes). */
  function halfStuckStore (ready: number): { store: MemoryStore } {
    const store = new MemoryStore()
    const get = store.get.bind(store)
    let calls = 0
    store.get = async (key, options) => {
      if (calls++ < ready) return await get(key, options)
      return await new Promise<never>(() => {})
    }
    return { store }
  }

  it.each([
    ['stopped', async (server: BlockNode) => { await server.stop() }],
    ['cut off (its connections aborted)', async (server: BlockNode) => {
      for (const connection of server.libp2p.getConnections()) connection.abort(new Error('simulated crash'))
    }]
  ])('fails the pending reads with UNAVAILABLE when the server is %s', async (_label, goAway) => {
    const { store } = halfStuckStore(3)
    const keys = Array.from({ length: 10 }, () => randomBytes(32))
    for (const key of keys) await store.put(key, randomBytes(MiB))
    const { kv, server } = await startPeerStore(store)
    const reads = keys.map(async key => await kv.get(key).then(() => 'ok', (err: unknown) => err instanceof BazilError ? err.code : String(err)))
    expect(await Promise.all(reads.slice(0, 3))).toEqual(['ok', 'ok', 'ok']) // the rest is stuck on the server
    await goAway(server)
    const outcomes = await Promise.all(reads)
    expect(outcomes.slice(0, 3)).toEqual(['ok', 'ok', 'ok'])
    for (const outcome of outcomes.slice(3)) expect(outcome).toBe(ErrorCode.UNAVAILABLE)
  })

  it('fails with TIMEOUT when the server stops making progress', async () => {
    const { store } = halfStuckStore(1)
    const keys = Array.from({ length: 4 }, () => randomBytes(32))
    for (const key of keys) await store.put(key, randomBytes(1000))
    const { kv } = await startPeerStore(store, { stallTimeoutMs: 500 })
    const outcomes = await Promise.all(keys.map(async key => await codeOf(kv.get(key))))
    expect(outcomes).toEqual(['resolved', ErrorCode.TIMEOUT, ErrorCode.TIMEOUT, ErrorCode.TIMEOUT])
  })

  it('fails with UNAVAILABLE when the serving process is killed mid-stream', async () => {
    const dir = await tmpDir()
    const local = await LocalStore.open(dir, { fsync: false })
    const keys = Array.from({ length: 64 }, () => randomBytes(32))
    for (const key of keys) await local.put(key, randomBytes(MiB))
    await local.close()
    const client = await startBlockNode(new MemoryStore(), { stallTimeoutMs: 30_000 })
    const peer = await startPeerProcess(dir, client.peerId)
    onTestFinished(async () => { await peer.kill() })
    await client.trust.add({ peerId: peer.peerId, name: 'peer process', addrs: [peer.addr], pairedAt: new Date().toISOString() })
    await client.dial(peer.addr)

    const answers = client.services.blocks.fetch(peer.peerId, keys)[Symbol.asyncIterator]()
    const first = await answers.next() // the rest is held back: this consumer is not pulling
    expect(first.value?.value?.byteLength).toBe(MiB)
    await peer.kill()
    let code: string | undefined
    let received = 1
    try {
      for (let next = await answers.next(); next.done !== true; next = await answers.next()) received++
    } catch (err) {
      code = err instanceof BazilError ? err.code : String(err)
    }
    expect(code).toBe(ErrorCode.UNAVAILABLE)
    expect(received).toBeLessThan(keys.length)
  })
})
