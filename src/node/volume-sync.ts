/**
 * The sync engine (src/sync/engine.ts) over the mounted volume: the volume's metadata is the
 * engine's tree, and the engine's state lives in the same level database under `s:` keys,
 * written in the same batch as the namespace change it belongs to — a local change and its
 * change-log record, or an applied page of remote records and the cursor past it, are one
 * atomic write (a crash in the middle of either leaves both or neither).
 *
 *   s:e:<id>   the entry's sync record (clock, replicated state, log seq, where it is shown)
 *   s:h:<id>   a remote record held until the entry is free (a file open for writing)
 *   s:c:<peer> how far this node has applied that peer's log
 *   s:n        this node's logical clock
 *
 * Every local change reaches the engine through MetaStore.beforeCommit (inside the volume
 * actor); remote records are applied through Volume.exclusive, so the two never interleave.
 */
import { BazilError, ErrorCode } from '../errors.ts'
import type { Change, Entry, MetaStore } from '../fs/meta.ts'
import { ROOT_INO, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../fs/meta.ts'
import type { Volume } from '../fs/volume.ts'
import { clockFromJSON, clockToJSON } from '../sync/codec.ts'
import { SyncEngine } from '../sync/engine.ts'
import type { ApplyReport, ConflictInfo, EntrySync, SyncJournal, SyncTree } from '../sync/engine.ts'
import { decodeRecord, encodeRecord, ROOT_ID } from '../sync/record.ts'
import type { EntryData, EntryRecord } from '../sync/record.ts'
import { logger } from '../util/log.ts'

const log = logger('bazil:sync')

export interface ConflictReport {
  /** Path of the entry as shown in the volume. */
  path: string
  /** copy: the other version of a file changed on two devices; name: an entry shown under another name than it has. */
  kind: 'copy' | 'name'
  /** For a copy: the path of the version that kept the name (if it still exists). */
  original?: string
  /** For a name: the name it wants. */
  wants?: string
}

export class VolumeSync {
  readonly engine: SyncEngine
  readonly #meta: MetaStore
  readonly #volume: Volume
  /** The change the engine's tree and journal write into, while one is being built. */
  #change: Change | undefined
  #applying = false
  readonly #idToIno = new Map<string, number>()
  readonly #listeners: Array<() => void> = []

  private constructor (peerId: string, volume: Volume) {
    this.#volume = volume
    this.#meta = volume.meta
    const tree = this.#tree()
    this.engine = new SyncEngine(peerId, tree, this.#journal())
  }

  static async open (peerId: string, volume: Volume): Promise<VolumeSync> {
    const sync = new VolumeSync(peerId, volume)
    await sync.#load()
    volume.meta.beforeCommit = change => { sync.#onLocalChange(change) }
    return sync
  }

  /** Called after this node's change log grew (a local change). */
  onLocalChange (listener: () => void): void {
    this.#listeners.push(listener)
  }

  /** Applies a page of `peer`'s log (encoded records) and moves its cursor to `lastSeq`. */
  async apply (peer: string, records: EntryRecord[], lastSeq: number): Promise<ApplyReport> {
    return await this.#volume.exclusive(async () => await this.#inChange(() => this.engine.apply(peer, records, lastSeq)))
  }

  /** Retries held records (a file was closed). */
  async retryHeld (): Promise<ApplyReport> {
    return await this.#volume.exclusive(async () => await this.#inChange(() => this.engine.retryHeld()))
  }

  /** Conflict copies and entries shown under another name, with their paths. */
  conflicts (): ConflictReport[] {
    return this.engine.conflicts().map((c: ConflictInfo) => {
      const path = this.#pathOf(c.id) ?? `(not shown yet) ${c.data.name}`
      if (c.kind === 'copy') {
        const original = c.conflictOf === undefined ? undefined : this.#pathOf(c.conflictOf)
        return { path, kind: 'copy' as const, ...(original !== undefined ? { original } : {}) }
      }
      return { path, kind: 'name' as const, wants: c.data.name }
    }).sort((a, b) => (a.path < b.path ? -1 : 1))
  }

  decode (body: Uint8Array): EntryRecord {
    return decodeRecord(body)
  }

  // ---- the engine's tree over the volume ------------------------------------------------

  #tree (): SyncTree {
    return {
      get: id => {
        const entry = this.#entryOf(id)
        return entry === undefined ? undefined : this.#dataOf(entry)
      },
      lookup: (parent, name) => {
        const parentIno = this.#inoOf(parent)
        const ino = parentIno === undefined ? undefined : this.#meta.children.get(parentIno)?.get(name)
        return ino === undefined ? undefined : this.#idOfIno(ino)
      },
      children: id => {
        const ino = this.#inoOf(id)
        return [...(ino === undefined ? [] : this.#meta.children.get(ino)?.values() ?? [])].map(child => this.#idOfIno(child))
      },
      busy: id => {
        const ino = this.#idToIno.get(id)
        return ino !== undefined && (this.#volume.files.inode(ino)?.staged ?? null) !== null
      },
      put: (id, data) => { this.#put(id, data) },
      remove: id => { this.#remove(id) }
    }
  }

  #put (id: string, data: EntryData): void {
    const change = this.#requireChange()
    const parentIno = this.#inoOf(data.parent)
    if (parentIno === undefined) throw new BazilError(ErrorCode.NOT_FOUND, `sync: no directory ${data.parent} for ${id}`)
    const now = Date.now()
    const typeBits = data.type === 'dir' ? S_IFDIR : data.type === 'symlink' ? S_IFLNK : S_IFREG
    const dir = data.type === 'dir'
    let ino = this.#idToIno.get(id)
    const existing = ino === undefined ? undefined : this.#meta.entries.get(ino)
    const fields = {
      mode: typeBits | data.perm,
      uid: data.uid,
      gid: data.gid,
      ...(dir ? {} : { size: data.size, mtimeMs: data.mtimeMs }),
      ...(data.type === 'symlink' ? { target: data.target } : {}),
      ...(data.type === 'file' ? { content: data.content ?? null } : {}),
      ctimeMs: now
    }
    if (existing === undefined || ino === undefined) {
      ino = this.#meta.allocIno(change)
      const entry: Entry = {
        ino, id, size: dir ? 4096 : 0, nlink: dir ? 2 : 1, atimeMs: now, mtimeMs: now, birthMs: now, ...fields,
        ...(data.xattrs !== undefined ? { xattrs: data.xattrs } : {})
      }
      change.putEntry(entry)
      change.link(parentIno, data.name, ino)
      this.#idToIno.set(id, ino)
      this.#touchDir(change, parentIno, now, dir ? 1 : 0)
      return
    }
    const updated: Entry = { ...existing, ...fields }
    if (data.xattrs !== undefined) updated.xattrs = data.xattrs
    else delete updated.xattrs
    change.putEntry(updated)
    const place = this.#meta.names.get(ino)?.[0]
    if (place === undefined || place.parent !== parentIno || place.name !== data.name) {
      if (place !== undefined) change.unlink(place.parent, place.name)
      change.link(parentIno, data.name, ino)
      if (place !== undefined && place.parent !== parentIno) this.#touchDir(change, place.parent, now, dir ? -1 : 0)
      this.#touchDir(change, parentIno, now, dir && place?.parent !== parentIno ? 1 : 0)
    }
  }

  #remove (id: string): void {
    const change = this.#requireChange()
    const ino = this.#idToIno.get(id)
    const entry = ino === undefined ? undefined : this.#meta.entries.get(ino)
    if (ino === undefined || entry === undefined) return
    const dir = (entry.mode & S_IFMT) === S_IFDIR
    const now = Date.now()
    for (const { parent, name } of [...(this.#meta.names.get(ino) ?? [])]) {
      change.unlink(parent, name)
      this.#touchDir(change, parent, now, dir ? -1 : 0)
    }
    if (this.#volume.files.isOpen(ino)) {
      // Open: it lives on without names until the last handle closes (the volume reaps it).
      change.putEntry({ ...(this.#meta.get(ino)), nlink: 0, ctimeMs: now })
    } else {
      change.delEntry(ino)
      this.#idToIno.delete(id)
    }
  }

  #touchDir (change: Change, ino: number, now: number, nlinkDelta: number): void {
    const dir = this.#meta.entries.get(ino)
    if (dir !== undefined) change.putEntry({ ...dir, nlink: dir.nlink + nlinkDelta, mtimeMs: now, ctimeMs: now })
  }

  /** What sync carries of a volume entry (see record.ts), or undefined if it has no name. */
  #dataOf (entry: Entry): EntryData | undefined {
    const place = this.#meta.names.get(entry.ino)?.[0]
    if (place === undefined || entry.nlink === 0) return undefined
    const kind = entry.mode & S_IFMT
    const type = kind === S_IFDIR ? 'dir' : kind === S_IFLNK ? 'symlink' : 'file'
    return {
      type,
      parent: this.#idOfIno(place.parent),
      name: place.name,
      perm: entry.mode & 0o7777,
      uid: entry.uid,
      gid: entry.gid,
      mtimeMs: type === 'dir' ? 0 : Math.trunc(entry.mtimeMs),
      size: type === 'dir' ? 0 : entry.size,
      ...(type === 'symlink' && entry.target !== undefined ? { target: entry.target } : {}),
      ...(type === 'file' ? { content: entry.content ?? null } : {}),
      ...(entry.xattrs !== undefined && Object.keys(entry.xattrs).length > 0 ? { xattrs: entry.xattrs } : {})
    }
  }

  #entryOf (id: string): Entry | undefined {
    const ino = this.#inoOf(id)
    return ino === undefined ? undefined : this.#meta.entries.get(ino)
  }

  #inoOf (id: string): number | undefined {
    return id === ROOT_ID ? ROOT_INO : this.#idToIno.get(id)
  }

  #idOfIno (ino: number): string {
    return ino === ROOT_INO ? ROOT_ID : (this.#meta.entries.get(ino)?.id ?? `missing-${ino}`)
  }

  #pathOf (id: string): string | undefined {
    const parts: string[] = []
    for (let ino = this.#inoOf(id), hops = 0; ino !== undefined && ino !== ROOT_INO; hops++) {
      const place = this.#meta.names.get(ino)?.[0]
      if (place === undefined || hops > 10_000) return undefined
      parts.unshift(place.name)
      ino = place.parent
    }
    return '/' + parts.join('/')
  }

  // ---- persistence --------------------------------------------------------------------

  #journal (): SyncJournal {
    return {
      entry: (id, sync) => {
        const change = this.#requireChange()
        if (sync === undefined) change.del(`s:e:${id}`)
        else change.put(`s:e:${id}`, JSON.stringify({ ...sync, clock: clockToJSON(sync.clock) }))
      },
      log: () => {}, // the log is the seq of each entry record, rebuilt at load
      held: (id, record) => {
        const change = this.#requireChange()
        if (record === undefined) change.del(`s:h:${id}`)
        else change.put(`s:h:${id}`, Buffer.from(encodeRecord(record)).toString('base64'))
      },
      cursor: (peer, seq) => { this.#requireChange().put(`s:c:${peer}`, String(seq)) },
      counter: value => { this.#requireChange().put('s:n', String(value)) }
    }
  }

  async #load (): Promise<void> {
    for (const entry of this.#meta.entries.values()) if (entry.ino !== ROOT_INO) this.#idToIno.set(entry.id, entry.ino)
    const entries: Array<[string, EntrySync]> = []
    const held: EntryRecord[] = []
    const cursors: Array<[string, number]> = []
    let counter = 0
    for await (const [key, value] of this.#meta.scan('s:')) {
      if (key.startsWith('s:e:')) {
        const raw = JSON.parse(value) as EntrySync & { clock: unknown }
        entries.push([key.slice(4), { ...raw, clock: clockFromJSON(raw.clock) }])
      } else if (key.startsWith('s:h:')) {
        held.push(decodeRecord(Buffer.from(value, 'base64')))
      } else if (key.startsWith('s:c:')) {
        cursors.push([key.slice(4), Number(value)])
      } else if (key === 's:n') {
        counter = Number(value)
      }
    }
    this.#change = this.#meta.change()
    try {
      this.engine.load({ entries, held, cursors, counter })
      // Entries made before sync existed (or while it was off) get their first version now.
      const known = new Set(entries.map(([id]) => id))
      for (const entry of this.#meta.entries.values()) {
        if (entry.ino !== ROOT_INO && !known.has(entry.id)) this.engine.noteLocal(entry.id)
      }
      this.#applying = true
      await this.#meta.commit(this.#change, { sync: true })
    } finally {
      this.#applying = false
      this.#change = undefined
    }
    log('sync state: %d entries, head %d, %d waiting', entries.length, this.engine.head(), this.engine.waiting())
  }

  #onLocalChange (change: Change): void {
    if (this.#applying) return
    const head = this.engine.head()
    this.#change = change
    try {
      for (const [ino, id] of [...change.touched]) {
        if (ino === ROOT_INO) continue
        if (this.#meta.entries.has(ino)) this.#idToIno.set(id, ino)
        this.engine.noteLocal(id)
        if (!this.#meta.entries.has(ino) && this.#idToIno.get(id) === ino) this.#idToIno.delete(id)
      }
    } finally {
      this.#change = undefined
    }
    if (this.engine.head() !== head) for (const listener of this.#listeners) listener()
  }

  async #inChange<T> (fn: () => T): Promise<T> {
    this.#change = this.#meta.change()
    try {
      const result = fn()
      this.#applying = true
      await this.#meta.commit(this.#change)
      return result
    } finally {
      this.#applying = false
      this.#change = undefined
    }
  }

  #requireChange (): Change {
    if (this.#change === undefined) throw new BazilError(ErrorCode.CLOSED, 'sync wrote outside a change')
    return this.#change
  }
}
