/**
 * Length-prefixed frames over libp2p 3 streams (src/net/frames.ts), on @libp2p/utils' mock
 * stream pairs: frames survive any split into chunks, lengths are bounded before the body
 * arrives, and the ways a stream can end are told apart (clean, inside a frame, reset).
 */
import { streamPair } from '@libp2p/utils'
import { describe, expect, it } from 'vitest'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { encodeVarint, FrameReader, sendParts } from '../../src/net/frames.ts'
import { createRng, testSeed } from '../helpers/rng.ts'

async function codeOf (promise: Promise<unknown>): Promise<string> {
  return await promise.then(() => 'resolved', (err: unknown) => err instanceof BazilError ? err.code : `not a BazilError: ${String(err)}`)
}

describe('encodeVarint', () => {
  it('encodes unsigned varints', () => {
    const hex = (n: number): string => Buffer.from(encodeVarint(n)).toString('hex')
    expect([0, 1, 127, 128, 300, 16384, 2 ** 32].map(hex)).toEqual(['00', '01', '7f', '8001', 'ac02', '808001', '8080808010'])
  })
})

describe('FrameReader', () => {
  it('returns the same frames however the bytes are split, then null at a clean end', async () => {
    const rng = createRng(testSeed())
    for (let round = 0; round < 20; round++) {
      const frames = Array.from({ length: rng.int(0, 30) }, () => rng.bytes(rng.pick([0, 1, 127, 128, rng.int(0, 70_000)])))
      const wire = Buffer.concat(frames.flatMap(frame => [encodeVarint(frame.byteLength), frame]))
      const [outbound, inbound] = await streamPair()
      const reader = new FrameReader(inbound, { maxFrameBytes: 70_000, highWaterBytes: rng.int(1, 100_000) })
      const writing = (async () => {
        for (let at = 0; at < wire.byteLength;) {
          const size = rng.int(1, 5000)
          await sendParts(outbound, [wire.subarray(at, at + size)])
          at += size
        }
        await outbound.close()
      })()
      const got: Buffer[] = []
      for (let frame = await reader.next(); frame !== null; frame = await reader.next()) got.push(Buffer.from(frame))
      await writing
      expect(got.map(f => f.toString('hex')), `seed ${rng.seed}`).toEqual(frames.map(f => f.toString('hex')))
      reader.release()
    }
  })

  it('rejects an oversized length with PROTOCOL before the body arrives', async () => {
    const [outbound, inbound] = await streamPair()
    const reader = new FrameReader(inbound, { maxFrameBytes: 1000 })
    await sendParts(outbound, [encodeVarint(1001)])
    expect(await codeOf(reader.next())).toBe(ErrorCode.PROTOCOL)
  })

  it('rejects a length varint longer than 5 bytes with PROTOCOL', async () => {
    const [outbound, inbound] = await streamPair()
    const reader = new FrameReader(inbound, { maxFrameBytes: 2 ** 40 })
    await sendParts(outbound, [Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x01)])
    expect(await codeOf(reader.next())).toBe(ErrorCode.PROTOCOL)
  })

  it('fails with UNAVAILABLE when the stream ends inside a frame or inside a length', async () => {
    for (const partial of [Uint8Array.of(5, 1, 2), Uint8Array.of(0x80)]) {
      const [outbound, inbound] = await streamPair()
      const reader = new FrameReader(inbound, { maxFrameBytes: 1000 })
      await sendParts(outbound, [partial])
      await outbound.close()
      expect(await codeOf(reader.next())).toBe(ErrorCode.UNAVAILABLE)
    }
  })

  it('fails with UNAVAILABLE when the other end resets, and ABORTED on the signal', async () => {
    const [outbound, inbound] = await streamPair()
    const reader = new FrameReader(inbound, { maxFrameBytes: 1000 })
    const controller = new AbortController()
    const waiting = reader.next({ signal: controller.signal })
    controller.abort()
    expect(await codeOf(waiting)).toBe(ErrorCode.ABORTED)
    const next = reader.next()
    outbound.abort(new Error('gone'))
    expect(await codeOf(next)).toBe(ErrorCode.UNAVAILABLE)
  })

  it('counts the bytes it receives', async () => {
    const [outbound, inbound] = await streamPair()
    let counted = 0
    const reader = new FrameReader(inbound, { maxFrameBytes: 1000, onBytes: bytes => { counted += bytes } })
    await sendParts(outbound, [encodeVarint(3), Uint8Array.of(1, 2, 3), encodeVarint(0)])
    await outbound.close()
    expect(await reader.next()).toEqual(Uint8Array.of(1, 2, 3))
    expect(await reader.next()).toEqual(new Uint8Array(0))
    expect(await reader.next()).toBeNull()
    expect(counted).toBe(5)
  })
})
