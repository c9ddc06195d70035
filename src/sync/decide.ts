/**
 * The sync decision for one entry, in the terms the sync protocol acts on: given the local and
 * the remote state of an entry (its clock, whether it is live or a tombstone, its type), what to
 * do. The clock rule is the vector-time-pair rule of Cox & Josephson, "File Synchronization with
 * Vector Time Pairs" (MIT-CSAIL-TR-2005-014), in `clock.ts`; this module names the outcomes and
 * the kinds of conflict, and lets identical concurrent changes through.
 *
 * - `skip`: the remote tells us nothing new and we are not ahead of it (record its sync time);
 * - `keep-local`: the remote's version is one we already superseded (record its sync time;
 *   the remote will take ours when it syncs from us);
 * - `take-remote`: the remote's version (an edit, a creation or a deletion) supersedes ours;
 * - `merge`: both changed concurrently to the same content: keep the bytes, merge the clocks;
 * - `conflict`: both changed since they last agreed. Kinds: `modify/modify`, `modify/delete`
 *   (one side deleted a version the other has since changed; `deleted` says which side) and
 *   `file/directory` (live on both sides with different types, e.g. file and directory).
 */
import { BazilError, ErrorCode } from '../errors.ts'
import { applySync, decide, isTombstone, mergeIdentical } from './clock.ts'
import type { Clock } from './clock.ts'
import { leq } from './vector.ts'

export type EntryType = 'file' | 'dir' | 'symlink'

export type EntryState =
  | { readonly deleted: false, readonly type: EntryType, readonly clock: Clock }
  | { readonly deleted: true, readonly clock: Clock }

export type ConflictKind = 'modify/modify' | 'modify/delete' | 'file/directory'

export type SyncAction =
  | { readonly action: 'skip' }
  | { readonly action: 'keep-local' }
  | { readonly action: 'take-remote' }
  | { readonly action: 'merge' }
  | { readonly action: 'conflict', readonly kind: ConflictKind, readonly deleted?: 'local' | 'remote' }

export interface DecideOptions {
  /**
   * Whether the two live versions hold the same content (same type, content root, mode,
   * target...); the caller knows what "same" means. Asked only when the clocks conflict.
   */
  readonly sameContent?: boolean | (() => boolean)
}

/** What to do with the remote state of an entry, given the local one. */
export function decideEntry (local: EntryState, remote: EntryState, options: DecideOptions = {}): SyncAction {
  checkState(local, 'local')
  checkState(remote, 'remote')
  const decision = decide(remote.clock, local.clock)
  if (decision === 'copy') return { action: 'take-remote' }
  if (decision === 'nothing') {
    if (local.deleted && remote.deleted) return { action: 'skip' }
    // We deleted the remote's version: it will take the deletion from us.
    if (local.deleted) return { action: 'keep-local' }
    // Ahead of the remote when it has not seen our version; it will take it from us.
    return { action: leq(local.clock.mod, remote.clock.sync) ? 'skip' : 'keep-local' }
  }
  if (local.deleted) return { action: 'conflict', kind: 'modify/delete', deleted: 'local' }
  if (remote.deleted) return { action: 'conflict', kind: 'modify/delete', deleted: 'remote' }
  if (local.type !== remote.type) return { action: 'conflict', kind: 'file/directory' }
  const same = typeof options.sameContent === 'function' ? options.sameContent() : options.sameContent === true
  return same ? { action: 'merge' } : { action: 'conflict', kind: 'modify/modify' }
}

/**
 * The local clock after acting on `action`. A conflict has no clock until it is resolved
 * (`CONFLICT` here): resolve with `resolveNew` from clock.ts, a new version even when its
 * content is one side's, since other replicas may resolve the same conflict too.
 */
export function clockAfter (local: Clock, remote: Clock, action: SyncAction): Clock {
  switch (action.action) {
    case 'skip':
    case 'keep-local':
      return applySync(local, remote, 'nothing')
    case 'take-remote':
      return applySync(local, remote, 'copy')
    case 'merge':
      return mergeIdentical(local, remote)
    case 'conflict':
      throw new BazilError(ErrorCode.CONFLICT, `unresolved ${action.kind} conflict`)
  }
}

function checkState (state: EntryState, side: string): void {
  if (state.deleted !== isTombstone(state.clock)) {
    throw new BazilError(ErrorCode.INVALID, `${side} entry is ${state.deleted ? 'deleted' : 'live'} but its clock says otherwise`)
  }
}
