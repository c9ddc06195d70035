/**
 * Directory summaries of vector time pairs (Cox & Josephson, "File Synchronization with Vector
 * Time Pairs", MIT-CSAIL-TR-2005-014): a directory's modification time is the element-wise
 * maximum of its subtree's, its sync time the element-wise minimum. If the source directory's
 * modification time is covered by the destination directory's sync time, nothing below it has
 * changed that the destination does not know, and a sync skips the whole subtree.
 *
 * The directory's own clock stands for its list of names: an entry a replica does not hold at
 * all inherits that clock's sync time (`absent(own.sync)`), so a directory synced only in part
 * keeps a low sync time (the paper's figure 12).
 *
 * A tombstone has no modification time, but its deletion happened within its sync time, so a
 * tombstone child adds its sync time to the summary's modification time. That bound is what
 * makes a deletion applied from elsewhere (which moves no local modification time) visible to
 * the next replica; it is conservative, so a directory holding tombstones is descended until the
 * other side's knowledge covers them. Dropping tombstones every peer has seen is the protocol's
 * business (a covered tombstone and an absent entry decide alike).
 *
 * Children can store their sync time relative to their directory's (`compressSync`), since most
 * entries of a tree share one sync time; the effective sync time is the merge along the path
 * (`expandSync`). A sync that skips a subtree then only raises the directory's sync time.
 */
import { isTombstone } from './clock.ts'
import type { Clock } from './clock.ts'
import { EMPTY, leq, meet, merge, rebase } from './vector.ts'

/**
 * The summary clock of a directory: `own` is the directory entry's own clock (its names and
 * attributes), `children` the effective (expanded) clocks or summaries of the children it holds,
 * tombstones included.
 */
export function summarize (own: Clock | undefined, children: Iterable<Clock>): Clock {
  let mod = own?.mod ?? EMPTY
  let sync = own?.sync
  for (const child of children) {
    mod = merge(mod, isTombstone(child) ? child.sync : child.mod)
    sync = sync === undefined ? child.sync : meet(sync, child.sync)
  }
  return Object.freeze({ sync: sync ?? EMPTY, mod, create: own?.create ?? EMPTY })
}

/**
 * Whether a sync from `source` into `dest` can skip the whole subtree (both are summaries of a
 * directory that exists on both sides; a deleted directory is an entry of its parent and goes
 * through `decide`).
 */
export function canSkip (source: Clock, dest: Clock): boolean {
  return leq(source.mod, dest.sync)
}

/** `child` storing only the part of its sync time that its directory's does not cover. */
export function compressSync (child: Clock, parentSync: Clock['sync']): Clock {
  return Object.freeze({ ...child, sync: rebase(child.sync, parentSync) })
}

/** `child`'s effective clock, from its stored (compressed) sync time and its directory's. */
export function expandSync (child: Clock, parentSync: Clock['sync']): Clock {
  return Object.freeze({ ...child, sync: merge(child.sync, parentSync) })
}
