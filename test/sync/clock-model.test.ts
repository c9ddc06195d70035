/**
 * Property tests of the vector-time-pair decision (src/sync/clock.ts) on random histories of one
 * entry across three replicas: writes, deletions, re-creations, sync-time ticks and syncs in any
 * direction, with conflicts resolved every possible way. Each decision is checked against an
 * oracle that remembers, per replica, the exact set of versions it has seen, which is what the
 * paper's vectors summarize; and against itself run with uncompressed modification times, in the
 * other direction (antisymmetry), and after an encode/decode round trip. Seeded
 * (BAZIL_SEED=... replays a run).
 */
import { describe, expect, it } from 'vitest'
import {
  absent, advanceSync, applySync, createClock, decide, formatClock, isTombstone, remove, resolveNew,
  resolveOurs, resolveTheirs, update, updateFull
} from '../../src/sync/clock.ts'
import type { Clock, Decision } from '../../src/sync/clock.ts'
import { clockFromJSON, clockToJSON, decodeClock, encodeClock } from '../../src/sync/codec.ts'
import { leq } from '../../src/sync/vector.ts'
import { createRng, testSeed } from '../helpers/rng.ts'
import type { Rng } from '../helpers/rng.ts'

interface Version { readonly incarnation: number, readonly deleted: boolean }

interface Replica {
  readonly peer: string
  time: number
  /** As stored: compressed file modification times. */
  clock: Clock
  /** The same history with uncompressed modification times. */
  full: Clock
  /** Oracle: the version held (0: never heard of the entry) and every version seen. */
  current: number
  known: Set<number>
}

class World {
  readonly versions: Version[] = [{ incarnation: 0, deleted: true }]
  /** The version that created each incarnation. */
  readonly creations = new Map<number, number>()
  readonly replicas: Replica[]
  readonly log: string[] = []
  readonly counts: Record<Decision, number> = { nothing: 0, copy: 0, conflict: 0 }

  constructor (peers: string[]) {
    this.replicas = peers.map(peer => ({ peer, time: 0, clock: absent(), full: absent(), current: 0, known: new Set([0]) }))
  }

  version (id: number): Version {
    return this.versions[id] as Version
  }

  newVersion (r: Replica, incarnation: number | 'new', deleted: boolean): void {
    const id = this.versions.length
    const inc = incarnation === 'new' ? this.creations.size + 1 : incarnation
    if (incarnation === 'new') this.creations.set(inc, id)
    this.versions.push({ incarnation: inc, deleted })
    r.current = id
    r.known.add(id)
  }

  /**
   * What `dst` should decide receiving `src`, from the exact sets of versions each has seen:
   * a version the other has seen is old news to it; a live version whose incarnation the
   * deleting side never saw is a new entry to it; anything else is concurrent.
   */
  oracle (src: Replica, dst: Replica): Decision {
    const vs = this.version(src.current)
    const vd = this.version(dst.current)
    if (vs.deleted && vd.deleted) return 'nothing'
    if (vd.deleted) {
      if (dst.known.has(src.current)) return 'nothing'
      return dst.known.has(this.creation(vs)) ? 'conflict' : 'copy'
    }
    if (vs.deleted) {
      if (src.known.has(dst.current)) return 'copy'
      return src.known.has(this.creation(vd)) ? 'conflict' : 'nothing'
    }
    if (dst.known.has(src.current)) return 'nothing'
    if (src.known.has(dst.current)) return 'copy'
    return 'conflict'
  }

  creation (v: Version): number {
    return this.creations.get(v.incarnation) as number
  }
}

type Resolution = 'theirs' | 'ours' | 'new'

function step (world: World, rng: Rng, resolutions: readonly Resolution[]): void {
  const r = rng.pick(world.replicas)
  const live = !world.version(r.current).deleted
  const op = rng.pick(['write', 'write', 'delete', 'create', 'tick', 'sync', 'sync', 'sync', 'sync'] as const)
  if (op === 'write' && live) {
    const now = ++r.time
    r.clock = update(r.clock, r.peer, now)
    r.full = updateFull(r.full, r.peer, now)
    world.newVersion(r, world.version(r.current).incarnation, false)
  } else if (op === 'delete' && live) {
    const now = ++r.time
    r.clock = remove(r.clock, r.peer, now)
    r.full = remove(r.full, r.peer, now)
    world.newVersion(r, world.version(r.current).incarnation, true)
  } else if (op === 'create' && !live) {
    // A re-creation after a deletion, or an independent creation by a replica that never had it.
    const now = ++r.time
    r.clock = createClock(r.peer, now, r.clock.sync)
    r.full = createClock(r.peer, now, r.full.sync)
    world.newVersion(r, 'new', false)
  } else if (op === 'tick') {
    const now = ++r.time
    r.clock = advanceSync(r.clock, r.peer, now)
    r.full = advanceSync(r.full, r.peer, now)
  } else if (op === 'sync') {
    const src = rng.pick(world.replicas.filter(x => x !== r))
    sync(world, src, r, rng.pick(resolutions))
  } else {
    return
  }
  if (op !== 'sync') world.log.push(`${op} ${r.peer}`)
}

function sync (world: World, src: Replica, dst: Replica, resolution: Resolution): Decision {
  const decision = decide(src.clock, dst.clock)
  const context = (): string => `${src.peer}→${dst.peer} ${formatClock(src.clock)} into ${formatClock(dst.clock)} after\n${world.log.join('\n')}`
  expect(decision, context()).toBe(world.oracle(src, dst))
  expect(decide(src.full, dst.full), `uncompressed ${context()}`).toBe(decision)
  const back = decide(dst.clock, src.clock)
  if (decision === 'copy') expect(back, context()).toBe('nothing')
  expect(back === 'conflict', context()).toBe(decision === 'conflict')

  const merged = new Set([...dst.known, ...src.known])
  if (decision === 'nothing') {
    dst.clock = applySync(dst.clock, src.clock, 'nothing')
    dst.full = applySync(dst.full, src.full, 'nothing')
  } else if (decision === 'copy' || (resolution === 'theirs' && !(isTombstone(dst.clock) && !isTombstone(src.clock)))) {
    dst.clock = decision === 'copy' ? applySync(dst.clock, src.clock, 'copy') : resolveTheirs(dst.clock, src.clock)
    dst.full = applySync(dst.full, src.full, 'copy')
    dst.current = src.current
  } else if (resolution === 'ours' && !(isTombstone(src.clock) && !isTombstone(dst.clock))) {
    dst.clock = resolveOurs(dst.clock, src.clock)
    dst.full = resolveOurs(dst.full, src.full)
  } else {
    const now = ++dst.time
    const reborn = isTombstone(src.clock) || isTombstone(dst.clock) ||
      world.version(src.current).incarnation !== world.version(dst.current).incarnation
    const incarnation = world.version(dst.current).incarnation
    dst.clock = resolveNew(dst.clock, src.clock, dst.peer, now)
    dst.full = resolveNew(dst.full, src.full, dst.peer, now)
    dst.known = merged
    world.newVersion(dst, reborn ? 'new' : incarnation, false)
  }
  for (const id of merged) dst.known.add(id)
  world.counts[decision]++
  world.log.push(`sync ${src.peer}→${dst.peer}: ${decision}${decision === 'conflict' ? ` (${resolution})` : ''}`)
  return decision
}

function checkInvariants (w: World, r: Replica): void {
  for (const clock of [r.clock, r.full]) {
    expect(isTombstone(clock)).toBe(w.version(r.current).deleted)
    if (!isTombstone(clock)) {
      // A replica knows its own version and its creation.
      expect(leq(clock.mod, clock.sync)).toBe(true)
      expect(leq(clock.create, clock.sync)).toBe(true)
      expect(clock.create.length).toBe(1)
    }
    expect(decodeClock(encodeClock(clock))).toEqual(clock)
    expect(clockFromJSON(JSON.parse(JSON.stringify(clockToJSON(clock))))).toEqual(clock)
  }
  // Compression drops modification entries only, never changes what is known.
  expect(r.clock.sync).toEqual(r.full.sync)
  expect(leq(r.clock.mod, r.full.mod)).toBe(true)
}

describe('vector time pairs on random histories', () => {
  const seed = testSeed()
  console.log(`clock model: BAZIL_SEED=${seed}`)
  const rng = createRng(seed)

  it('decide like the version-knowledge oracle, with the paper\'s resolutions, compressed or not, antisymmetrically', () => {
    const counts: Record<Decision, number> = { nothing: 0, copy: 0, conflict: 0 }
    for (let history = 0; history < 200; history++) {
      const w = new World(['A', 'B', 'C'])
      for (let i = 0; i < 40; i++) {
        step(w, rng, ['theirs', 'ours', 'new'])
        for (const r of w.replicas) checkInvariants(w, r)
      }
      for (const d of ['nothing', 'copy', 'conflict'] as const) counts[d] += w.counts[d]
    }
    // The histories exercised every outcome.
    expect(Math.min(counts.nothing, counts.copy, counts.conflict)).toBeGreaterThan(100)
  })

  it('converge once healed, when every conflict is resolved with a new version', () => {
    for (let history = 0; history < 300; history++) {
      const w = new World(['A', 'B', 'C'])
      for (let i = 0; i < 40; i++) step(w, rng, ['new'])
      // Heal: sync every pair in both directions until nothing moves. All replicas then hold
      // one version (or none) and agree there is nothing to do.
      for (let round = 0; round < 10; round++) {
        let moved = false
        for (const src of w.replicas) {
          for (const dst of w.replicas) {
            if (src !== dst) moved = sync(w, src, dst, 'new') !== 'nothing' || moved
          }
        }
        if (!moved) break
      }
      const [first, ...rest] = w.replicas as [Replica, ...Replica[]]
      const states = (): string => `${w.log.join('\n')}\n${w.replicas.map(x => `${x.peer} ${x.current} ${formatClock(x.clock)}`).join('\n')}`
      for (const r of rest) {
        // One version, or all deleted (possibly by different deletions).
        const same = r.current === first.current || (w.version(r.current).deleted && w.version(first.current).deleted)
        expect(same, states()).toBe(true)
        expect(decide(r.clock, first.clock)).toBe('nothing')
        expect(decide(first.clock, r.clock)).toBe('nothing')
      }
    }
  })

  // Why the protocol should not use them when several replicas may resolve: the paper's
  // resolutions record knowledge without a new version, so opposite choices made on two
  // replicas each look like old news to the other.
  it('(the paper\'s resolveOurs on both sides diverges silently; resolveNew does not)', () => {
    const a1 = createClock('A', 1)
    const b1 = update(applySync(absent(), a1, 'copy'), 'B', 2)
    const a2 = update(a1, 'A', 2)
    expect(decide(a2, b1)).toBe('conflict')
    const aOurs = resolveOurs(a2, b1)
    const bOurs = resolveOurs(b1, a2)
    expect([decide(aOurs, bOurs), decide(bOurs, aOurs)]).toEqual(['nothing', 'nothing'])
    const aNew = resolveNew(a2, b1, 'A', 3)
    const bNew = resolveNew(b1, a2, 'B', 3)
    expect([decide(aNew, bNew), decide(bNew, aNew)]).toEqual(['conflict', 'conflict'])
  })
})
