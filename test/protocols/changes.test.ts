/**
 * /bazil/changes/1.0.0 between real libp2p nodes on 127.0.0.1: golden bytes, pulling a log in
 * pages, heads told both ways, refusal of strangers and of another volume, the client's checks
 * of what a server answers, and hostile input (garbage, truncated, oversized frames, random
 * bytes) that resets that one stream while the node keeps serving.
 */
import { randomBytes } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { changeLog, MAX_RECORDS_PER_PULL, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, PROTOCOL } from '../../protocols/changes/index.ts'
import type { ChangeLog, ChangeLogInit, ChangeRecord, ChangeSource } from '../../protocols/changes/index.ts'
import { decodeReply, decodeRequest, encodeReplyFrame, encodeRequestFrame, Reply } from '../../protocols/changes/wire.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { encodeVarint, FrameReader, sendParts } from '../../src/net/frames.ts'
import { connect, pair, startNode, type TestNode } from '../helpers/net.ts'
import { createRng, testSeed } from '../helpers/rng.ts'

type ChangesNode = TestNode<{ changes: ChangeLog }>
const VOLUME = Buffer.from('00112233445566778899aabbccddeeff', 'hex')

/** A log of `count` records, seq 1..count, each body `record <seq>`. */
function memoryLog (count: number, volume = VOLUME): ChangeSource & { records: ChangeRecord[] } {
  const records = Array.from({ length: count }, (_, i) => ({ seq: i + 1, body: Buffer.from(`record ${i + 1}`) }))
  return {
    volume,
    records,
    head: () => records.at(-1)?.seq ?? 0,
    read: async (since, limit) => records.filter(r => r.seq > since).slice(0, limit)
  }
}

async function startChangesNode (source: ChangeSource, init: Partial<ChangeLogInit> = {}): Promise<ChangesNode> {
  return await startNode<{ changes: ChangeLog }>({ services: (trust, traffic) => ({ changes: changeLog({ source, trust, traffic, ...init }) }) })
}

async function startPair (serverSource: ChangeSource, clientSource = memoryLog(0), serverInit: Partial<ChangeLogInit> = {}): Promise<{ server: ChangesNode, client: ChangesNode }> {
  const server = await startChangesNode(serverSource, serverInit)
  const client = await startChangesNode(clientSource)
  await pair(client as TestNode<Record<string, unknown>>, server as TestNode<Record<string, unknown>>)
  await connect(client, server)
  return { server, client }
}

async function codeOf (promise: Promise<unknown>): Promise<string> {
  return await promise.then(() => 'resolved', (err: unknown) => err instanceof BazilError ? err.code : `not a BazilError: ${String(err)}`)
}

const text = (records: ChangeRecord[]): string[] => records.map(r => Buffer.from(r.body).toString())

describe('wire format', () => {
  it('encodes requests and replies as golden bytes and decodes them back', () => {
    const volume = Uint8Array.of(0xaa, 0xbb)
    const pull = encodeRequestFrame({ kind: 'pull', volume, since: 300, limit: 2 })
    expect(Buffer.from(pull).toString('hex')).toBe('09' + '1202aabb' + '18ac02' + '2002')
    const decoded = decodeRequest(pull.subarray(1))
    expect({ ...decoded, volume: Buffer.from(decoded.volume).toString('hex') }).toEqual({ kind: 'pull', volume: 'aabb', since: 300, limit: 2 })
    const head = encodeRequestFrame({ kind: 'head', volume, head: 5 })
    expect(Buffer.from(head).toString('hex')).toBe('08' + '0801' + '1202aabb' + '2805')
    const reply = encodeReplyFrame({ status: Reply.Status.OK, head: 302, records: [{ seq: 301, body: Uint8Array.of(7) }] })
    expect(Buffer.from(reply).toString('hex')).toBe('0b' + '10ae02' + '1a06' + '08ad02' + '120107')
    const back = decodeReply(reply.subarray(1), { kind: 'pull', volume, since: 300, limit: 2 })
    expect({ ...back, records: back.records.map(r => [r.seq, Buffer.from(r.body).toString('hex')]) })
      .toEqual({ status: Reply.Status.OK, head: 302, records: [[301, '07']] })
  })

  it('refuses our own bad arguments with INVALID and bad input with PROTOCOL', () => {
    const volume = Uint8Array.of(1)
    const invalid = (fn: () => unknown): string => { try { fn(); return 'ok' } catch (err) { return (err as BazilError).code } }
    expect(invalid(() => encodeRequestFrame({ kind: 'pull', volume, since: 0, limit: 0 }))).toBe(ErrorCode.INVALID)
    expect(invalid(() => encodeRequestFrame({ kind: 'pull', volume, since: 0, limit: MAX_RECORDS_PER_PULL + 1 }))).toBe(ErrorCode.INVALID)
    expect(invalid(() => encodeRequestFrame({ kind: 'pull', volume: new Uint8Array(0), since: 0, limit: 1 }))).toBe(ErrorCode.INVALID)
    expect(invalid(() => encodeRequestFrame({ kind: 'head', volume, head: -1 }))).toBe(ErrorCode.INVALID)
    const pull = { kind: 'pull' as const, volume, since: 10, limit: 2 }
    const replyOf = (records: Array<{ seq: number, body: Uint8Array }>, head = 20, status = Reply.Status.OK): Uint8Array =>
      encodeReplyFrame({ status, head, records }).subarray(1)
    const body = Uint8Array.of(1)
    expect(invalid(() => decodeReply(replyOf([{ seq: 10, body }]), pull))).toBe(ErrorCode.PROTOCOL) // not after since
    expect(invalid(() => decodeReply(replyOf([{ seq: 12, body }, { seq: 11, body }]), pull))).toBe(ErrorCode.PROTOCOL) // out of order
    expect(invalid(() => decodeReply(replyOf([{ seq: 11, body }, { seq: 12, body }, { seq: 13, body }]), pull))).toBe(ErrorCode.PROTOCOL) // over the limit
    expect(invalid(() => decodeReply(replyOf([{ seq: 21, body }]), pull))).toBe(ErrorCode.PROTOCOL) // past the head
    expect(invalid(() => decodeReply(replyOf([{ seq: 11, body: new Uint8Array(0) }]), pull))).toBe(ErrorCode.PROTOCOL) // empty body
    expect(invalid(() => decodeReply(replyOf([{ seq: 11, body }], 20, Reply.Status.ERROR), pull))).toBe(ErrorCode.PROTOCOL)
    expect(invalid(() => decodeReply(replyOf([{ seq: 11, body }]), { kind: 'head', volume, head: 1 }))).toBe(ErrorCode.PROTOCOL)
    expect(invalid(() => decodeReply(replyOf([{ seq: 11, body }, { seq: 12, body }]), pull))).toBe('ok')
  })

  it('never throws anything but PROTOCOL on random bytes (fuzz)', () => {
    const rng = createRng(testSeed())
    const pull = { kind: 'pull' as const, volume: VOLUME, since: 0, limit: 10 }
    for (let i = 0; i < 3000; i++) {
      const bytes = rng.bytes(rng.int(0, 80))
      for (const decode of [() => decodeRequest(bytes), () => decodeReply(bytes, pull)]) {
        try { decode() } catch (err) { expect((err as BazilError).code).toBe(ErrorCode.PROTOCOL) }
      }
    }
  })
})

describe('pull and announce between paired nodes', () => {
  it('pulls a log in pages, oldest first, with the head', async () => {
    const { server, client } = await startPair(memoryLog(2500))
    const got: ChangeRecord[] = []
    let since = 0
    for (;;) {
      const page = await client.services.changes.pull(server.peerId, { since })
      expect(page.head).toBe(2500)
      if (page.records.length === 0) break
      expect(page.records.length).toBeLessThanOrEqual(MAX_RECORDS_PER_PULL)
      got.push(...page.records)
      since = page.records.at(-1)?.seq as number
    }
    expect(got.map(r => r.seq)).toEqual(Array.from({ length: 2500 }, (_, i) => i + 1))
    expect(text(got.slice(0, 2))).toEqual(['record 1', 'record 2'])
    const tail = await client.services.changes.pull(server.peerId, { since: 2498, limit: 5 })
    expect(text(tail.records)).toEqual(['record 2499', 'record 2500'])
  })

  it('stops a reply before MAX_REPLY_BYTES, sending at least one record', async () => {
    const big = randomBytes(1024 * 1024)
    const source: ChangeSource = {
      volume: VOLUME,
      head: () => 8,
      read: async (since, limit, maxBytes) => {
        const out: ChangeRecord[] = []
        let bytes = 0
        for (let seq = since + 1; seq <= 8 && out.length < limit; seq++) {
          if (out.length > 0 && bytes + big.byteLength > maxBytes) break
          out.push({ seq, body: big })
          bytes += big.byteLength
        }
        return out
      }
    }
    const { server, client } = await startPair(source)
    const page = await client.services.changes.pull(server.peerId, { since: 0 })
    expect(page.records.length).toBeGreaterThan(0)
    expect(page.records.length * big.byteLength).toBeLessThan(MAX_REPLY_BYTES)
    expect(Buffer.compare(page.records[0]?.body as Uint8Array, big)).toBe(0)
  })

  it('tells the server our head and hears its head back, on both sides', async () => {
    const heads: Array<[string, number]> = []
    const serverHeads: Array<[string, number]> = []
    const server = await startChangesNode(memoryLog(7), { onHead: (peer, head) => { serverHeads.push([peer, head]) } })
    const client = await startChangesNode(memoryLog(3), { onHead: (peer, head) => { heads.push([peer, head]) } })
    await pair(client as TestNode<Record<string, unknown>>, server as TestNode<Record<string, unknown>>)
    await connect(client, server)
    expect(await client.services.changes.announce(server.peerId, 3)).toBe(7)
    expect(serverHeads).toEqual([[client.peerId, 3]])
    expect(heads).toEqual([[server.peerId, 7]])
  })

  it('refuses a peer that holds another volume with CONFLICT, and an unpaired one with PERMISSION', async () => {
    const { server, client } = await startPair(memoryLog(3), memoryLog(0, Buffer.from('ffeeddccbbaa99887766554433221100', 'hex')))
    expect(await codeOf(client.services.changes.pull(server.peerId, { since: 0 }))).toBe(ErrorCode.CONFLICT)
    const stranger = await startChangesNode(memoryLog(0))
    await connect(stranger, server)
    expect(await codeOf(stranger.services.changes.pull(server.peerId, { since: 0 }))).toBe(ErrorCode.PERMISSION)
    // Trusting the server is not enough: the server must trust us.
    await stranger.trust.add({ peerId: server.peerId, name: 'server', addrs: server.addrs(), pairedAt: new Date().toISOString() })
    expect(await codeOf(stranger.services.changes.pull(server.peerId, { since: 0 }))).toBe(ErrorCode.UNAVAILABLE)
  })

  it('reports a server whose log cannot be read as UNAVAILABLE', async () => {
    const broken = memoryLog(3)
    broken.read = async () => { throw new Error('disk on fire') }
    const { server, client } = await startPair(broken)
    expect(await codeOf(client.services.changes.pull(server.peerId, { since: 0 }))).toBe(ErrorCode.UNAVAILABLE)
    expect(await client.services.changes.announce(server.peerId, 0)).toBe(3)
  })

  it('fails with UNAVAILABLE once the server is gone and TIMEOUT when it never answers', async () => {
    const stuck = memoryLog(3)
    stuck.read = async () => await new Promise<never>(() => {})
    const { server, client } = await startPair(stuck)
    const slow = await startChangesNode(memoryLog(0), { exchangeDeadlineMs: 300 })
    await pair(slow as TestNode<Record<string, unknown>>, server as TestNode<Record<string, unknown>>)
    await connect(slow, server)
    expect(await codeOf(slow.services.changes.pull(server.peerId, { since: 0 }))).toBe(ErrorCode.TIMEOUT)
    await server.stop()
    expect(await codeOf(client.services.changes.pull(server.peerId, { since: 0 }))).toBe(ErrorCode.UNAVAILABLE)
  })
})

describe('a server that misbehaves', () => {
  const cases: Array<[string, Uint8Array[], string]> = [
    ['sends garbage', [Uint8Array.of(3, 0xff, 0xff, 0xff)], ErrorCode.PROTOCOL],
    ['announces an oversized frame', [encodeVarint(MAX_REPLY_BYTES + 1)], ErrorCode.PROTOCOL],
    ['sends records before since', [encodeReplyFrame({ status: Reply.Status.OK, head: 9, records: [{ seq: 1, body: Uint8Array.of(1) }] })], ErrorCode.PROTOCOL],
    ['sends two replies', [encodeReplyFrame({ status: Reply.Status.OK, head: 9, records: [] }), encodeReplyFrame({ status: Reply.Status.OK, head: 9, records: [] })], ErrorCode.PROTOCOL],
    ['closes without replying', [], ErrorCode.UNAVAILABLE],
    ['closes inside a frame', [Uint8Array.of(50, 1, 2)], ErrorCode.UNAVAILABLE]
  ]
  it.each(cases)('fails the pull when it %s', async (_label, parts, code) => {
    const server = await startNode()
    await server.handle(PROTOCOL, async stream => {
      const reader = new FrameReader(stream, { maxFrameBytes: MAX_REQUEST_BYTES })
      try {
        await reader.next()
        await sendParts(stream, parts)
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      } finally {
        reader.release()
      }
    })
    const client = await startChangesNode(memoryLog(0))
    await pair(client as TestNode<Record<string, unknown>>, server as TestNode<Record<string, unknown>>)
    await connect(client, server)
    expect(await codeOf(client.services.changes.pull(server.peerId, { since: 5 }))).toBe(code)
  })
})

describe('hostile input to the server', () => {
  /** Sends raw bytes on a changes stream and closes; true if the server reset the stream. */
  async function resetBy (client: ChangesNode, server: ChangesNode, bytes: Uint8Array): Promise<boolean> {
    const stream = await client.libp2p.dialProtocol(peerIdFromString(server.peerId), PROTOCOL)
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_REPLY_BYTES })
    try {
      if (bytes.byteLength > 0) await sendParts(stream, [bytes])
      await stream.close()
      const reply = await reader.next()
      if (reply === null) throw new Error('the server closed without a reply or a reset')
      return false
    } catch (err) {
      if (stream.status === 'reset') return true
      throw err
    } finally {
      reader.release()
    }
  }

  it('resets garbage, truncated, oversized and random requests, and keeps serving', async () => {
    const { server, client } = await startPair(memoryLog(3), memoryLog(0), { requestTimeoutMs: 5000 })
    const valid = encodeRequestFrame({ kind: 'pull', volume: VOLUME, since: 0, limit: 10 })
    const rng = createRng(testSeed())
    const inputs: Uint8Array[] = [
      new Uint8Array(0),
      valid.subarray(0, valid.byteLength - 1),
      Buffer.concat([valid, Uint8Array.of(1)]),
      encodeVarint(MAX_REQUEST_BYTES + 1),
      Buffer.from('0608071202aabb', 'hex'), // an unknown kind
      ...Array.from({ length: 40 }, () => rng.bytes(rng.int(1, 40)))
    ]
    for (const input of inputs) {
      let expected: boolean
      try {
        // What a well-behaved server must do, computed independently of it.
        const length = input[0] ?? 0
        expected = !(input.byteLength === 1 + length && length < 128 && decodeRequest(input.subarray(1)).kind !== undefined)
      } catch {
        expected = true
      }
      expect(await resetBy(client, server, input), Buffer.from(input).toString('hex')).toBe(expected)
    }
    expect(text((await client.services.changes.pull(server.peerId, { since: 0 })).records)).toEqual(['record 1', 'record 2', 'record 3'])
  })

  it('resets a stream whose request does not come in time', async () => {
    const { server, client } = await startPair(memoryLog(3), memoryLog(0), { requestTimeoutMs: 200 })
    const stream = await client.libp2p.dialProtocol(peerIdFromString(server.peerId), PROTOCOL)
    const closed = await new Promise<Error | undefined>(resolve => { stream.addEventListener('close', evt => { resolve(evt.error) }, { once: true }) })
    expect(closed).toBeDefined()
    expect(stream.status).toBe('reset')
  })
})
