/**
 * Clock encodings (src/sync/codec.ts): golden bytes and JSON, round trips, the one canonical
 * encoding per clock, and garbage (random bytes, mutated encodings, random JSON) that decodes to
 * a canonical clock or fails with CORRUPT, never anything else. Seeded (BAZIL_SEED=...).
 */
import { describe, expect, it } from 'vitest'
import { isBazilError } from '../../src/errors.ts'
import { absent, createClock, remove, update } from '../../src/sync/clock.ts'
import type { Clock } from '../../src/sync/clock.ts'
import { clockFromJSON, clockToJSON, decodeClock, encodeClock } from '../../src/sync/codec.ts'
import { vectorOf } from '../../src/sync/vector.ts'
import { createRng, testSeed } from '../helpers/rng.ts'
import type { Rng } from '../helpers/rng.ts'

const sample: Clock = { sync: vectorOf({ A: 2, B: 300 }), mod: vectorOf({ B: 300 }), create: vectorOf({ A: 1 }) }

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

function corruptCode (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isBazilError(err) ? err.code : `not a BazilError: ${String(err)}`
  }
  return undefined
}

describe('clock codec', () => {
  it('golden bytes', () => {
    //           ver peers A      B      sync: A:2  B:300    mod: B:300  create: A:1
    expect(hex(encodeClock(sample))).toBe('01' + '02' + '0141' + '0142' + '02' + '0002' + '01ac02' + '01' + '01ac02' + '01' + '0001')
    expect(hex(encodeClock(absent(vectorOf({ A: 2 }))))).toBe('01' + '01' + '0141' + '01' + '0002' + '00' + '00')
    expect(hex(encodeClock(absent()))).toBe('0100000000')
  })

  it('golden JSON, with a fixed key order', () => {
    expect(JSON.stringify(clockToJSON(sample))).toBe('{"sync":[["A",2],["B",300]],"mod":[["B",300]],"create":[["A",1]]}')
    expect(JSON.stringify(clockToJSON(absent()))).toBe('{"sync":[],"mod":[],"create":[]}')
  })

  it('round-trips, including long peer ids, non-ASCII ids and the largest safe time', () => {
    const long = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'
    const clocks = [
      sample,
      absent(),
      remove(createClock(long, 7), long, 8),
      update(createClock('ünï', 1, vectorOf({ [long]: Number.MAX_SAFE_INTEGER })), long, 9)
    ]
    for (const clock of clocks) {
      expect(decodeClock(encodeClock(clock))).toEqual(clock)
      expect(clockFromJSON(JSON.parse(JSON.stringify(clockToJSON(clock))))).toEqual(clock)
    }
    // A peer named in several vectors is written once.
    const twice = update(createClock(long, 1), long, 2)
    expect(encodeClock(twice).length).toBeLessThan(long.length * 2)
  })

  it('refuses every non-canonical or malformed encoding with CORRUPT', () => {
    const bad: Record<string, string> = {
      empty: '',
      'unknown version': '02' + '00000000',
      'peers out of order': '01' + '02' + '0142' + '0141' + '02' + '0002' + '0101' + '00' + '00',
      'repeated peer': '01' + '02' + '0141' + '0141' + '02' + '0002' + '0101' + '00' + '00',
      'unused peer': '01' + '02' + '0141' + '0142' + '01' + '0002' + '00' + '00',
      'empty peer id': '01' + '01' + '00' + '01' + '0002' + '00' + '00',
      'peer id not UTF-8': '01' + '01' + '01ff' + '01' + '0002' + '00' + '00',
      'indexes not ascending': '01' + '02' + '0141' + '0142' + '02' + '0102' + '0001' + '00' + '00',
      'index out of range': '01' + '01' + '0141' + '01' + '0502' + '00' + '00',
      'zero time': '01' + '01' + '0141' + '01' + '0000' + '00' + '00',
      'padded number': '01' + '01' + '0141' + '01' + '008200' + '00' + '00',
      'time past 2^53': '01' + '01' + '0141' + '01' + '00' + '8080808080808010' + '00' + '00',
      'mod without create': '01' + '01' + '0141' + '01' + '0002' + '01' + '0002' + '00',
      'create without mod': '01' + '01' + '0141' + '01' + '0002' + '00' + '01' + '0001',
      truncated: '01' + '01' + '0141' + '01' + '00',
      trailing: '0100000000' + '00'
    }
    for (const [name, bytes] of Object.entries(bad)) {
      expect(corruptCode(() => decodeClock(Buffer.from(bytes, 'hex'))), name).toBe('CORRUPT')
    }
    expect(corruptCode(() => decodeClock(Buffer.from('0100000000', 'hex')))).toBeUndefined()
  })

  it('refuses malformed JSON clocks with CORRUPT', () => {
    const bad: unknown[] = [
      null, 3, [], {}, { sync: [], mod: [] }, { sync: [], mod: [], create: [], extra: 1 },
      { sync: [['B', 1], ['A', 1]], mod: [], create: [] },
      { sync: [['A', 1], ['A', 2]], mod: [], create: [] },
      { sync: [['A', 0]], mod: [], create: [] },
      { sync: [['A', 1.5]], mod: [], create: [] },
      { sync: [['', 1]], mod: [], create: [] },
      { sync: [['A']], mod: [], create: [] },
      { sync: {}, mod: [], create: [] },
      { sync: [['A', 1]], mod: [['A', 1]], create: [] }
    ]
    for (const value of bad) expect(corruptCode(() => clockFromJSON(value)), JSON.stringify(value)).toBe('CORRUPT')
  })

  describe('garbage', () => {
    const seed = testSeed()
    console.log(`clock codec garbage: BAZIL_SEED=${seed}`)
    const rng = createRng(seed)

    /** Either a canonical clock (re-encodes to the same bytes) or CORRUPT. */
    function checkBytes (bytes: Uint8Array): 'ok' | 'corrupt' {
      let clock: Clock
      try {
        clock = decodeClock(bytes)
      } catch (err) {
        expect(isBazilError(err, 'CORRUPT'), String(err)).toBe(true)
        return 'corrupt'
      }
      expect(hex(encodeClock(clock))).toBe(hex(bytes))
      return 'ok'
    }

    it('random bytes', () => {
      for (let i = 0; i < 3000; i++) checkBytes(Uint8Array.of(1, ...rng.bytes(rng.int(0, 24))))
    })

    it('mutations of valid encodings', () => {
      const seen = { ok: 0, corrupt: 0 }
      for (let i = 0; i < 3000; i++) {
        const bytes = [...encodeClock(randomClock(rng))]
        const edits = rng.int(1, 3)
        for (let e = 0; e < edits; e++) {
          const at = rng.int(0, bytes.length - 1)
          const kind = rng.int(0, 3)
          if (kind === 0) bytes[at] = rng.int(0, 255)
          else if (kind === 1) bytes.splice(at, 1)
          else if (kind === 2) bytes.splice(at, 0, rng.int(0, 255))
          else bytes.length = at
        }
        seen[checkBytes(Uint8Array.from(bytes))]++
      }
      expect(seen.corrupt).toBeGreaterThan(0)
    })

    it('random JSON', () => {
      for (let i = 0; i < 3000; i++) {
        const value = randomJSON(rng, 3)
        let clock: Clock
        try {
          clock = clockFromJSON(value)
        } catch (err) {
          expect(isBazilError(err, 'CORRUPT'), String(err)).toBe(true)
          continue
        }
        expect(clockToJSON(clock)).toEqual(value)
      }
      // A valid clock's JSON, lightly mutated, is decoded or refused the same way.
      for (let i = 0; i < 500; i++) {
        const json = clockToJSON(randomClock(rng)) as unknown as Record<string, unknown[]>
        const field = rng.pick(['sync', 'mod', 'create'])
        ;(json[field] as unknown[]).push(randomJSON(rng, 1))
        const code = corruptCode(() => clockFromJSON(json))
        expect(code === undefined || code === 'CORRUPT').toBe(true)
      }
    })
  })
})

function randomClock (rng: Rng): Clock {
  const peers = ['A', 'B', 'C', 'peer-12D3KooW']
  let clock = rng.chance(0.5) ? createClock(rng.pick(peers), rng.int(1, 1000)) : absent()
  for (let i = rng.int(0, 4); i > 0; i--) {
    const peer = rng.pick(peers)
    const now = rng.int(1000, 2 ** 40)
    clock = clock.create.length === 0 ? absent(vectorOf({ ...Object.fromEntries(clock.sync), [peer]: now })) : update(clock, peer, now)
  }
  return clock
}

function randomJSON (rng: Rng, depth: number): unknown {
  const pick = rng.int(0, depth > 0 ? 6 : 4)
  if (pick === 0) return rng.pick(['A', 'B', '', 'sync'])
  if (pick === 1) return rng.pick([0, 1, 2, -1, 1.5, 2 ** 53])
  if (pick === 2) return null
  if (pick === 3) return rng.chance(0.5)
  if (pick === 4) return [rng.pick(['A', 'B', 'C']), rng.int(1, 5)]
  if (pick === 5) return Array.from({ length: rng.int(0, 3) }, () => randomJSON(rng, depth - 1))
  const record: Record<string, unknown> = {}
  for (const key of ['sync', 'mod', 'create']) if (rng.chance(0.9)) record[key] = Array.from({ length: rng.int(0, 2) }, () => randomJSON(rng, depth - 1))
  return record
}
