/**
 * Directory summaries (src/sync/summary.ts) are sound: whenever a sync would skip a directory
 * because the source's summary modification time is covered by the destination's summary sync
 * time, every entry below really decides `nothing`. Checked on random histories of one directory
 * of several children across three replicas, with edits, deletions, creations, changes of the
 * directory itself, ticks, partial syncs of single entries and whole-directory syncs that skip or descend (seeded, BAZIL_SEED=...).
 */
import { describe, expect, it } from 'vitest'
import { absent, applySync, createClock, decide, formatClock, remove, resolveNew, update, updateFull } from '../../src/sync/clock.ts'
import type { Clock } from '../../src/sync/clock.ts'
import { canSkip, expandSync, summarize } from '../../src/sync/summary.ts'
import { EMPTY, merge, withTime } from '../../src/sync/vector.ts'
import type { Vector } from '../../src/sync/vector.ts'
import { createRng, testSeed } from '../helpers/rng.ts'

interface Replica {
  readonly peer: string
  time: number
  /** The directory entry's own clock (its names), and its children's, as stored. */
  own: Clock
  children: Clock[]
  /** Sync time every entry of the subtree inherits (raised when a whole-directory sync skips). */
  subtree: Vector
}

const CHILDREN = 4

function effective (r: Replica, clock: Clock): Clock {
  return expandSync(clock, r.subtree)
}

function summary (r: Replica): Clock {
  return summarize(effective(r, r.own), r.children.map(c => effective(r, c)))
}

/** Sync one entry from `src` to `dst`; a conflict is resolved with a new version at dst. */
function syncEntry (src: Replica, dst: Replica, from: Clock, into: Clock): Clock {
  const s = effective(src, from)
  const d = effective(dst, into)
  const decision = decide(s, d)
  return decision === 'conflict' ? resolveNew(d, s, dst.peer, ++dst.time) : applySync(d, s, decision)
}

describe('directory summaries on random histories', () => {
  it('skip a directory only when every entry in it decides nothing', () => {
    const seed = testSeed()
    console.log(`directory summaries: BAZIL_SEED=${seed}`)
    const rng = createRng(seed)
    const stats = { skips: 0, descents: 0 }
    for (let history = 0; history < 200; history++) {
      // A starts with a directory of files, synced everywhere.
      const dir = createClock('A', 1)
      const files = Array.from({ length: CHILDREN }, () => createClock('A', 1))
      const replicas: Replica[] = ['A', 'B', 'C'].map(peer => ({
        peer,
        time: 1,
        own: peer === 'A' ? dir : applySync(absent(), dir, 'copy'),
        children: files.map(f => peer === 'A' ? f : applySync(absent(), f, 'copy')),
        subtree: EMPTY
      }))
      const log: string[] = []

      const checkSoundness = (): void => {
        for (const src of replicas) {
          for (const dst of replicas) {
            if (src === dst || !canSkip(summary(src), summary(dst))) continue
            const entries = [[src.own, dst.own], ...src.children.map((c, i) => [c, dst.children[i] as Clock])] as const
            for (const [s, d] of entries) {
              const context = `${src.peer}→${dst.peer} skips ${formatClock(summary(src))} into ${formatClock(summary(dst))}, ` +
                `but ${formatClock(effective(src, s))} into ${formatClock(effective(dst, d))}:\n${log.join('\n')}`
              expect(decide(effective(src, s), effective(dst, d)), context).toBe('nothing')
            }
          }
        }
      }

      for (let step = 0; step < 40; step++) {
        const r = rng.pick(replicas)
        const i = rng.int(0, CHILDREN - 1)
        const child = effective(r, r.children[i] as Clock)
        const dead = child.create.length === 0
        const op = rng.pick(['edit', 'edit', 'delete', 'create', 'chmod', 'tick', 'entry', 'entry', 'dir', 'dir'] as const)
        if (op === 'edit' && !dead) {
          r.children[i] = update(child, r.peer, ++r.time)
        } else if (op === 'delete' && !dead) {
          // The directory's own clock is left alone: the tombstone alone must move the summary.
          r.children[i] = remove(child, r.peer, ++r.time)
        } else if (op === 'create' && dead) {
          r.children[i] = createClock(r.peer, ++r.time, child.sync)
        } else if (op === 'chmod') {
          r.own = updateFull(effective(r, r.own), r.peer, ++r.time)
        } else if (op === 'tick') {
          r.subtree = withTime(r.subtree, r.peer, ++r.time)
        } else if (op === 'entry' || op === 'dir') {
          const src = rng.pick(replicas.filter(x => x !== r))
          if (op === 'entry') {
            // A partial sync: one child only.
            r.children[i] = syncEntry(src, r, src.children[i] as Clock, r.children[i] as Clock)
          } else if (canSkip(summary(src), summary(r))) {
            stats.skips++
            r.subtree = merge(r.subtree, summary(src).sync)
          } else {
            stats.descents++
            r.own = syncEntry(src, r, src.own, r.own)
            r.children = r.children.map((c, j) => syncEntry(src, r, src.children[j] as Clock, c))
          }
        } else {
          continue
        }
        log.push(`${op} ${r.peer}${op === 'edit' || op === 'delete' || op === 'create' || op === 'entry' ? ` #${i}` : ''}`)
        checkSoundness()
      }
    }
    expect(stats.skips).toBeGreaterThan(50)
    expect(stats.descents).toBeGreaterThan(50)
  })
})
