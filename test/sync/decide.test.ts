/**
 * The per-entry sync decision (src/sync/decide.ts): every action and conflict kind, identical
 * concurrent changes, and the symmetry of the decision seen from both sides on random histories
 * of two replicas (seeded, BAZIL_SEED=...).
 */
import { describe, expect, it } from 'vitest'
import { isBazilError } from '../../src/errors.ts'
import { absent, applySync, createClock, decide, formatClock, remove, resolveNew, update } from '../../src/sync/clock.ts'
import type { Clock } from '../../src/sync/clock.ts'
import { clockAfter, decideEntry } from '../../src/sync/decide.ts'
import type { EntryState, EntryType, SyncAction } from '../../src/sync/decide.ts'
import { createRng, testSeed } from '../helpers/rng.ts'

function live (clock: Clock, type: EntryType = 'file'): EntryState {
  return { deleted: false, type, clock }
}

function gone (clock: Clock): EntryState {
  return { deleted: true, clock }
}

/** A created the entry at 1 and B copied it: the common starting point. */
const a1 = createClock('A', 1)
const b1 = applySync(absent(), a1, 'copy')

describe('decideEntry', () => {
  it('skip: nothing new either way', () => {
    expect(decideEntry(live(b1), live(a1))).toEqual({ action: 'skip' })
    expect(decideEntry(gone(remove(a1, 'A', 2)), gone(remove(b1, 'B', 2)))).toEqual({ action: 'skip' })
    expect(decideEntry(gone(absent()), gone(absent()))).toEqual({ action: 'skip' })
  })

  it('keep-local: the remote is behind us', () => {
    expect(decideEntry(live(update(b1, 'B', 2)), live(a1))).toEqual({ action: 'keep-local' })
    // We deleted the version the remote still has.
    expect(decideEntry(gone(remove(b1, 'B', 2)), live(a1))).toEqual({ action: 'keep-local' })
    // We created something the remote has never heard of.
    expect(decideEntry(live(createClock('B', 1)), gone(absent()))).toEqual({ action: 'keep-local' })
  })

  it('take-remote: an edit, a deletion or a creation that supersedes ours', () => {
    expect(decideEntry(live(b1), live(update(a1, 'A', 2)))).toEqual({ action: 'take-remote' })
    expect(decideEntry(live(b1), gone(remove(a1, 'A', 2)))).toEqual({ action: 'take-remote' })
    expect(decideEntry(gone(absent()), live(a1))).toEqual({ action: 'take-remote' })
    // A type change the remote made knowing our version is not a conflict.
    expect(decideEntry(live(b1, 'file'), live(update(a1, 'A', 2), 'symlink'))).toEqual({ action: 'take-remote' })
  })

  it('conflict: modify/modify', () => {
    const ours = live(update(b1, 'B', 2))
    const theirs = live(update(a1, 'A', 2))
    expect(decideEntry(ours, theirs)).toEqual({ action: 'conflict', kind: 'modify/modify' })
    expect(decideEntry(ours, theirs, { sameContent: false })).toEqual({ action: 'conflict', kind: 'modify/modify' })
  })

  it('conflict: modify/delete, naming the side that deleted', () => {
    const edited = live(update(b1, 'B', 2))
    const deleted = gone(remove(a1, 'A', 2))
    expect(decideEntry(edited, deleted)).toEqual({ action: 'conflict', kind: 'modify/delete', deleted: 'remote' })
    expect(decideEntry(deleted, edited)).toEqual({ action: 'conflict', kind: 'modify/delete', deleted: 'local' })
    // Same content cannot make a deletion go away.
    expect(decideEntry(edited, deleted, { sameContent: true })).toMatchObject({ action: 'conflict', kind: 'modify/delete' })
  })

  it('conflict: file/directory, whatever the content flag says', () => {
    const file = live(update(b1, 'B', 2), 'file')
    const dir = live(update(a1, 'A', 2), 'dir')
    expect(decideEntry(file, dir, { sameContent: true })).toEqual({ action: 'conflict', kind: 'file/directory' })
    expect(decideEntry(dir, file)).toEqual({ action: 'conflict', kind: 'file/directory' })
    expect(decideEntry(live(update(b1, 'B', 2), 'symlink'), dir)).toEqual({ action: 'conflict', kind: 'file/directory' })
  })

  it('merge: the same change made on both sides is not a conflict, and is asked about only then', () => {
    const ours = live(update(b1, 'B', 2))
    const theirs = live(update(a1, 'A', 2))
    let asked = 0
    const sameContent = (): boolean => { asked++; return true }
    expect(decideEntry(ours, theirs, { sameContent })).toEqual({ action: 'merge' })
    expect(asked).toBe(1)
    expect(decideEntry(live(b1), live(update(a1, 'A', 2)), { sameContent })).toEqual({ action: 'take-remote' })
    expect(asked).toBe(1)
    // After the merge both sides agree: the other side takes the merged clock, then all is quiet.
    const merged = clockAfter(ours.clock, theirs.clock, { action: 'merge' })
    expect(formatClock(merged)).toBe('{sync{A:2 B:2} mod{A:2 B:2} create{A:1}}')
    expect(decideEntry(live(theirs.clock), live(merged))).toEqual({ action: 'take-remote' })
    const theirsAfter = clockAfter(theirs.clock, merged, { action: 'take-remote' })
    expect(decideEntry(live(theirsAfter), live(merged))).toEqual({ action: 'skip' })
  })

  it('clockAfter: the sync bookkeeping of each action; a conflict must be resolved first', () => {
    const ahead = update(b1, 'B', 2)
    expect(formatClock(clockAfter(ahead, a1, { action: 'keep-local' }))).toBe('{sync{A:1 B:2} mod{B:2} create{A:1}}')
    expect(formatClock(clockAfter(a1, ahead, { action: 'take-remote' }))).toBe('{sync{A:1 B:2} mod{B:2} create{A:1}}')
    expect(formatClock(clockAfter(remove(a1, 'A', 3), remove(b1, 'B', 2), { action: 'skip' }))).toBe('{sync{A:3 B:2} mod{} create{}}')
    let error: unknown
    try { clockAfter(a1, ahead, { action: 'conflict', kind: 'modify/modify' }) } catch (err) { error = err }
    expect(isBazilError(error, 'CONFLICT')).toBe(true)
  })

  it('refuses a state whose deleted flag contradicts its clock', () => {
    for (const bad of [() => decideEntry(gone(a1), live(b1)), () => decideEntry(live(a1), live(absent()))]) {
      let error: unknown
      try { bad() } catch (err) { error = err }
      expect(isBazilError(error, 'INVALID')).toBe(true)
    }
  })

  it('is the same decision seen from either side, on random histories', () => {
    const seed = testSeed()
    console.log(`decideEntry symmetry: BAZIL_SEED=${seed}`)
    const rng = createRng(seed)
    const mirror: Record<SyncAction['action'], SyncAction['action']> = {
      skip: 'skip', 'keep-local': 'take-remote', 'take-remote': 'keep-local', merge: 'merge', conflict: 'conflict'
    }
    const seen = new Set<string>()
    for (let history = 0; history < 200; history++) {
      const peers = ['A', 'B'] as const
      const time = { A: 0, B: 0 }
      const clocks: Record<'A' | 'B', Clock> = { A: absent(), B: absent() }
      const types: Record<'A' | 'B', EntryType> = { A: 'file', B: 'file' }
      for (let i = 0; i < 30; i++) {
        const p = rng.pick(peers)
        const q = p === 'A' ? 'B' : 'A'
        const c = clocks[p]
        const dead = c.create.length === 0
        const op = rng.int(0, 4)
        if (op === 0 && !dead) clocks[p] = update(c, p, ++time[p])
        else if (op === 1 && !dead) clocks[p] = remove(c, p, ++time[p])
        else if (op === 2 && dead) {
          clocks[p] = createClock(p, ++time[p], c.sync)
          types[p] = rng.pick(['file', 'dir', 'symlink'] as const)
        } else if (op >= 3) {
          const d = decide(clocks[q], c)
          clocks[p] = d === 'conflict' ? resolveNew(c, clocks[q], p, ++time[p]) : applySync(c, clocks[q], d)
          if (d === 'copy') types[p] = types[q]
        }
        const state = (x: 'A' | 'B'): EntryState => clocks[x].create.length === 0 ? gone(clocks[x]) : live(clocks[x], types[x])
        const same = rng.chance(0.5)
        const ab = decideEntry(state('A'), state('B'), { sameContent: same })
        const ba = decideEntry(state('B'), state('A'), { sameContent: same })
        const context = `${formatClock(clocks.A)} / ${formatClock(clocks.B)}`
        expect(ba.action, context).toBe(mirror[ab.action])
        if (ab.action === 'conflict' && ba.action === 'conflict') {
          expect(ba.kind).toBe(ab.kind)
          if (ab.deleted !== undefined) expect(ba.deleted).toBe(ab.deleted === 'local' ? 'remote' : 'local')
        }
        seen.add(ab.action === 'conflict' ? ab.kind : ab.action)
      }
    }
    expect([...seen].sort()).toEqual(['file/directory', 'keep-local', 'merge', 'modify/delete', 'modify/modify', 'skip', 'take-remote'])
  })
})
