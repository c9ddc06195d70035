/**
 * The clock of one entry and the sync decision: vector time pairs, as in Cox & Josephson, "File
 * Synchronization with Vector Time Pairs" (MIT-CSAIL-TR-2005-014), and as in the original
 * Bazil's `fs/clock`.
 *
 * A clock holds three vectors:
 * - `mod`, the modification time: which version the replica holds (what it has);
 * - `sync`, the synchronization time: how far the replica's knowledge of this entry reaches
 *   (what it knows). A replica always knows its own present, so `sync` covers `mod`;
 * - `create`, the creation time of the entry's current incarnation, so a delete followed by a
 *   re-create is told apart from an edit of the deleted version.
 *
 * A deleted entry is a tombstone that keeps only `sync`: the paper's observation is that a
 * deletion notice needs no modification time, because a sync time covering the deleted version
 * is what proves the deletion. An entry a replica has never heard of is the same thing with the
 * sync time it inherits from its directory (`absent(parentSync)`).
 *
 * The decision, receiving `source` into `dest` (both live):
 *   source.mod ≤ dest.sync  → nothing (dest already has or superseded that version);
 *   dest.mod ≤ source.sync  → copy (source's version supersedes dest's);
 *   otherwise               → conflict.
 * With a tombstone on one side (it has no modification time) the live side's version is tested
 * against the tombstone's sync time: seen by the deleting side, the deletion supersedes it;
 * unseen, but of an incarnation the deleting side knew (create ≤ its sync), it is a
 * modify/delete conflict; of an incarnation it never knew, a new entry the deletion does not
 * touch. A live version chosen over a deletion is therefore always a new incarnation
 * (`resolveNew`).
 *
 * Times are per-peer logical counters (positive integers). Every function returns a new clock.
 */
import { BazilError, ErrorCode } from '../errors.ts'
import { EMPTY, equals, formatVector, leq, merge, vectorOf, withTime } from './vector.ts'
import type { PeerId, Vector } from './vector.ts'

export interface Clock {
  readonly sync: Vector
  /** Empty for a tombstone. For a file, usually one entry (see `update`). */
  readonly mod: Vector
  /** Empty for a tombstone; otherwise the peer and time that created this incarnation. */
  readonly create: Vector
}

/** What receiving `source`'s version should do to `dest`. */
export type Decision = 'nothing' | 'copy' | 'conflict'

/** A new entry created by `peer` at `now`. `known` is sync time it inherits (its directory's). */
export function createClock (peer: PeerId, now: number, known: Vector = EMPTY): Clock {
  const stamp = vectorOf([[peer, checkNow(now)]])
  return freeze({ sync: merge(known, stamp), mod: stamp, create: stamp })
}

/** The state of an entry a replica does not hold: deleted, or never heard of, as far as `sync`. */
export function absent (sync: Vector = EMPTY): Clock {
  return freeze({ sync, mod: EMPTY, create: EMPTY })
}

export function isTombstone (clock: Clock): boolean {
  return clock.create.length === 0
}

/**
 * A local modification of a file by `peer` at `now`. The modification vector is compressed to
 * the single entry `{peer: now}` (the paper's section on encoding modification times): every
 * earlier entry is covered by the sync time of whoever learns of this version, so comparisons of
 * `mod ≤ sync` come out the same. Directories, whose summaries merge children's modification
 * times, use `updateFull`.
 */
export function update (clock: Clock, peer: PeerId, now: number): Clock {
  requireLive(clock, 'update')
  const stamp = vectorOf([[peer, checkNow(now)]])
  return freeze({ sync: withTime(clock.sync, peer, now), mod: stamp, create: clock.create })
}

/** A local modification that keeps every other peer's modification entry (uncompressed). */
export function updateFull (clock: Clock, peer: PeerId, now: number): Clock {
  requireLive(clock, 'update')
  checkNow(now)
  return freeze({ sync: withTime(clock.sync, peer, now), mod: withTime(clock.mod, peer, now), create: clock.create })
}

/** `peer` knows its own copy as of `now` without changing it (sync time only). */
export function advanceSync (clock: Clock, peer: PeerId, now: number): Clock {
  return freeze({ ...clock, sync: withTime(clock.sync, peer, checkNow(now)) })
}

/** A local deletion by `peer` at `now`: the tombstone keeps only the sync time. */
export function remove (clock: Clock, peer: PeerId, now: number): Clock {
  return absent(withTime(clock.sync, peer, checkNow(now)))
}

/** The paper's decision, for live entries and tombstones on either side. */
export function decide (source: Clock, dest: Clock): Decision {
  const sourceDead = isTombstone(source)
  const destDead = isTombstone(dest)
  if (sourceDead && destDead) return 'nothing'
  if (destDead) {
    // Live version into a deleted (or never seen) entry.
    if (leq(source.mod, dest.sync)) return 'nothing' // dest saw this version, then deleted it
    if (!leq(source.create, dest.sync)) return 'copy' // an incarnation dest never knew: new
    return 'conflict' // dest deleted an earlier version of what source has since modified
  }
  if (sourceDead) {
    // Deletion into a live entry: the mirror image of the case above.
    if (leq(dest.mod, source.sync)) return 'copy' // source saw dest's version, then deleted it
    if (!leq(dest.create, source.sync)) return 'nothing' // dest's incarnation is new to source
    return 'conflict'
  }
  if (leq(source.mod, dest.sync)) return 'nothing'
  if (leq(dest.mod, source.sync)) return 'copy'
  return 'conflict'
}

/**
 * The bookkeeping after a sync of one entry from `source` into `dest` decided `decision`: dest
 * now knows everything source knew (sync times merge), and after a copy it holds source's
 * version (and incarnation). A conflict must be resolved first: `CONFLICT`.
 */
export function applySync (dest: Clock, source: Clock, decision: Decision): Clock {
  if (decision === 'conflict') {
    throw new BazilError(ErrorCode.CONFLICT, `unresolved conflict: ${formatClock(source)} into ${formatClock(dest)}`)
  }
  const sync = merge(dest.sync, source.sync)
  return decision === 'copy'
    ? freeze({ sync, mod: source.mod, create: source.create })
    : freeze({ ...dest, sync })
}

/**
 * The paper's resolutions (its figure 3) record a choice without making a new version:
 * - `resolveTheirs`: take the remote version, as a copy;
 * - `resolveOurs`: keep the local version and record the remote's knowledge, so the remote
 *   takes ours when it syncs from here.
 * They are right when one replica resolves. When two replicas may resolve the same conflict
 * (each keeping its own, say), both then hold a version the other has "seen", and the two stay
 * different with nothing left to sync: the protocol should resolve with `resolveNew`, which is a
 * new version even when its content is one side's. Choosing a live version over a deletion is
 * always `resolveNew` (these two refuse it with `INVALID`).
 */
export function resolveTheirs (local: Clock, remote: Clock): Clock {
  if (isTombstone(local) && !isTombstone(remote)) {
    throw new BazilError(ErrorCode.INVALID, 'keeping a live version over a deletion is resolveNew')
  }
  return applySync(local, remote, 'copy')
}

export function resolveOurs (local: Clock, remote: Clock): Clock {
  if (!isTombstone(local) && isTombstone(remote)) {
    throw new BazilError(ErrorCode.INVALID, 'keeping a live version over a deletion is resolveNew')
  }
  return applySync(local, remote, 'nothing')
}

/**
 * Resolve a conflict with a version made by `peer` at `now` (new content, or either side's live
 * content chosen over a deletion). It supersedes both histories. If either side was deleted, or
 * the two are different incarnations, the result is a new incarnation: every replica whose
 * deletion the resolver knew then takes it as a creation, not as an edit of what it deleted.
 * (Keeping an old creation time instead would make each of those replicas report the same
 * modify/delete conflict again.)
 */
export function resolveNew (local: Clock, remote: Clock, peer: PeerId, now: number): Clock {
  const stamp = vectorOf([[peer, checkNow(now)]])
  // Two live incarnations: one of them was created after a deletion of the other, or both
  // independently; the resolver may know that deletion, so its choice is a new incarnation too.
  const reborn = isTombstone(local) || isTombstone(remote) || !equals(local.create, remote.create)
  return freeze({
    sync: merge(merge(local.sync, remote.sync), stamp),
    mod: merge(merge(local.mod, remote.mod), stamp),
    create: reborn ? stamp : local.create
  })
}

/**
 * Both sides hold identical content under concurrent histories (the same edit made twice): not
 * a conflict. The merged clock records both versions as seen, so neither side re-decides it.
 * Two different incarnations with the same content keep both creation times: a replica that
 * deleted one of them but never knew the other then takes the merged entry as new (keeping the
 * data) rather than reporting a modify/delete conflict.
 */
export function mergeIdentical (local: Clock, remote: Clock): Clock {
  requireLive(local, 'merge')
  requireLive(remote, 'merge')
  return freeze({
    sync: merge(local.sync, remote.sync),
    mod: merge(local.mod, remote.mod),
    create: merge(local.create, remote.create)
  })
}

/** Readable form for tests and logs: `{sync{A:2 B:4} mod{B:4} create{A:1}}`. */
export function formatClock (clock: Clock): string {
  return `{sync${formatVector(clock.sync)} mod${formatVector(clock.mod)} create${formatVector(clock.create)}}`
}

function requireLive (clock: Clock, what: string): void {
  if (isTombstone(clock)) throw new BazilError(ErrorCode.INVALID, `cannot ${what} a tombstone; create a new entry`)
}

function checkNow (now: number): number {
  if (!Number.isSafeInteger(now) || now < 1) {
    throw new BazilError(ErrorCode.INVALID, `a clock time must be a positive safe integer, got ${now}`)
  }
  return now
}

function freeze (clock: Clock): Clock {
  return Object.freeze(clock)
}
