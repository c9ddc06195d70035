import { describe, it, expect } from 'vitest'
import { createHash } from 'node:crypto'
import { DEFAULT_CHUNKER_PARAMS, chunkLengths, nextChunkLength } from '../../src/cas/chunker.ts'
import type { ChunkerParams } from '../../src/cas/chunker.ts'
import { isBazilError } from '../../src/errors.ts'

function errorCode (fn: () => unknown): string {
  try { fn() } catch (err) { return isBazilError(err) ? err.code : `not a BazilError: ${String(err)}` }
  return 'no error'
}

/** Deterministic pseudo-random bytes (xorshift32), generated a byte at a time so the bytes do not
 *  depend on the platform's endianness. */
function pseudoRandom (length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  let x = seed | 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    out[i] = x >>> 24
  }
  return out
}

const MiB = 1024 * 1024
const SMALL: ChunkerParams = { minSize: 256, avgSize: 1024, maxSize: 4096 }

function checkBounds (lengths: number[], total: number, params: ChunkerParams): void {
  expect(lengths.reduce((a, b) => a + b, 0)).toBe(total)
  lengths.forEach((length, i) => {
    expect(length).toBeLessThanOrEqual(params.maxSize)
    if (i < lengths.length - 1) expect(length).toBeGreaterThanOrEqual(params.minSize)
    else expect(length).toBeGreaterThan(0)
  })
}

/** Chunk contents by SHA-256, the way a store would dedup them. */
function chunkHashes (data: Uint8Array, lengths: number[]): Map<string, number> {
  const out = new Map<string, number>()
  let offset = 0
  for (const length of lengths) {
    out.set(createHash('sha256').update(data.subarray(offset, offset + length)).digest('hex'), length)
    offset += length
  }
  return out
}

/** Bytes in `after`'s chunks that `before` did not already hold: what an edit costs to store. */
function restoredBytes (before: Uint8Array, after: Uint8Array, params: ChunkerParams): { chunks: number, bytes: number } {
  const old = chunkHashes(before, chunkLengths(before, params))
  let chunks = 0
  let bytes = 0
  for (const [hash, length] of chunkHashes(after, chunkLengths(after, params))) {
    if (!old.has(hash)) { chunks++; bytes += length }
  }
  return { chunks, bytes }
}

function insertAt (data: Uint8Array, at: number, extra: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + extra.length)
  out.set(data.subarray(0, at)); out.set(extra, at); out.set(data.subarray(at), at + extra.length)
  return out
}

const big = pseudoRandom(64 * MiB, 0x5eed)

describe('chunker', () => {
  it('gives no chunks for empty input', () => {
    expect(chunkLengths(new Uint8Array(0))).toEqual([])
    expect(nextChunkLength(new Uint8Array(0), 0, 0, true)).toBe(0)
    expect(nextChunkLength(new Uint8Array(0), 0, 0, false)).toBe(-1)
  })

  it('is deterministic and matches golden cut points (gear table and masks are a format)', () => {
    const data = pseudoRandom(64 * 1024, 42)
    const lengths = chunkLengths(data, SMALL)
    expect(chunkLengths(data.slice(), SMALL)).toEqual(lengths)
    expect(lengths.slice(0, 8)).toEqual(GOLDEN_SMALL_FIRST8)
    expect(lengths.length).toBe(GOLDEN_SMALL_COUNT)
    const defaults = chunkLengths(big)
    expect(defaults.slice(0, 4)).toEqual(GOLDEN_DEFAULT_FIRST4)
    expect(defaults.length).toBe(GOLDEN_DEFAULT_COUNT)
  })

  it('matches a plain byte-at-a-time reference implementation', () => {
    const data = pseudoRandom(512 * 1024, 77)
    for (const params of [SMALL, { minSize: 1, avgSize: 64, maxSize: 1000 }, { minSize: 4096, avgSize: 16384, maxSize: 20000 }]) {
      expect(chunkLengths(data, params)).toEqual(referenceChunkLengths(data, params))
    }
    const slice = big.subarray(3, 3 + 8 * MiB)
    expect(chunkLengths(slice)).toEqual(referenceChunkLengths(slice, DEFAULT_CHUNKER_PARAMS))
  })

  it('keeps every chunk within [minSize, maxSize] except the last, with a sane mean', () => {
    const lengths = chunkLengths(big)
    checkBounds(lengths, big.length, DEFAULT_CHUNKER_PARAMS)
    const mean = big.length / lengths.length
    expect(mean).toBeGreaterThan(0.75 * DEFAULT_CHUNKER_PARAMS.avgSize)
    expect(mean).toBeLessThan(1.5 * DEFAULT_CHUNKER_PARAMS.avgSize)
  })

  it('works with small params', () => {
    const data = pseudoRandom(4 * MiB, 7)
    const params = { minSize: 2048, avgSize: 8192, maxSize: 65536 }
    const lengths = chunkLengths(data, params)
    checkBounds(lengths, data.length, params)
    const mean = data.length / lengths.length
    expect(mean).toBeGreaterThan(6000)
    expect(mean).toBeLessThan(12000)
  })

  it('is local: inserting 100 bytes re-stores at most about two chunks', () => {
    const extra = pseudoRandom(100, 99)
    const nearStart = restoredBytes(big, insertAt(big, 1000, extra), DEFAULT_CHUNKER_PARAMS)
    expect(nearStart.chunks).toBeLessThanOrEqual(2)
    expect(nearStart.bytes).toBeLessThan(2 * DEFAULT_CHUNKER_PARAMS.maxSize)
    const middle = restoredBytes(big, insertAt(big, 32 * MiB + 12345, extra), DEFAULT_CHUNKER_PARAMS)
    expect(middle.chunks).toBeLessThanOrEqual(2)
    expect(middle.bytes).toBeLessThan(2 * DEFAULT_CHUNKER_PARAMS.maxSize)
    // And a real saving, not just few big chunks: well under 10% of a 64 MiB file.
    expect(nearStart.bytes + middle.bytes).toBeLessThan(big.length / 10)
  })

  it('streams: feeding a growing window without eof gives the same cuts', () => {
    const data = pseudoRandom(256 * 1024, 3)
    const whole = chunkLengths(data, SMALL)
    const streamed: number[] = []
    let start = 0
    let end = 0
    while (start < data.length) {
      const eof = end === data.length
      const length = nextChunkLength(data, start, end, eof, SMALL)
      if (length < 0) { end = Math.min(data.length, end + 777); continue }
      streamed.push(length)
      start += length
    }
    expect(streamed).toEqual(whole)
  })

  it('cuts at maxSize when no boundary is found, and asks for more before that', () => {
    const zeros = new Uint8Array(3 * SMALL.maxSize)
    const forced = nextChunkLength(zeros, 0, zeros.length, false, SMALL)
    expect(forced).toBeGreaterThanOrEqual(SMALL.minSize)
    expect(forced).toBeLessThanOrEqual(SMALL.maxSize)
    expect(nextChunkLength(zeros, 0, SMALL.minSize, false, SMALL)).toBe(-1)
    expect(nextChunkLength(zeros, 0, SMALL.minSize, true, SMALL)).toBe(SMALL.minSize)
    // Zero bytes roll the gear hash to a constant: either it matches (short cuts) or it never does.
    if (forced === SMALL.maxSize) expect(nextChunkLength(zeros, 0, SMALL.maxSize - 1, false, SMALL)).toBe(-1)
  })

  it('does not depend on the buffer alignment or offset', () => {
    const data = pseudoRandom(300 * 1024, 5)
    const expected = chunkLengths(data, SMALL)
    for (const shift of [1, 2, 3, 5]) {
      const backing = new Uint8Array(data.length + 8)
      backing.set(data, shift)
      expect(chunkLengths(backing.subarray(shift, shift + data.length), SMALL)).toEqual(expected)
      // And via start/end inside a larger buffer.
      const cuts: number[] = []
      for (let at = shift; at < shift + data.length;) {
        const length = nextChunkLength(backing, at, shift + data.length, true, SMALL)
        cuts.push(length); at += length
      }
      expect(cuts).toEqual(expected)
    }
  })

  it('rejects bad params with INVALID and a bad window with RANGE', () => {
    const data = new Uint8Array(10)
    for (const bad of [{ minSize: 0, avgSize: 1024, maxSize: 4096 }, { minSize: 2048, avgSize: 1024, maxSize: 4096 },
      { minSize: 256, avgSize: 1024, maxSize: 512 }, { minSize: 1.5, avgSize: 1024, maxSize: 4096 }]) {
      expect(errorCode(() => nextChunkLength(data, 0, 10, true, bad))).toBe('INVALID')
    }
    expect(errorCode(() => nextChunkLength(data, 0, 11, true))).toBe('RANGE')
    expect(errorCode(() => nextChunkLength(data, 5, 4, true))).toBe('RANGE')
    expect(errorCode(() => nextChunkLength(data, -1, 4, true))).toBe('RANGE')
  })
})

const GOLDEN_SMALL_FIRST8 = [1256, 1084, 1364, 566, 1251, 316, 1258, 1123]
const GOLDEN_SMALL_COUNT = 57
const GOLDEN_DEFAULT_FIRST4 = [425332, 280956, 332461, 274060]
const GOLDEN_DEFAULT_COUNT = 224

/** FastCDC as the module doc states it, one byte at a time and with no tricks, to check the
 *  optimized (word-at-a-time, min-skipping) implementation against. */
function referenceChunkLengths (data: Uint8Array, params: ChunkerParams): number[] {
  const gear = Array.from({ length: 256 }, (_, b) =>
    createHash('sha256').update('bazil/v1/gear').update(Uint8Array.of(b)).digest().readUInt32BE(0))
  const bits = Math.round(Math.log2(params.avgSize))
  const top = (n: number): number => Number((((1n << BigInt(n)) - 1n) << BigInt(32 - n)))
  const maskS = top(bits + 2)
  const maskL = top(bits - 2)
  const out: number[] = []
  let start = 0
  while (start < data.length) {
    const remaining = data.length - start
    let length = Math.min(remaining, params.maxSize)
    let h = 0
    for (let n = params.minSize; n < Math.min(remaining, params.maxSize); n++) {
      h = (h * 2 + gear[data[start + n]!]!) % 2 ** 32
      const mask = n < params.avgSize ? maskS : maskL
      if ((h & mask) === 0) { length = n + 1; break } // `&` works on the same 32 bits
    }
    out.push(length)
    start += length
  }
  return out
}

describe('keyed gear table', () => {
  it('cuts the same for one key and differently for another, within the size bounds', async () => {
    const { keyedChunkerParams } = await import('../../src/cas/chunker.ts')
    const { createCipheriv } = await import('node:crypto')
    const data = createCipheriv('aes-256-ctr', Buffer.alloc(32, 3), Buffer.alloc(16)).update(Buffer.alloc(8 * 1024 * 1024))
    const a = keyedChunkerParams(new Uint8Array(32).fill(1))
    const a2 = keyedChunkerParams(new Uint8Array(32).fill(1))
    const b = keyedChunkerParams(new Uint8Array(32).fill(2))
    const cutsA = chunkLengths(data, a)
    expect(chunkLengths(data, a2)).toEqual(cutsA)
    expect(chunkLengths(data, b)).not.toEqual(cutsA)
    expect(chunkLengths(data)).not.toEqual(cutsA)
    for (const n of cutsA.slice(0, -1)) {
      expect(n).toBeGreaterThanOrEqual(a.minSize)
      expect(n).toBeLessThanOrEqual(a.maxSize)
    }
  })
})
