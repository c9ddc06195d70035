/**
 * The sync engine of one replica: it turns local changes of the tree into clock updates and
 * change-log records, and decides and applies the records it pulls from peers, with the
 * vector-time-pair rule of Cox & Josephson, "File Synchronization with Vector Time Pairs"
 * (MIT-CSAIL-TR-2005-014) — see clock.ts and decide.ts. It is pure: the tree it changes and
 * the store it persists to are interfaces (the volume implements them in src/node/sync.ts;
 * tests use memory), and every call runs to completion without waiting.
 *
 * The change log: every record this replica holds (its own changes and what it applied from
 * others, so changes travel through any chain of devices) has one sequence number, renewed
 * whenever the record changes; a peer pulls what is after its cursor. Work is proportional to
 * what changed, not to the size of the tree.
 *
 * Outcomes that every replica reaches the same way, whatever order records arrive in:
 * - modify/modify (a file or symlink changed on both sides): the later version (laterVersion)
 *   keeps the name; the other becomes a conflict copy next to it, whose id, name and clock are
 *   functions of the two versions, so every replica makes the same copy. Directories keep the
 *   later version's attributes and place (nothing to copy: their children are entries too).
 * - modify/delete: the live version wins (no write is ever lost to a delete), as a new version
 *   made by the replica that decides (resolveNew); replicas deciding the same case merge their
 *   identical results.
 * - two entries wanting one name (e.g. both devices created `notes.txt`): the smaller id keeps
 *   it, the others are shown as `NAME.sync-conflict-<id>` until renamed (their record keeps
 *   the wanted name, so the choice is remade wherever the group changes).
 * - a directory deleted on one side while the other added or moved something into it: the
 *   side that has the newcomer brings the directory back (a new version), with the newcomer.
 * Records whose parent is missing or busy (a file open for writing) wait in `held` and are
 * retried after every batch and when the tree says so (`retryHeld`).
 */
import type { Clock } from './clock.ts'
import { absent, applySync, createClock, mergeIdentical, remove, resolveNew, update } from './clock.ts'
import { decideEntry } from './decide.ts'
import type { EntryState } from './decide.ts'
import {
  collisionName, conflictCopyId, conflictName, encodeRecord, laterVersion, ROOT_ID, sameContent, sameData
} from './record.ts'
import type { EntryData, EntryRecord } from './record.ts'
import { merge } from './vector.ts'
import type { PeerId } from './vector.ts'

/** What the engine needs of the tree it keeps in sync (the mounted volume, or memory in tests). */
export interface SyncTree {
  /** A live entry by stable id, with the place it actually has (parent id and name). */
  get: (id: string) => EntryData | undefined
  /** The entry at `name` in directory `parent`. */
  lookup: (parent: string, name: string) => string | undefined
  /** Ids of a directory's entries. */
  children: (id: string) => string[]
  /** True while the entry must not be changed under a local writer (an open file). */
  busy?: (id: string) => boolean
  /** Creates or changes the entry (content, attributes, place); the parent exists, the place is free or its own. */
  put: (id: string, data: EntryData) => void
  /** Removes the entry (a directory is empty by then). */
  remove: (id: string) => void
}

/** The engine's own state of one entry: the record it serves and where the tree shows it. */
export interface EntrySync {
  clock: Clock
  /** The replicated state (with the wanted place); absent for a tombstone. */
  data?: EntryData
  /** Its position in this replica's change log. */
  seq: number
  /** Where the tree shows it when that differs from `data`'s place (a name collision). */
  shown?: { parent: string, name: string }
}

/** What the engine persists; the volume writes these into the batch of the same change. */
export interface SyncJournal {
  entry: (id: string, sync: EntrySync | undefined) => void
  log: (seq: number, id: string | undefined) => void
  held: (id: string, record: EntryRecord | undefined) => void
  cursor: (peer: PeerId, seq: number) => void
  counter: (value: number) => void
}

export interface SyncSnapshot {
  entries: Iterable<[string, EntrySync]>
  held?: Iterable<EntryRecord>
  cursors?: Iterable<[PeerId, number]>
  counter?: number
}

export interface ApplyReport {
  applied: number
  conflicts: number
  held: number
}

export interface ConflictInfo {
  id: string
  /** The entry this is a copy of (modify/modify), or absent for a name collision. */
  conflictOf?: string
  kind: 'copy' | 'name'
  data: EntryData
  shown: { parent: string, name: string }
}

const NO_JOURNAL: SyncJournal = { entry: () => {}, log: () => {}, held: () => {}, cursor: () => {}, counter: () => {} }

export class SyncEngine {
  readonly self: PeerId
  readonly #tree: SyncTree
  #journal: SyncJournal
  readonly #entries = new Map<string, EntrySync>()
  /** seq → id, ascending (a Map keeps insertion order and seqs only grow). */
  readonly #log = new Map<number, string>()
  readonly #held = new Map<string, EntryRecord>()
  readonly #cursors = new Map<PeerId, number>()
  /** "parent\0name" → ids of live entries whose record wants that place. */
  readonly #wanting = new Map<string, Set<string>>()
  #counter = 0
  #head = 0
  /** Ids whose tombstone waits for the directory to empty, with the version deleted. */
  readonly #emptying = new Map<string, EntryData>()
  /** Live records the tree cannot show yet (parent missing, a move into itself, name taken). */
  readonly #unplaced = new Set<string>()
  /**
   * Entries shown at the top because the places their records want form a cycle (concurrent
   * moves of two directories into each other): of each cycle the smallest id, everywhere.
   */
  readonly #detached = new Set<string>()

  constructor (self: PeerId, tree: SyncTree, journal: SyncJournal = NO_JOURNAL) {
    this.self = self
    this.#tree = tree
    this.#journal = journal
  }

  /** Loads persisted state (before any other call). */
  load (snapshot: SyncSnapshot): void {
    const sorted = [...snapshot.entries].sort((a, b) => a[1].seq - b[1].seq)
    for (const [id, sync] of sorted) {
      this.#entries.set(id, sync)
      this.#log.set(sync.seq, id)
      this.#head = Math.max(this.#head, sync.seq)
      if (sync.data !== undefined) this.#want(id, sync.data)
    }
    for (const record of snapshot.held ?? []) this.#held.set(record.id, record)
    for (const [id, sync] of this.#entries) {
      if (sync.data === undefined) continue
      if (this.#tree.get(id) === undefined) this.#unplaced.add(id)
      if (sync.shown?.parent === ROOT_ID && sync.data.parent !== ROOT_ID) this.#detached.add(id)
    }
    for (const [peer, seq] of snapshot.cursors ?? []) this.#cursors.set(peer, seq)
    this.#counter = Math.max(snapshot.counter ?? 0, ...sorted.flatMap(([, s]) => [...s.clock.sync].filter(([p]) => p === this.self).map(([, t]) => t)))
  }

  /** Where persistence goes from now on (the volume sets it per batch). */
  setJournal (journal: SyncJournal): void {
    this.#journal = journal
  }

  head (): number { return this.#head }
  cursor (peer: PeerId): number { return this.#cursors.get(peer) ?? 0 }
  entry (id: string): EntrySync | undefined { return this.#entries.get(id) }
  entries (): IterableIterator<[string, EntrySync]> { return this.#entries.entries() }
  /** Records waiting: held remote records (busy entries) and entries the tree cannot show yet. */
  waiting (): number { return this.#held.size + this.#unplaced.size }

  /** Records after `since`, oldest first: at most `limit`, and within `maxBytes` (at least one). */
  read (since: number, limit: number, maxBytes = Infinity): Array<{ seq: number, body: Uint8Array }> {
    const out: Array<{ seq: number, body: Uint8Array }> = []
    let bytes = 0
    for (const [seq, id] of this.#log) {
      if (seq <= since) continue
      const sync = this.#entries.get(id)
      if (sync === undefined || sync.seq !== seq) continue
      const body = encodeRecord({ id, clock: sync.clock, ...(sync.data !== undefined ? { data: sync.data } : {}) })
      if (out.length > 0 && bytes + body.byteLength > maxBytes) break
      out.push({ seq, body })
      bytes += body.byteLength
      if (out.length >= limit) break
    }
    return out
  }

  /** How many records after `since` (a peer's cursor) this replica holds. */
  countAfter (since: number): number {
    let n = 0
    for (const [seq, id] of this.#log) if (seq > since && this.#entries.get(id)?.seq === seq) n++
    return n
  }

  /**
   * The tree changed entry `id` locally (or removed it): record a new version if what sync
   * carries of it changed. Call after the tree holds the new state.
   */
  noteLocal (id: string): void {
    if (id === ROOT_ID) return
    const actual = this.#tree.get(id)
    const sync = this.#entries.get(id)
    if (actual === undefined) {
      if (sync?.data === undefined) return
      this.#unwant(id, sync.data)
      this.#store(id, { clock: remove(sync.clock, this.self, this.#tick()), seq: 0 })
      this.#vacated(sync.shown ?? sync.data)
      for (const waiting of [...this.#unplaced]) this.#materialize(waiting)
      return
    }
    let data: EntryData = { ...actual }
    let shown: EntrySync['shown']
    if (sync?.data !== undefined) {
      const movedByUser = sync.shown !== undefined
        ? !(sync.shown.parent === actual.parent && sync.shown.name === actual.name)
        : !(sync.data.parent === actual.parent && sync.data.name === actual.name)
      if (!movedByUser && sync.shown !== undefined) {
        data = { ...data, parent: sync.data.parent, name: sync.data.name }
        shown = sync.shown
      }
      // Renaming a conflict copy is how the user settles it.
      if (sync.data.conflictOf !== undefined && !movedByUser) data.conflictOf = sync.data.conflictOf
      if (sameData(sync.data, data)) return
      this.#unwant(id, sync.data)
      if (movedByUser) {
        this.#detached.delete(id)
        this.#vacated(sync.shown ?? sync.data)
      }
    }
    const clock = sync?.data !== undefined ? update(sync.clock, this.self, this.#tick()) : createClock(this.self, this.#tick(), sync?.clock.sync)
    this.#store(id, { clock, data, seq: 0, ...(shown !== undefined ? { shown } : {}) })
    this.#want(id, data)
    // Moved to a name that synced entries want too (shown elsewhere for now): the same rule
    // decides here as on every other replica.
    if ((this.#wanting.get(placeKey(data.parent, data.name))?.size ?? 0) > 1) this.#placeGroup(data.parent, data.name)
    for (const waiting of [...this.#unplaced]) this.#materialize(waiting)
  }

  /**
   * Applies records pulled from `peer` (in its log order) and moves its cursor to `lastSeq`.
   * Records that cannot be applied yet are held (persisted) and retried later.
   */
  apply (peer: PeerId, records: EntryRecord[], lastSeq: number): ApplyReport {
    const report: ApplyReport = { applied: 0, conflicts: 0, held: 0 }
    for (const record of records) {
      if (record.id === ROOT_ID) continue
      this.#receive(record, report)
    }
    this.#settle(report)
    if (lastSeq > this.cursor(peer)) {
      this.#cursors.set(peer, lastSeq)
      this.#journal.cursor(peer, lastSeq)
    }
    report.held = this.waiting()
    return report
  }

  /** Retries held records (after a file closed, say). */
  retryHeld (): ApplyReport {
    const report: ApplyReport = { applied: 0, conflicts: 0, held: 0 }
    this.#settle(report)
    report.held = this.waiting()
    return report
  }

  /** Conflict copies and entries shown under another name than they want. */
  conflicts (): ConflictInfo[] {
    const out: ConflictInfo[] = []
    for (const [id, sync] of this.#entries) {
      if (sync.data === undefined) continue
      const shown = sync.shown ?? { parent: sync.data.parent, name: sync.data.name }
      if (sync.data.conflictOf !== undefined) out.push({ id, conflictOf: sync.data.conflictOf, kind: 'copy', data: sync.data, shown })
      else if (sync.shown !== undefined) out.push({ id, kind: 'name', data: sync.data, shown })
    }
    return out
  }

  // ---- receiving ------------------------------------------------------------------------

  #receive (record: EntryRecord, report: ApplyReport): void {
    const local = this.#entries.get(record.id)
    if (this.#tree.busy?.(record.id) === true) {
      this.#hold(record)
      return
    }
    const localClock = local?.clock ?? absent()
    const localState: EntryState = local?.data !== undefined
      ? { deleted: false, type: local.data.type, clock: localClock }
      : { deleted: true, clock: localClock }
    const remoteState: EntryState = record.data !== undefined
      ? { deleted: false, type: record.data.type, clock: record.clock }
      : { deleted: true, clock: record.clock }
    const action = decideEntry(localState, remoteState, { sameContent: () => sameData(local?.data, record.data) })
    if (this.#held.delete(record.id)) this.#journal.held(record.id, undefined)
    switch (action.action) {
      case 'skip':
      case 'keep-local':
        if (local !== undefined) this.#store(record.id, { ...local, clock: applySync(local.clock, record.clock, 'nothing') }, false)
        else this.#store(record.id, { clock: applySync(localClock, record.clock, 'nothing'), seq: 0 }, false)
        return
      case 'merge':
        this.#store(record.id, { ...(local as EntrySync), clock: mergeIdentical(localClock, record.clock), seq: 0 })
        return
      case 'take-remote':
        this.#take(record.id, { clock: applySync(localClock, record.clock, 'copy'), data: record.data }, report)
        return
      case 'conflict':
        report.conflicts++
        if (action.kind === 'modify/delete') {
          // The live version wins, as a new version: keeping its old clock would carry the
          // deletion's knowledge of other versions into it (replicas could then each keep a
          // different version, each "knowing" the other's). Two replicas resolving the same
          // case make two new versions of the same data, which later merge as identical.
          const data = record.data ?? local?.data
          this.#take(record.id, { clock: resolveNew(localClock, record.clock, this.self, this.#tick()), data }, report)
          return
        }
        this.#modifyModify(record, local as EntrySync, report)
    }
  }

  #modifyModify (record: EntryRecord, local: EntrySync, report: ApplyReport): void {
    const mine = { clock: local.clock, data: local.data as EntryData }
    const theirs = { clock: record.clock, data: record.data as EntryData }
    const [winner, loser] = laterVersion(mine, theirs) === 'a' ? [mine, theirs] : [theirs, mine]
    const sync = merge(local.clock.sync, record.clock.sync)
    if (winner.data.type !== 'dir' && !sameContent(winner.data, loser.data)) {
      const copyId = conflictCopyId(record.id, loser.clock)
      const copy: EntryRecord = {
        id: copyId,
        clock: { sync, mod: loser.clock.mod, create: loser.clock.mod },
        // A function of the losing version alone, so every replica makes the same copy.
        data: { ...loser.data, name: conflictName(loser.data.name, loser.data, loser.clock), conflictOf: record.id }
      }
      const existing = this.#entries.get(copyId)
      if (existing === undefined) this.#take(copyId, { clock: copy.clock, data: copy.data }, report)
      else this.#store(copyId, { ...existing, clock: { ...existing.clock, sync: merge(existing.clock.sync, sync) } }, false)
    }
    this.#take(record.id, { clock: { sync, mod: winner.clock.mod, create: winner.clock.create }, data: winner.data }, report)
  }

  /** Adopts a new record for `id` and makes the tree show it (or leaves it unplaced). */
  #take (id: string, next: { clock: Clock, data?: EntryData | undefined }, report: ApplyReport): void {
    const previous = this.#entries.get(id)
    if (previous?.data !== undefined) this.#unwant(id, previous.data)
    const sync: EntrySync = { clock: next.clock, seq: 0, ...(next.data !== undefined ? { data: next.data } : {}) }
    this.#store(id, sync)
    if (next.data !== undefined) this.#want(id, next.data)
    report.applied++
    this.#materialize(id, previous?.data)
    if (previous?.data !== undefined) this.#vacated(previous.shown ?? previous.data)
  }

  /** Whether the tree can show `data` for `id`: its parent is a directory here, not inside it. */
  #canPlace (id: string, data: EntryData): boolean {
    if (data.parent === ROOT_ID) return true
    return this.#tree.get(data.parent)?.type === 'dir' && !this.#isWithin(data.parent, id)
  }

  /** Makes the tree agree with the record of `id`, or leaves it unplaced for #settle. */
  #materialize (id: string, previous?: EntryData): void {
    const sync = this.#entries.get(id)
    if (sync === undefined) return
    const actual = this.#tree.get(id)
    if (sync.data === undefined) {
      this.#unplaced.delete(id)
      if (actual === undefined) return
      if (actual.type === 'dir' && this.#tree.children(id).length > 0) {
        this.#emptying.set(id, previous ?? actual)
        return
      }
      this.#tree.remove(id)
      this.#vacated(actual)
      return
    }
    const cycle = this.#cycleOf(id)
    if (cycle !== undefined) {
      const head = cycle.reduce((min, x) => (x < min ? x : min))
      this.#detach(head)
      if (head === id) return
    } else if (this.#orphaned(sync.data)) {
      this.#detach(id)
      return
    } else if (this.#detached.has(id)) {
      this.#detached.delete(id)
    }
    if (!this.#canPlace(id, sync.data)) {
      this.#unplaced.add(id)
      return
    }
    this.#unplaced.delete(id)
    this.#placeGroup(sync.data.parent, sync.data.name)
  }

  /**
   * Whether the directory `data` wants is gone for good here: its record is a tombstone (or
   * not a directory) and the tree no longer shows it. Such an entry is shown at the top.
   */
  #orphaned (data: EntryData): boolean {
    if (data.parent === ROOT_ID) return false
    const parent = this.#entries.get(data.parent)
    if (parent === undefined) return false // not heard of yet: wait
    return (parent.data === undefined || parent.data.type !== 'dir') && this.#tree.get(data.parent) === undefined
  }

  /** Whether `id` must be shown at the top: it heads a cycle of wanted places, or is orphaned. */
  #mustDetach (id: string): boolean {
    const data = this.#entries.get(id)?.data
    if (data === undefined) return false
    const cycle = this.#cycleOf(id)
    if (cycle !== undefined) return cycle.every(x => x >= id)
    return this.#orphaned(data)
  }

  /** The ids on the cycle that `id`'s wanted parents form, if they do. */
  #cycleOf (id: string): string[] | undefined {
    const path: string[] = [id]
    for (let at = this.#entries.get(id)?.data?.parent; at !== undefined && at !== ROOT_ID; at = this.#entries.get(at)?.data?.parent) {
      if (at === id) return path
      if (path.includes(at) || path.length > 100_000) return undefined // a cycle further up, not through `id`
      path.push(at)
    }
    return undefined
  }

  /** Shows `id` at the top under a collision name (see #detached). */
  #detach (id: string): void {
    const data = this.#entries.get(id)?.data
    if (data === undefined) return
    const name = collisionName(data.name, id)
    const occupant = this.#tree.lookup(ROOT_ID, name)
    this.#detached.add(id)
    if (occupant !== undefined && occupant !== id) {
      this.#unplaced.add(id)
      return
    }
    this.#unplaced.delete(id)
    const target: EntryData = { ...data, parent: ROOT_ID, name }
    const actual = this.#tree.get(id)
    if (actual === undefined || !sameData(actual, target)) this.#tree.put(id, target)
    this.#setShown(id, { parent: ROOT_ID, name })
  }

  /**
   * Settles who shows under `name` in `parent`: of the placeable entries wanting it, the
   * smallest id; the others under collision names. Puts every one whose state differs.
   */
  #placeGroup (parent: string, name: string): void {
    const ids = [...(this.#wanting.get(placeKey(parent, name)) ?? [])]
      .filter(id => !this.#detached.has(id) && this.#canPlace(id, this.#entries.get(id)?.data as EntryData))
      .sort()
    // Losers first, so a loser holding the name frees it for the winner.
    for (const [i, id] of [...ids.entries()].reverse()) {
      const data = this.#entries.get(id)?.data as EntryData
      const shownName = i === 0 ? name : collisionName(name, id)
      const occupant = this.#tree.lookup(parent, shownName)
      if (occupant !== undefined && occupant !== id) {
        // Held by an entry outside the group (a directory waiting to empty, say): later.
        this.#unplaced.add(id)
        continue
      }
      this.#unplaced.delete(id)
      const actual = this.#tree.get(id)
      const target: EntryData = { ...data, name: shownName }
      if (actual === undefined || !sameData(actual, target)) this.#tree.put(id, target)
      this.#setShown(id, i === 0 ? undefined : { parent, name: shownName })
    }
  }

  #setShown (id: string, shown: EntrySync['shown']): void {
    const sync = this.#entries.get(id)
    if (sync === undefined) return
    const same = sync.shown === undefined ? shown === undefined : shown !== undefined && shown.parent === sync.shown.parent && shown.name === sync.shown.name
    if (same) return
    const next: EntrySync = { clock: sync.clock, seq: sync.seq, ...(sync.data !== undefined ? { data: sync.data } : {}), ...(shown !== undefined ? { shown } : {}) }
    this.#entries.set(id, next)
    this.#journal.entry(id, next)
  }

  /** A place was left: the entries wanting it may show there now. */
  #vacated (place: { parent: string, name: string }): void {
    if ((this.#wanting.get(placeKey(place.parent, place.name))?.size ?? 0) > 0) this.#placeGroup(place.parent, place.name)
  }

  /** Retries held records, unplaced entries and directories waiting to empty until nothing moves. */
  #settle (report: ApplyReport): void {
    for (let progress = true; progress;) {
      progress = false
      for (const record of [...this.#held.values()]) {
        if (this.#tree.busy?.(record.id) === true) continue
        this.#held.delete(record.id)
        this.#journal.held(record.id, undefined)
        this.#receive(record, report)
        progress = true
      }
      for (const id of [...this.#unplaced]) {
        this.#materialize(id)
        if (!this.#unplaced.has(id)) progress = true
      }
      for (const id of [...this.#detached]) {
        if (this.#mustDetach(id)) continue
        this.#detached.delete(id)
        this.#materialize(id)
        progress = true
      }
      for (const id of [...this.#emptying.keys()]) {
        if (this.#entries.get(id)?.data !== undefined) {
          this.#emptying.delete(id)
          continue
        }
        if (this.#tree.children(id).length === 0) {
          this.#emptying.delete(id)
          this.#materialize(id)
          progress = true
        }
      }
    }
    // A directory still holding entries its deleter did not know comes back, with them, as a
    // new version (so the deleting side takes it as a new incarnation).
    for (const [id, deleted] of this.#emptying) {
      const sync = this.#entries.get(id)
      if (sync === undefined || sync.data !== undefined) continue
      this.#store(id, { clock: resolveNew(sync.clock, sync.clock, this.self, this.#tick()), data: deleted, seq: 0 })
      this.#want(id, deleted)
      this.#materialize(id)
      report.conflicts++
    }
    this.#emptying.clear()
  }

  #hold (record: EntryRecord): void {
    this.#held.set(record.id, record)
    this.#journal.held(record.id, record)
  }

  /** Whether `candidate` is `ancestor` or inside it, in the tree as it stands. */
  #isWithin (candidate: string, ancestor: string): boolean {
    for (let at: string | undefined = candidate, hops = 0; at !== undefined && at !== ROOT_ID && hops < 100_000; hops++) {
      if (at === ancestor) return true
      at = this.#tree.get(at)?.parent
    }
    return false
  }

  // ---- bookkeeping ----------------------------------------------------------------------

  /** Stores `sync` for `id`; with `relog`, as a new record at the head of the log. */
  #store (id: string, sync: EntrySync, relog = true): void {
    const previous = this.#entries.get(id)
    let seq = previous?.seq ?? 0
    if (relog || previous === undefined) {
      if (previous !== undefined && previous.seq > 0) {
        this.#log.delete(previous.seq)
        this.#journal.log(previous.seq, undefined)
      }
      seq = ++this.#head
      this.#log.set(seq, id)
      this.#journal.log(seq, id)
    }
    const next: EntrySync = { ...sync, seq }
    if (next.data === undefined) delete next.shown
    this.#entries.set(id, next)
    this.#journal.entry(id, next)
  }

  #want (id: string, data: EntryData): void {
    const key = placeKey(data.parent, data.name)
    let set = this.#wanting.get(key)
    if (set === undefined) { set = new Set(); this.#wanting.set(key, set) }
    set.add(id)
  }

  #unwant (id: string, data: EntryData): void {
    const key = placeKey(data.parent, data.name)
    const set = this.#wanting.get(key)
    set?.delete(id)
    if (set?.size === 0) this.#wanting.delete(key)
  }

  #tick (): number {
    this.#counter++
    this.#journal.counter(this.#counter)
    return this.#counter
  }
}

function placeKey (parent: string, name: string): string {
  return `${parent}\0${name}`
}

