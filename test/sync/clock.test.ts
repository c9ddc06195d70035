/**
 * Vector time pairs (src/sync/clock.ts, src/sync/summary.ts) against the worked figures of Cox &
 * Josephson, "File Synchronization with Vector Time Pairs" (MIT-CSAIL-TR-2005-014), one test per
 * figure, asserting the exact vectors. Replicas are the paper's A, B and C; the scenarios and
 * vectors follow the original Bazil's `fs/clock/paper_test.go`, which transcribed them.
 * clock-model.test.ts and summary.test.ts hold the property tests.
 *
 * The figures draw full modification vectors; `update` stores the paper's compressed (single
 * entry) modification time for files, so each figure is also replayed compressed to show the
 * decisions do not change.
 */
import { describe, expect, it } from 'vitest'
import { isBazilError } from '../../src/errors.ts'
import {
  absent, advanceSync, applySync, createClock, decide, formatClock, isTombstone, mergeIdentical, remove,
  resolveNew, resolveOurs, resolveTheirs, update, updateFull
} from '../../src/sync/clock.ts'
import type { Clock } from '../../src/sync/clock.ts'
import { encodeClock } from '../../src/sync/codec.ts'
import { canSkip, compressSync, expandSync, summarize } from '../../src/sync/summary.ts'
import { vectorOf } from '../../src/sync/vector.ts'

const A = 'A'
const B = 'B'
const C = 'C'

function expectClock (clock: Clock, expected: string): void {
  expect(formatClock(clock)).toBe(expected)
}

/** Replays a figure with full (paper) or compressed (stored) file modification times. */
const variants = [
  { name: 'as drawn (full mod vectors)', write: updateFull },
  { name: 'compressed mod vectors', write: update }
] as const

describe('Figure 2: two replicas', () => {
  it('(a) A changes after the sync: B → A does nothing', () => {
    let a = createClock(A, 1)
    let b = absent()
    expect(decide(a, b)).toBe('copy')
    b = applySync(b, a, 'copy')
    a = updateFull(a, A, 3)
    expect(decide(b, a)).toBe('nothing')
    a = applySync(a, b, 'nothing')
    expectClock(a, '{sync{A:3} mod{A:3} create{A:1}}')
    expectClock(b, '{sync{A:1} mod{A:1} create{A:1}}')
    // The other direction is the copy that brings B up to date.
    expect(decide(a, b)).toBe('copy')
  })

  it('(b) B changes after the sync: B → A copies', () => {
    let a = createClock(A, 1)
    let b = applySync(absent(), a, 'copy')
    b = updateFull(b, B, 3)
    expect(decide(b, a)).toBe('copy')
    a = applySync(a, b, 'copy')
    expectClock(a, '{sync{A:1 B:3} mod{A:1 B:3} create{A:1}}')
    expectClock(b, '{sync{A:1 B:3} mod{A:1 B:3} create{A:1}}')
    expect(decide(a, b)).toBe('nothing')
    expect(decide(b, a)).toBe('nothing')
  })

  it('(c) both change after the sync: a conflict, both ways', () => {
    let a = createClock(A, 1)
    let b = applySync(absent(), a, 'copy')
    a = updateFull(a, A, 3)
    b = updateFull(b, B, 3)
    expect(decide(b, a)).toBe('conflict')
    expect(decide(a, b)).toBe('conflict')
    expectClock(a, '{sync{A:3} mod{A:3} create{A:1}}')
    expectClock(b, '{sync{A:1 B:3} mod{A:1 B:3} create{A:1}}')
    let error: unknown
    try { applySync(a, b, 'conflict') } catch (err) { error = err }
    expect(isBazilError(error, 'CONFLICT')).toBe(true)
  })

  it('compressed: the same decisions, with single-entry modification times', () => {
    const a = createClock(A, 1)
    let b = applySync(absent(), a, 'copy')
    b = update(b, B, 3)
    expectClock(b, '{sync{A:1 B:3} mod{B:3} create{A:1}}')
    expect(decide(b, a)).toBe('copy')
    const a2 = update(a, A, 3)
    expect(decide(b, a2)).toBe('conflict')
    expect(decide(applySync(absent(), a, 'copy'), a2)).toBe('nothing')
  })
})

describe('Figure 3: three replicas, a conflict and its resolutions', () => {
  /** B creates; A and C copy it; then A and B both change it. */
  function conflicted (write: typeof update): { a: Clock, b: Clock, c: Clock } {
    const b0 = createClock(B, 1)
    expect(decide(b0, absent())).toBe('copy')
    const a = applySync(absent(), b0, 'copy')
    const c = applySync(absent(), b0, 'copy')
    const a3 = write(a, A, 3)
    const b3 = write(b0, B, 3)
    expect(decide(a3, b3)).toBe('conflict')
    expect(decide(b3, a3)).toBe('conflict')
    return { a: a3, b: b3, c }
  }

  for (const { name, write } of variants) {
    describe(name, () => {
      it('(b) resolved at B in favour of A: A\'s later change copies', () => {
        const { a, b: conflictedB, c } = conflicted(write)
        const b = resolveTheirs(conflictedB, a)
        expectClock(b, write === updateFull
          ? '{sync{A:3 B:3} mod{A:3 B:1} create{B:1}}'
          : '{sync{A:3 B:3} mod{A:3} create{B:1}}')
        expect(decide(a, b)).toBe('nothing')
        expect(decide(c, b)).toBe('nothing')
        expect(decide(write(a, A, 6), b)).toBe('copy')
      })

      it('(c) resolved at B in favour of B: A\'s later change still conflicts', () => {
        const { a, b: conflictedB, c } = conflicted(write)
        const b = resolveOurs(conflictedB, a)
        expectClock(b, '{sync{A:3 B:3} mod{B:3} create{B:1}}')
        expect(decide(a, b)).toBe('nothing')
        expect(decide(c, b)).toBe('nothing')
        // A takes B's choice when it syncs from B; until then its own next edit conflicts.
        expect(decide(b, a)).toBe('copy')
        expect(decide(write(a, A, 6), b)).toBe('conflict')
      })

      it('(d) resolved at B with a new version: it supersedes both', () => {
        const { a, b: conflictedB, c } = conflicted(write)
        const b = resolveNew(conflictedB, a, B, 4)
        expectClock(b, '{sync{A:3 B:4} mod{A:3 B:4} create{B:1}}')
        expect(decide(a, b)).toBe('nothing')
        expect(decide(c, b)).toBe('nothing')
        expect(decide(b, a)).toBe('copy')
        expect(decide(b, c)).toBe('copy')
        expect(decide(write(a, A, 6), b)).toBe('conflict')
      })
    })
  }
})

describe('Figure 5: deletion and re-creation', () => {
  it('(a) A deletes; B learns the deletion, then re-creates: A copies the new file', () => {
    const a1 = createClock(A, 1)
    let b = applySync(absent(), a1, 'copy')
    const a = remove(a1, A, 2)
    expectClock(a, '{sync{A:2} mod{} create{}}')
    // B's version is one A saw before deleting it: the deletion is copied.
    expect(decide(a, b)).toBe('copy')
    b = applySync(b, a, 'copy')
    expectClock(b, '{sync{A:2} mod{} create{}}')
    b = createClock(B, 4, b.sync)
    expectClock(b, '{sync{A:2 B:4} mod{B:4} create{B:4}}')
    // The new incarnation is not an edit of the version A deleted.
    expect(decide(b, a)).toBe('copy')
    expect(decide(a, b)).toBe('nothing')
    expectClock(applySync(a, b, 'copy'), '{sync{A:2 B:4} mod{B:4} create{B:4}}')
  })

  it('(a) with a B that never had the file: the deletion is nothing to it', () => {
    const a = remove(createClock(A, 1), A, 2)
    const b = absent()
    expect(decide(a, b)).toBe('nothing')
    expectClock(applySync(b, a, 'nothing'), '{sync{A:2} mod{} create{}}')
  })

  it('(c) B creates without having seen A\'s create and delete: A copies it', () => {
    const a = remove(createClock(A, 1), A, 2)
    const b = createClock(B, 4)
    expect(decide(b, a)).toBe('copy')
    expect(decide(a, b)).toBe('nothing')
    expectClock(applySync(a, b, 'copy'), '{sync{A:2 B:4} mod{B:4} create{B:4}}')
  })

  it('(d) both create and delete independently: nothing to do but merge the sync times', () => {
    const a = remove(createClock(A, 1), A, 2)
    const b = remove(createClock(B, 1), B, 2)
    expect(decide(b, a)).toBe('nothing')
    expect(decide(a, b)).toBe('nothing')
    expectClock(applySync(a, b, 'nothing'), '{sync{A:2 B:2} mod{} create{}}')
  })

  it('modify/delete: A deletes the version B has since edited, a conflict both ways', () => {
    const a1 = createClock(A, 1)
    const b = update(applySync(absent(), a1, 'copy'), B, 3)
    const a = remove(a1, A, 2)
    expect(decide(a, b)).toBe('conflict')
    expect(decide(b, a)).toBe('conflict')

    // Keeping B's edit is a new incarnation, which A then takes as a creation.
    const kept = resolveNew(b, a, B, 4)
    expectClock(kept, '{sync{A:2 B:4} mod{B:4} create{B:4}}')
    expect(decide(kept, a)).toBe('copy')
    expect(decide(a, kept)).toBe('nothing')
    // Taking the live version with its own clock would re-conflict wherever the deletion is
    // known: refused, both ways round.
    for (const bad of [() => resolveOurs(b, a), () => resolveTheirs(a, b)]) {
      let error: unknown
      try { bad() } catch (err) { error = err }
      expect(isBazilError(error, 'INVALID')).toBe(true)
    }
    // Taken at A instead, it is the same kind of new incarnation.
    const taken = resolveNew(a, b, A, 5)
    expectClock(taken, '{sync{A:5 B:3} mod{A:5 B:3} create{A:5}}')
    expect(decide(taken, b)).toBe('copy')

    // Or keep the deletion, at A: B then takes it.
    const gone = resolveOurs(a, b)
    expectClock(gone, '{sync{A:2 B:3} mod{} create{}}')
    expect(decide(gone, b)).toBe('copy')
    expect(decide(b, gone)).toBe('nothing')
  })
})

describe('resolutions between incarnations', () => {
  it('resolving a re-created entry against an edit of the old one makes a new incarnation', () => {
    const a1 = createClock(A, 1)
    const b = update(applySync(absent(), a1, 'copy'), B, 2) // B edits
    const aGone = remove(a1, A, 2) // A deletes, concurrently
    let c = applySync(absent(), a1, 'copy')
    expect(decide(aGone, c)).toBe('copy')
    c = applySync(c, aGone, 'copy') // C learns the deletion...
    c = createClock(C, 3, c.sync) // ...and re-creates the entry
    expect(decide(c, b)).toBe('conflict')
    const resolved = resolveNew(b, c, B, 4) // B resolves, knowing A's deletion through C
    expectClock(resolved, '{sync{A:2 B:4 C:3} mod{B:4 C:3} create{B:4}}')
    // A's deletion is old news to the resolution: A takes it, with no modify/delete conflict.
    expect(decide(aGone, resolved)).toBe('nothing')
    expect(decide(resolved, aGone)).toBe('copy')
    // (Keeping B's old creation time would have reported one.)
    expect(decide(aGone, { ...resolved, create: b.create })).toBe('conflict')
  })
})

describe('Figure 8: sync-time bookkeeping', () => {
  it('C learns B\'s change and everything B knew, then its own time', () => {
    let a = createClock(A, 1)
    a = advanceSync(a, A, 2) // A knows its copy is unchanged at time 2
    let b = applySync(absent(), a, 'copy')
    expectClock(b, '{sync{A:2} mod{A:1} create{A:1}}')
    b = updateFull(b, B, 4) // the figure draws the uncompressed modification time
    let c = absent()
    expect(decide(b, c)).toBe('copy')
    c = applySync(c, b, 'copy')
    c = advanceSync(c, C, 5)
    expectClock(c, '{sync{A:2 B:4 C:5} mod{A:1 B:4} create{A:1}}')
    // Nothing anyone holds is news to C any more.
    expect(decide(a, c)).toBe('nothing')
    expect(decide(b, c)).toBe('nothing')
  })
})

describe('Figure 12: partial syncs and directory summaries', () => {
  /**
   * A holds d/x and d/y; B syncs only d/x from A, C only d/y; each then knows its own time 3.
   * B's and C's directory d was not itself synced, so it knows its names only as of its own
   * time (`own`), and the child it lacks is `absent(own.sync)`.
   */
  function partial (): Record<'ad' | 'ax' | 'ay' | 'bd' | 'bx' | 'by' | 'cd' | 'cx' | 'cy', Clock> {
    const ad = createClock(A, 1)
    const ax = createClock(A, 1)
    const ay = createClock(A, 1)
    const bd = absent(vectorOf({ B: 3 }))
    const bx = advanceSync(applySync(absent(), ax, 'copy'), B, 3)
    const cd = absent(vectorOf({ C: 3 }))
    const cy = advanceSync(applySync(absent(), ay, 'copy'), C, 3)
    return { ad, ax, ay, bd, bx, by: absent(bd.sync), cd, cx: absent(cd.sync), cy }
  }

  it('the per-file clocks, and the directory mod = max, sync = min', () => {
    const { ad, ax, ay, bd, bx, by, cd, cx, cy } = partial()
    expectClock(bx, '{sync{A:1 B:3} mod{A:1} create{A:1}}')
    expectClock(by, '{sync{B:3} mod{} create{}}')
    expectClock(cx, '{sync{C:3} mod{} create{}}')
    expectClock(cy, '{sync{A:1 C:3} mod{A:1} create{A:1}}')
    expectClock(summarize(ad, [ax, ay]), '{sync{A:1} mod{A:1} create{A:1}}')
    // (The original's test left the directory's sync time unset; its minimum is this.)
    expectClock(summarize(bd, [bx]), '{sync{B:3} mod{A:1} create{}}')
    expectClock(summarize(cd, [cy]), '{sync{C:3} mod{A:1} create{}}')
  })

  it('a partially synced directory cannot be skipped; once fully synced it can', () => {
    const { ad, ax, ay, bd, bx, by } = partial()
    const aSummary = summarize(ad, [ax, ay])
    expect(canSkip(aSummary, summarize(bd, [bx]))).toBe(false)
    // Descending finds d itself and d/y new, d/x known.
    expect(decide(ad, bd)).toBe('copy')
    expect(decide(ax, bx)).toBe('nothing')
    expect(decide(ay, by)).toBe('copy')
    const bSummary = summarize(applySync(bd, ad, 'copy'), [applySync(bx, ax, 'nothing'), applySync(by, ay, 'copy')])
    expectClock(bSummary, '{sync{A:1 B:3} mod{A:1} create{A:1}}')
    expect(canSkip(aSummary, bSummary)).toBe(true)
    // A changing one file moves A's summary past B's knowledge again.
    expect(canSkip(summarize(ad, [update(ax, A, 4), ay]), bSummary)).toBe(false)
  })

  it('children store their sync time relative to the directory\'s, and a skip only raises the directory\'s', () => {
    const { ad, ax, ay } = partial()
    const bx = applySync(absent(), ax, 'copy')
    const by = applySync(absent(), ay, 'copy')
    const bd = summarize(applySync(absent(), ad, 'copy'), [bx, by])
    const storedX = compressSync(bx, bd.sync)
    expectClock(storedX, '{sync{} mod{A:1} create{A:1}}')
    // B skips the whole directory syncing from a C that knows more and changed nothing.
    const cd = Object.freeze({ ...bd, sync: vectorOf({ A: 1, C: 7 }) })
    expect(canSkip(cd, bd)).toBe(true)
    const bdAfter = applySync(bd, cd, 'nothing')
    expectClock(expandSync(storedX, bdAfter.sync), '{sync{A:1 C:7} mod{A:1} create{A:1}}')
  })

  it('a tombstone child moves the summary by its sync time, even a deletion learnt from elsewhere', () => {
    const d = createClock(A, 1)
    const x = createClock(A, 1)
    const y = createClock(A, 1)
    const copy = (c: Clock): Clock => applySync(absent(), c, 'copy')
    const aSummary = summarize(d, [x, y])
    // B deletes d/y; its directory's own clock is not touched.
    const bTomb = remove(copy(y), B, 2)
    const bSummary = summarize(copy(d), [copy(x), bTomb])
    expectClock(bSummary, '{sync{A:1} mod{A:1 B:2} create{A:1}}')
    expect(canSkip(bSummary, summarize(copy(d), [copy(x), copy(y)]))).toBe(false)
    // C learns the deletion by syncing d/y alone: no modification time of C's moved, yet C's
    // summary must not let A skip it.
    const cTomb = applySync(copy(y), bTomb, 'copy')
    const cSummary = summarize(copy(d), [copy(x), cTomb])
    expect(canSkip(cSummary, aSummary)).toBe(false)
    expect(decide(cTomb, y)).toBe('copy')
    // Once A knows B's time 2 for the whole directory, there is nothing left to skip over.
    const aAfter = summarize(expandSync(d, vectorOf({ B: 2 })), [expandSync(x, vectorOf({ B: 2 })), applySync(y, cTomb, 'copy')])
    expect(canSkip(cSummary, aAfter)).toBe(true)
  })
})

describe('tombstones keep only the sync vector', () => {
  it('a deletion drops the modification and creation times', () => {
    const live = update(update(createClock(A, 1), B, 4), C, 9)
    const tomb = remove(live, B, 10)
    expect(isTombstone(tomb)).toBe(true)
    expect(tomb.mod).toEqual([])
    expect(tomb.create).toEqual([])
    expect(tomb.sync).toEqual(vectorOf({ A: 1, B: 10, C: 9 }))
    expect(encodeClock(tomb).length).toBeLessThan(encodeClock(live).length)
  })

  it('covered by its directory\'s sync time, a tombstone stores nothing at all', () => {
    const tomb = remove(createClock(A, 1), A, 2)
    const dirSync = vectorOf({ A: 2, B: 5 })
    const stored = compressSync(tomb, dirSync)
    expectClock(stored, '{sync{} mod{} create{}}')
    // ...and is then the same as never having had the entry: absent(directory's sync).
    expect(expandSync(stored, dirSync)).toEqual(absent(dirSync))
  })

  it('a tombstone cannot be edited, only replaced by a new entry', () => {
    const tomb = remove(createClock(A, 1), A, 2)
    for (const bad of [() => update(tomb, A, 3), () => updateFull(tomb, A, 3), () => mergeIdentical(tomb, tomb)]) {
      let error: unknown
      try { bad() } catch (err) { error = err }
      expect(isBazilError(error, 'INVALID')).toBe(true)
    }
  })
})

describe('identical concurrent changes', () => {
  it('merge into a clock both sides then agree on', () => {
    const a1 = createClock(A, 1)
    const b1 = applySync(absent(), a1, 'copy')
    const a = update(a1, A, 3)
    const b = update(b1, B, 3)
    expect(decide(a, b)).toBe('conflict')
    const merged = mergeIdentical(b, a)
    expectClock(merged, '{sync{A:3 B:3} mod{A:3 B:3} create{A:1}}')
    expect(decide(a, merged)).toBe('nothing')
    expect(decide(merged, a)).toBe('copy') // A takes the merged clock; the bytes are the same
    const aAfter = applySync(a, merged, 'copy')
    expect(decide(aAfter, merged)).toBe('nothing')
    expect(decide(merged, aAfter)).toBe('nothing')
  })
})

describe('clock arguments', () => {
  it('refuses times that are not positive integers', () => {
    for (const bad of [() => createClock(A, 0), () => update(createClock(A, 1), A, -2), () => advanceSync(absent(), A, 1.5)]) {
      let error: unknown
      try { bad() } catch (err) { error = err }
      expect(isBazilError(error, 'INVALID')).toBe(true)
    }
  })
})
