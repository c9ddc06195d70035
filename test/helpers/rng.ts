/**
 * Seeded randomness for reproducible tests. `createRng(seed)` is sfc32 (fast, 128-bit state,
 * good enough for choosing operations); `testSeed()` reads BAZIL_SEED or draws a fresh seed so a
 * failing run can be replayed. `deterministicBytes(key, length)` gives content derived only from
 * a key, so a verifier can recompute what a writer wrote without sharing state.
 */
import { randomInt } from 'node:crypto'

export interface Rng {
  readonly seed: number
  /** Uniform float in [0, 1). */
  next: () => number
  /** Uniform integer in [min, max] (both inclusive). */
  int: (min: number, max: number) => number
  pick: <T>(items: readonly T[]) => T
  chance: (probability: number) => boolean
  bytes: (length: number) => Buffer
}

export function testSeed (env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = env.BAZIL_SEED
  if (fromEnv !== undefined && fromEnv !== '') {
    const seed = Number(fromEnv)
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new Error(`BAZIL_SEED must be an integer in [0, 2^32): got ${fromEnv}`)
    }
    return seed
  }
  return randomInt(0, 0xffffffff)
}

export function createRng (seed: number): Rng {
  // sfc32 seeded from splitmix32 so small seeds still spread over the whole state.
  let s = seed >>> 0
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
  let a = split()
  let b = split()
  let c = split()
  let d = split()
  const nextU32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = ((c << 21) | (c >>> 11)) >>> 0
    c = (c + t) >>> 0
    return t
  }
  for (let i = 0; i < 12; i++) nextU32()

  const next = (): number => nextU32() / 0x100000000
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1))
  return {
    seed,
    next,
    int,
    pick: <T>(items: readonly T[]): T => {
      if (items.length === 0) throw new Error('pick from an empty list')
      return items[int(0, items.length - 1)] as T
    },
    chance: (probability: number) => next() < probability,
    bytes: (length: number) => fillBytes(length, nextU32)
  }
}

/** Bytes that depend only on `key` (e.g. a file's index), reproducible by any process. */
export function deterministicBytes (key: number, length: number): Buffer {
  return createRng(Math.imul(key >>> 0, 0x9e3779b1) ^ 0x5bd1e995).bytes(length)
}

function fillBytes (length: number, nextU32: () => number): Buffer {
  const words = new Uint32Array(Math.ceil(length / 4))
  for (let i = 0; i < words.length; i++) words[i] = nextU32()
  return Buffer.from(words.buffer, 0, length)
}
