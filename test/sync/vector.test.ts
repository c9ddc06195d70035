/**
 * Version vectors (src/sync/vector.ts): comparison, merge (element-wise max), meet (min),
 * rebase, and the lattice laws they must obey, checked on random vectors from a seeded RNG
 * (BAZIL_SEED=... replays a run).
 */
import { describe, expect, it } from 'vitest'
import { isBazilError } from '../../src/errors.ts'
import {
  EMPTY, compare, equals, formatVector, leq, meet, merge, rebase, timeOf, vectorOf, withTime
} from '../../src/sync/vector.ts'
import type { Vector } from '../../src/sync/vector.ts'
import { createRng, testSeed } from '../helpers/rng.ts'
import type { Rng } from '../helpers/rng.ts'

const v = vectorOf

describe('vector', () => {
  it('is sorted by peer, without zero times, whatever order it was built in', () => {
    expect(v({ B: 1, A: 2, C: 0 })).toEqual([['A', 2], ['B', 1]])
    expect(v([['B', 1], ['A', 2]])).toEqual(v({ A: 2, B: 1 }))
    expect(formatVector(v({ B: 1, A: 2 }))).toBe('{A:2 B:1}')
    expect(formatVector(EMPTY)).toBe('{}')
    // Integer-like peer ids sort as strings, not as object keys do.
    expect(v({ 10: 1, 9: 1 }).map(([peer]) => peer)).toEqual(['10', '9'])
  })

  it('refuses repeated peers, empty peer ids and times that are not non-negative integers', () => {
    for (const bad of [
      () => v([['A', 1], ['A', 2]]),
      () => v({ '': 1 }),
      () => v({ A: -1 }),
      () => v({ A: 1.5 }),
      () => v({ A: Number.MAX_SAFE_INTEGER + 1 }),
      () => withTime(EMPTY, 'A', Number.NaN)
    ]) {
      let error: unknown
      try { bad() } catch (err) { error = err }
      expect(isBazilError(error, 'INVALID')).toBe(true)
    }
  })

  it('reads, sets and removes one peer', () => {
    const a = v({ A: 1, C: 3 })
    expect(timeOf(a, 'A')).toBe(1)
    expect(timeOf(a, 'B')).toBe(0)
    expect(withTime(a, 'B', 2)).toEqual(v({ A: 1, B: 2, C: 3 }))
    expect(withTime(a, 'A', 5)).toEqual(v({ A: 5, C: 3 }))
    expect(withTime(a, 'A', 0)).toEqual(v({ C: 3 }))
    expect(a).toEqual(v({ A: 1, C: 3 })) // unchanged
    expect(Object.isFrozen(a) && Object.isFrozen(a[0])).toBe(true)
  })

  // The comparison scenarios of the original's vector tests, peer by peer.
  it('compares: ≤ and concurrency', () => {
    expect(leq(EMPTY, EMPTY)).toBe(true)
    expect(compare(EMPTY, v({ A: 1 }))).toBe('before')
    expect(compare(v({ A: 1 }), v({ A: 1 }))).toBe('equal')
    expect(compare(v({ A: 1, B: 1 }), v({ A: 1 }))).toBe('after')
    expect(compare(v({ A: 1, B: 1 }), v({ A: 2 }))).toBe('concurrent')
    expect(compare(v({ A: 1, B: 1 }), v({ A: 2, B: 1 }))).toBe('before')
    expect(compare(v({ A: 1 }), v({ B: 1 }))).toBe('concurrent')
    expect(compare(v({ A: 1, B: 1 }), v({ A: 1, C: 1 }))).toBe('concurrent')
    expect(compare(v({ A: 1, B: 1, D: 1 }), v({ A: 1, C: 1 }))).toBe('concurrent')
    expect(leq(v({ B: 2 }), v({ A: 9, B: 2, C: 9 }))).toBe(true)
    expect(leq(v({ B: 3 }), v({ A: 9, B: 2, C: 9 }))).toBe(false)
    expect(leq(v({ D: 1 }), v({ A: 9, B: 2, C: 9 }))).toBe(false)
  })

  it('merges (max), meets (min) and rebases', () => {
    const a = v({ A: 2, B: 1, C: 1 })
    const b = v({ A: 1, B: 2, D: 1 })
    expect(merge(a, b)).toEqual(v({ A: 2, B: 2, C: 1, D: 1 }))
    expect(meet(a, b)).toEqual(v({ A: 1, B: 1 }))
    expect(rebase(v({ A: 2, B: 1, C: 4 }), v({ A: 1, B: 1, D: 3 }))).toEqual(v({ A: 2, C: 4 }))
    expect(a).toEqual(v({ A: 2, B: 1, C: 1 }))
  })

  describe('laws, on random vectors', () => {
    const seed = testSeed()
    console.log(`vector laws: BAZIL_SEED=${seed}`)
    const rng = createRng(seed)
    const rounds = 2000
    const triples = Array.from({ length: rounds }, () => [randomVector(rng), randomVector(rng), randomVector(rng)] as const)

    it('merge is commutative, associative and idempotent, and the least upper bound', () => {
      for (const [a, b, c] of triples) {
        expect(merge(a, b)).toEqual(merge(b, a))
        expect(merge(merge(a, b), c)).toEqual(merge(a, merge(b, c)))
        expect(merge(a, a)).toEqual(a)
        expect(merge(a, EMPTY)).toEqual(a)
        const m = merge(a, b)
        expect(leq(a, m) && leq(b, m)).toBe(true)
        // Least: any upper bound of both is above the merge.
        if (leq(a, c) && leq(b, c)) expect(leq(m, c)).toBe(true)
        expect(equals(m, b)).toBe(leq(a, b))
      }
    })

    it('meet is commutative, associative and idempotent, and the greatest lower bound', () => {
      for (const [a, b, c] of triples) {
        expect(meet(a, b)).toEqual(meet(b, a))
        expect(meet(meet(a, b), c)).toEqual(meet(a, meet(b, c)))
        expect(meet(a, a)).toEqual(a)
        const m = meet(a, b)
        expect(leq(m, a) && leq(m, b)).toBe(true)
        if (leq(c, a) && leq(c, b)) expect(leq(c, m)).toBe(true)
        // Absorption ties the two together.
        expect(merge(a, meet(a, b))).toEqual(a)
        expect(meet(a, merge(a, b))).toEqual(a)
      }
    })

    it('≤ is a partial order and compare agrees with it', () => {
      for (const [a, b, c] of triples) {
        expect(leq(a, a)).toBe(true)
        if (leq(a, b) && leq(b, a)) expect(a).toEqual(b)
        if (leq(a, b) && leq(b, c)) expect(leq(a, c)).toBe(true)
        const expected = leq(a, b) ? (leq(b, a) ? 'equal' : 'before') : leq(b, a) ? 'after' : 'concurrent'
        expect(compare(a, b)).toBe(expected)
        const flipped = { equal: 'equal', before: 'after', after: 'before', concurrent: 'concurrent' } as const
        expect(compare(b, a)).toBe(flipped[expected])
        // ≤ against a reference definition, peer by peer.
        const peers = new Set([...a, ...b].map(([peer]) => peer))
        expect(leq(a, b)).toBe([...peers].every(peer => timeOf(a, peer) <= timeOf(b, peer)))
      }
    })

    it('rebase keeps exactly what the base does not cover', () => {
      for (const [a, b] of triples) {
        const r = rebase(a, b)
        expect(merge(r, b)).toEqual(merge(a, b))
        expect(leq(r, a)).toBe(true)
        for (const [peer, time] of r) expect(time).toBeGreaterThan(timeOf(b, peer))
      }
    })

    it('vectorOf does not depend on the order of its entries', () => {
      for (const [a] of triples) {
        const shuffled = [...a].sort(() => (rng.chance(0.5) ? 1 : -1))
        expect(vectorOf(shuffled)).toEqual(a)
      }
    })
  })
})

/** Small peer set and times so that equal, ordered and concurrent pairs all occur often. */
function randomVector (rng: Rng): Vector {
  const entries: Record<string, number> = {}
  for (const peer of ['A', 'B', 'C', 'D']) if (rng.chance(0.6)) entries[peer] = rng.int(0, 3)
  return vectorOf(entries)
}
