/**
 * /bazil/block/1.0.0 between real libp2p nodes on 127.0.0.1: golden bytes of the wire format,
 * fetch and has (batched, in order, back-pressured, counted), the client's checks of what a
 * server answers, and hostile input — garbage, truncated and oversized frames, stalls — which
 * resets that one stream while the node keeps serving everybody else.
 */
import { randomBytes } from 'node:crypto'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { Request, Response } from '../../protocols/block-exchange/block-exchange.ts'
import { blockExchange, MAX_ID_BYTES, MAX_IDS_PER_REQUEST, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL, type BlockExchange, type BlockExchangeInit } from '../../protocols/block-exchange/index.ts'
import { decodeRequest, decodeResponse, encodeRequestFrame, encodeResponseFrame } from '../../protocols/block-exchange/wire.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { encodeVarint, FrameReader, sendParts } from '../../src/net/frames.ts'
import { connect, pair, startNode, type TestNode } from '../helpers/net.ts'
import { createRng, testSeed } from '../helpers/rng.ts'

type BlockNode = TestNode<{ blocks: BlockExchange }>
const MiB = 1024 * 1024

async function startBlockNode (store = new MemoryStore(), init: Partial<BlockExchangeInit> = {}): Promise<BlockNode> {
  return await startNode<{ blocks: BlockExchange }>({ services: (trust, traffic) => ({ blocks: blockExchange({ store, trust, traffic, ...init }) }) })
}

/** A serving node with `store` and a paired, connected client. */
async function startPair (store = new MemoryStore(), serverInit: Partial<BlockExchangeInit> = {}, clientInit: Partial<BlockExchangeInit> = {}): Promise<{ server: BlockNode, client: BlockNode }> {
  const server = await startBlockNode(store, serverInit)
  const client = await startBlockNode(new MemoryStore(), clientInit)
  await pair(client as TestNode<Record<string, unknown>>, server as TestNode<Record<string, unknown>>)
  await connect(client, server)
  return { server, client }
}

async function seed (store: MemoryStore, count: number, size: number): Promise<Array<{ id: Uint8Array, value: Uint8Array }>> {
  const blocks = Array.from({ length: count }, () => ({ id: randomBytes(32), value: randomBytes(size) }))
  for (const { id, value } of blocks) await store.put(id, value)
  return blocks
}

async function collect<T> (items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}

async function codeOf (promise: Promise<unknown>): Promise<string> {
  return await promise.then(() => 'resolved', (err: unknown) => err instanceof BazilError ? err.code : `not a BazilError: ${String(err)}`)
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

/** One answer per id, in order: the held block's bytes, or null for an id nobody holds. */
function expectAnswers (results: Array<{ id: Uint8Array, value: Uint8Array | null }>, ids: Uint8Array[], held: Array<{ id: Uint8Array, value: Uint8Array }>): void {
  expect(results.map(r => hex(r.id))).toEqual(ids.map(hex))
  const byId = new Map(held.map(({ id, value }) => [hex(id), value]))
  for (const { id, value } of results) {
    const expected = byId.get(hex(id))
    if (expected === undefined) expect(value).toBeNull()
    else expect(Buffer.compare(value as Uint8Array, expected)).toBe(0)
  }
}

describe('wire format', () => {
  const a = Uint8Array.of(1, 2)
  const b = Uint8Array.of(3, 4)

  it('encodes requests as golden bytes', () => {
    expect(hex(encodeRequestFrame(Request.Kind.GET, [a, b]))).toBe('08' + '12020102' + '12020304')
    expect(hex(encodeRequestFrame(Request.Kind.HAS, [Uint8Array.of(0xaa, 0xbb)]))).toBe('06' + '0801' + '1202aabb')
  })

  it('encodes responses as golden bytes, identical to the generated encoder', () => {
    const cases: Array<[Response.Status, Uint8Array | undefined, string]> = [
      [Response.Status.OK, Buffer.from('abc'), '09' + '0a020102' + '1a03616263'],
      [Response.Status.NOT_FOUND, undefined, '06' + '0a020102' + '1001'],
      [Response.Status.ERROR, undefined, '06' + '0a020102' + '1002'],
      [Response.Status.OK, new Uint8Array(0), '04' + '0a020102'],
      [Response.Status.OK, new Uint8Array(300).fill(7), 'b302' + '0a020102' + '1aac02' + '07'.repeat(300)]
    ]
    for (const [status, data, golden] of cases) {
      const framed = Buffer.concat(encodeResponseFrame(a, status, data))
      expect(hex(framed)).toBe(golden)
      const generated = Response.encode({ id: a as Uint8Array<ArrayBuffer>, status, data: data as Uint8Array<ArrayBuffer> | undefined })
      expect(hex(framed)).toBe(hex(Buffer.concat([encodeVarint(generated.byteLength), generated])))
    }
  })

  it('decodes golden bytes and rejects what breaks the bounds with PROTOCOL', () => {
    const request = decodeRequest(Buffer.from('0801' + '12020102' + '12020304', 'hex'))
    expect({ kind: request.kind, ids: request.ids.map(hex) }).toEqual({ kind: Request.Kind.HAS, ids: ['0102', '0304'] })
    const response = decodeResponse(Buffer.from('0a020102' + '1a03616263', 'hex'))
    expect({ id: hex(response.id), status: response.status, data: hex(response.data) }).toEqual({ id: '0102', status: Response.Status.OK, data: '616263' })
    const bad = [
      '', // no ids
      '0807' + '12020102', // unknown kind
      '120101', // a 1-byte id
      '12' + encodeHex(MAX_ID_BYTES + 1) + '00'.repeat(MAX_ID_BYTES + 1), // an id too long
      '120201', // truncated id
      '120201021a', // field 3 with no length
      '120201020b' // a group tag (wire type 3)
    ]
    for (const body of bad) expect(() => decodeRequest(Buffer.from(body, 'hex')), body).toThrow(expect.objectContaining({ code: ErrorCode.PROTOCOL }))
    const tooMany = Request.encode({ kind: Request.Kind.GET, ids: Array.from({ length: MAX_IDS_PER_REQUEST + 1 }, () => randomBytes(32)) })
    expect(() => decodeRequest(tooMany)).toThrow(expect.objectContaining({ code: ErrorCode.PROTOCOL }))
    expect(() => decodeResponse(Buffer.from('0a020102' + '1001' + '1a0161', 'hex'))).toThrow(expect.objectContaining({ code: ErrorCode.PROTOCOL }))
    expect(() => decodeResponse(Buffer.from('0a020102' + '1009', 'hex'))).toThrow(expect.objectContaining({ code: ErrorCode.PROTOCOL }))
  })

  it('never throws anything but PROTOCOL on random bytes (fuzz)', () => {
    const rng = createRng(testSeed())
    for (let i = 0; i < 5000; i++) {
      const bytes = rng.bytes(rng.int(0, 64))
      for (const decode of [decodeRequest, decodeResponse]) {
        try {
          decode(bytes)
        } catch (err) {
          expect(err, `seed ${rng.seed}, input ${hex(bytes)}`).toBeInstanceOf(BazilError)
          expect((err as BazilError).code).toBe(ErrorCode.PROTOCOL)
        }
      }
    }
  })
})

describe('fetch and has', () => {
  it('fetches many blocks across several requests, in order, with null for missing ones', async () => {
    const store = new MemoryStore()
    const { server, client } = await startPair(store)
    const held = await seed(store, 300, 1000)
    const ids = held.flatMap(({ id }, i) => i % 3 === 0 ? [id, randomBytes(32)] : [id]) // > 2 requests' worth
    expect(ids.length).toBeGreaterThan(2 * MAX_IDS_PER_REQUEST)
    const results = await collect(client.services.blocks.fetch(server.peerId, ids))
    expectAnswers(results, ids, held)
    const heldIds = new Set(held.map(({ id }) => hex(id)))
    expect(await client.services.blocks.has(server.peerId, ids)).toEqual(ids.map(id => heldIds.has(hex(id))))
  })

  it('keeps the order of answers sent together: small and large blocks mixed, missing ones between', async () => {
    const store = new MemoryStore()
    const { server, client } = await startPair(store)
    const sizes = [1000, 70_000, 10, 65_000, 300_000, 5, 5, 5, 64 * 1024, 2_000_000, 1, 1000]
    const held = await Promise.all(sizes.map(async size => (await seed(store, 1, size))[0] as { id: Uint8Array, value: Uint8Array }))
    const ids = held.flatMap(({ id }, i) => i % 4 === 1 ? [randomBytes(32), id] : [id])
    const results = await collect(client.services.blocks.fetch(server.peerId, ids))
    expectAnswers(results, ids, held)
  })

  it('counts the bytes on both sides', async () => {
    const store = new MemoryStore()
    const { server, client } = await startPair(store)
    const held = await seed(store, 10, 100_000)
    await collect(client.services.blocks.fetch(server.peerId, held.map(b => b.id)))
    const received = client.traffic.get(server.peerId)
    const sent = server.traffic.get(client.peerId)
    expect(received.received).toBeGreaterThan(10 * 100_000)
    expect(received.received).toBe(sent.sent)
    expect(received.sent).toBe(sent.received)
    expect(client.peers().find(row => row.peerId === server.peerId)).toMatchObject({ bytesSent: received.sent, bytesReceived: received.received })
  })

  it('stops the server while the consumer does not pull, then delivers everything (back-pressure)', async () => {
    const store = new MemoryStore()
    const { server, client } = await startPair(store)
    // 64 MiB: far more than what sits between the two when the client stops pulling (one yamux
    // window of at most 16 MiB, the reader's high-water mark, one frame each side).
    const held = await seed(store, 64, MiB)
    const total = 64 * MiB
    const answers = client.services.blocks.fetch(server.peerId, held.map(b => b.id))[Symbol.asyncIterator]()
    const first = await answers.next()
    expect(first.done).toBe(false)
    const stalledAt = await settledCount(() => server.traffic.get(client.peerId).sent)
    expect(stalledAt).toBeLessThan(total / 2)
    let count = 1
    for (let next = await answers.next(); next.done !== true; next = await answers.next()) {
      expect(Buffer.compare(next.value.value as Uint8Array, held[count]?.value as Uint8Array)).toBe(0)
      count++
    }
    expect(count).toBe(64)
  })

  it('refuses a peer it has not paired with PERMISSION, before sending anything', async () => {
    const server = await startBlockNode()
    const client = await startBlockNode()
    await connect(client, server)
    expect(await codeOf(collect(client.services.blocks.fetch(server.peerId, [randomBytes(32)])))).toBe(ErrorCode.PERMISSION)
    expect(client.traffic.get(server.peerId)).toEqual({ sent: 0, received: 0 })
  })

  it('rejects ids out of bounds with INVALID', async () => {
    const { server, client } = await startPair()
    expect(await codeOf(collect(client.services.blocks.fetch(server.peerId, [Uint8Array.of(1)])))).toBe(ErrorCode.INVALID)
    expect(await codeOf(client.services.blocks.has(server.peerId, [new Uint8Array(MAX_ID_BYTES + 1)]))).toBe(ErrorCode.INVALID)
  })

  it('fails with UNAVAILABLE for an unreachable peer', async () => {
    const { server, client } = await startPair()
    await server.stop()
    expect(await codeOf(collect(client.services.blocks.fetch(server.peerId, [randomBytes(32)])))).toBe(ErrorCode.UNAVAILABLE)
  })
})

describe('a server that misbehaves', () => {
  /** A node that answers the block protocol with `answer(request)`'s frames (as raw parts). */
  async function startFakeServer (answer: (request: Request) => Uint8Array[]): Promise<{ server: TestNode<Record<string, never>>, client: BlockNode }> {
    const server = await startNode()
    await server.handle(PROTOCOL, async stream => {
      const reader = new FrameReader(stream, { maxFrameBytes: MAX_REQUEST_BYTES })
      try {
        const frame = await reader.next()
        if (frame === null) return
        await sendParts(stream, answer(decodeRequest(frame)))
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      } finally {
        reader.release()
      }
    })
    const client = await startBlockNode()
    await pair(client as TestNode<Record<string, unknown>>, server as TestNode<Record<string, unknown>>)
    await connect(client, server)
    return { server, client }
  }

  const cases: Array<[string, (request: Request) => Uint8Array[], string]> = [
    ['answers another id', () => encodeResponseFrame(randomBytes(32), Response.Status.OK, Uint8Array.of(1)), ErrorCode.PROTOCOL],
    ['answers more than asked', request => [...encodeResponseFrame(request.ids[0] as Uint8Array, Response.Status.NOT_FOUND), ...encodeResponseFrame(request.ids[0] as Uint8Array, Response.Status.NOT_FOUND)], ErrorCode.PROTOCOL],
    ['announces an oversized frame', () => [encodeVarint(MAX_RESPONSE_BYTES + 1)], ErrorCode.PROTOCOL],
    ['sends garbage', () => [Uint8Array.of(3, 0xff, 0xff, 0xff)], ErrorCode.PROTOCOL],
    ['closes without answering', () => [], ErrorCode.UNAVAILABLE],
    ['closes inside a frame', () => [Uint8Array.of(50, 1, 2, 3)], ErrorCode.UNAVAILABLE]
  ]
  it.each(cases)('fails the fetch when it %s', async (_label, answer, code) => {
    const { server, client } = await startFakeServer(answer)
    expect(await codeOf(collect(client.services.blocks.fetch(server.peerId, [randomBytes(32)])))).toBe(code)
  })

  it('is patient with an answer slower than the stall timeout as long as its bytes keep coming', async () => {
    const block = randomBytes(300_000)
    const server = await startNode()
    await server.handle(PROTOCOL, async stream => {
      const reader = new FrameReader(stream, { maxFrameBytes: MAX_REQUEST_BYTES })
      const request = decodeRequest(await reader.next() as Uint8Array)
      reader.release()
      const frame = Buffer.concat(encodeResponseFrame(request.ids[0] as Uint8Array, Response.Status.OK, block))
      const pieces = 30 // one every 50 ms: 1.5 s for the answer, never 1 s without a byte
      for (let i = 0; i < pieces; i++) {
        await sendParts(stream, [frame.subarray(Math.floor(i * frame.byteLength / pieces), Math.floor((i + 1) * frame.byteLength / pieces))])
        await new Promise(resolve => setTimeout(resolve, 50))
      }
      await stream.close()
    })
    const client = await startBlockNode(new MemoryStore(), { stallTimeoutMs: 1000 })
    await pair(client as TestNode<Record<string, unknown>>, server as TestNode<Record<string, unknown>>)
    await connect(client, server)
    const [result] = await collect(client.services.blocks.fetch(server.peerId, [randomBytes(32)]))
    expect(Buffer.compare(result?.value as Uint8Array, block)).toBe(0)
  })

  it('fails with TIMEOUT when the server makes no progress for the stall timeout', async () => {
    const stuck = new MemoryStore()
    stuck.get = async () => await new Promise<never>(() => {}) // a store that never answers
    const { server, client } = await startPair(stuck, {}, { stallTimeoutMs: 300 })
    expect(await codeOf(collect(client.services.blocks.fetch(server.peerId, [randomBytes(32)])))).toBe(ErrorCode.TIMEOUT)
  })
})

describe('hostile input to the server', () => {
  type Outcome = { reset: true } | { reset: false, answers: number }

  /** Sends `bytes` on a raw block stream (closing our end unless told not to) and reads what comes back. */
  async function rawExchange (client: BlockNode, server: BlockNode, bytes: Uint8Array, options: { close?: boolean, pause?: boolean } = {}): Promise<Outcome> {
    const stream = await client.libp2p.dialProtocol(peerIdFromString(server.peerId), PROTOCOL)
    const closed = new Promise<Error | undefined>(resolve => {
      stream.addEventListener('close', evt => { resolve(evt.error) }, { once: true })
    })
    if (options.pause === true) {
      stream.pause()
      await sendParts(stream, [bytes])
      const error = await closed
      return error === undefined ? { reset: false, answers: -1 } : resetOrThrow(stream, error)
    }
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_RESPONSE_BYTES })
    try {
      if (bytes.byteLength > 0) await sendParts(stream, [bytes])
      if (options.close !== false) await stream.close()
      let answers = 0
      while (true) {
        const frame = await reader.next()
        if (frame === null) return { reset: false, answers }
        decodeResponse(frame)
        answers++
      }
    } catch (err) {
      return resetOrThrow(stream, err as Error)
    } finally {
      reader.release()
    }
  }

  function resetOrThrow (stream: Stream, error: Error): Outcome {
    // Only a reset *from the server* counts: libp2p gives a stream 'reset' status only then.
    if (stream.status === 'reset') return { reset: true }
    throw error
  }

  const request = (ids: Uint8Array[], kind = Request.Kind.GET): Uint8Array => {
    const body = Request.encode({ kind, ids: ids as Array<Uint8Array<ArrayBuffer>> })
    return Buffer.concat([encodeVarint(body.byteLength), body])
  }

  it('resets garbage, truncated, oversized and malformed requests, and keeps serving', async () => {
    const store = new MemoryStore()
    // A long request timeout: a stream reset here was reset for what it sent, not for stalling.
    const { server, client } = await startPair(store, { requestTimeoutMs: 120_000 })
    const held = await seed(store, 3, 10_000)
    const valid = request(held.map(b => b.id))
    const cases: Array<[string, Uint8Array, { close?: boolean }?]> = [
      ['an empty stream', new Uint8Array(0)],
      ['an empty request', Uint8Array.of(0)],
      ['a truncated frame', valid.subarray(0, valid.byteLength - 5)],
      ['a truncated length', Uint8Array.of(0x80)],
      ['an oversized length, with the stream left open', encodeVarint(MAX_REQUEST_BYTES + 1), { close: false }],
      ['a length varint of 6 bytes, with the stream left open', Uint8Array.of(0x81, 0x80, 0x80, 0x80, 0x80, 0x00), { close: false }],
      ['too many ids', request(Array.from({ length: MAX_IDS_PER_REQUEST + 1 }, () => randomBytes(32)))],
      ['a 1-byte id', request([Uint8Array.of(1)])],
      ['an unknown kind', Buffer.from('06' + '0807' + '12020102', 'hex')],
      ['garbage after a request', Buffer.concat([valid, Uint8Array.of(1, 2, 3)])],
      ['a truncated second request', Buffer.concat([valid, valid.subarray(0, 4)])],
      ['random bytes', Buffer.from('ff'.repeat(3) + '0a'.repeat(40), 'hex')]
    ]
    for (const [label, bytes, options] of cases) {
      expect(await rawExchange(client, server, bytes, options), label).toEqual({ reset: true })
    }
    expect(await rawExchange(client, server, valid)).toEqual({ reset: false, answers: 3 })
    expect(await rawExchange(client, server, Buffer.concat([valid, valid]))).toEqual({ reset: false, answers: 6 })
    const fetched = await collect(client.services.blocks.fetch(server.peerId, held.map(b => b.id)))
    expect(fetched.map(r => r.value === null ? null : hex(r.value))).toEqual(held.map(b => hex(b.value)))
  })

  it('resets or answers random input exactly as the protocol says (fuzz), and keeps serving', async () => {
    const store = new MemoryStore()
    const { server, client } = await startPair(store, { requestTimeoutMs: 120_000 })
    const held = await seed(store, 2, 100)
    const rng = createRng(testSeed())
    const valid = request(held.map(b => b.id))
    for (let i = 0; i < 150; i++) {
      const input = rng.pick([
        () => rng.bytes(rng.int(0, 200)),
        () => Buffer.concat([encodeVarint(rng.int(0, 64)), rng.bytes(rng.int(0, 64))]),
        () => { const bytes = Buffer.from(valid); bytes[rng.int(0, bytes.byteLength - 1)] = rng.int(0, 255); return bytes },
        () => valid.subarray(0, rng.int(0, valid.byteLength)),
        () => Buffer.concat([valid, rng.chance(0.5) ? valid : rng.bytes(rng.int(1, 20))])
      ])()
      const expected = oracle(input)
      const outcome = await rawExchange(client, server, input)
      expect(outcome, `seed ${rng.seed}, case ${i}, input ${hex(input)}`).toEqual(expected)
    }
    expect(await rawExchange(client, server, valid)).toEqual({ reset: false, answers: 2 })
  })

  /**
   * What the server must do with `input` followed by the end of the stream, computed
   * independently: answer every request in it, or reset if any part of it is not one.
   */
  function oracle (input: Uint8Array): Outcome {
    let answers = 0
    let at = 0
    do {
      let length = 0
      let prefix = 0
      for (;;) {
        if (at + prefix >= input.byteLength || prefix >= 5) return { reset: true }
        const byte = input[at + prefix] as number
        length += (byte & 0x7f) * 2 ** (7 * prefix)
        prefix++
        if ((byte & 0x80) === 0) break
      }
      if (length > MAX_REQUEST_BYTES || input.byteLength < at + prefix + length) return { reset: true }
      try {
        answers += decodeRequest(input.subarray(at + prefix, at + prefix + length)).ids.length
      } catch {
        return { reset: true }
      }
      at += prefix + length
    } while (at < input.byteLength)
    return { reset: false, answers }
  }

  it('resets a stream whose request does not come within the request timeout', async () => {
    const { server, client } = await startPair(new MemoryStore(), { requestTimeoutMs: 200 })
    expect(await rawExchange(client, server, new Uint8Array(0), { close: false })).toEqual({ reset: true })
  })

  it('resets a stream whose client stops reading, after the stall timeout', async () => {
    const store = new MemoryStore()
    const { server, client } = await startPair(store, { stallTimeoutMs: 300 })
    const held = await seed(store, 40, MiB) // more than a window: the server must block
    expect(await rawExchange(client, server, request(held.map(b => b.id)), { pause: true })).toEqual({ reset: true })
  })
})

/** Polls `read` until it stops changing for a while (the sender is blocked); returns the value. */
async function settledCount (read: () => number): Promise<number> {
  let last = -1
  for (let still = 0; still < 5;) {
    await new Promise(resolve => setTimeout(resolve, 50))
    const now = read()
    still = now === last ? still + 1 : 0
    last = now
  }
  return last
}

function encodeHex (value: number): string {
  return hex(encodeVarint(value))
}
