/**
 * The volume's metadata in level: entries (inodes with stable ids) and directory entries.
 * Keys: `e:<ino>` → Entry JSON; `d:<parent ino>:<name>` → child ino; `m:nextIno` → number.
 * The whole namespace is also held in memory (loaded on open) so lookups never wait on disk.
 * Every change is appended to the write-ahead log (meta-log.ts) before the operation returns,
 * which makes it safe from a crash of the daemon; level batches follow behind, each taking
 * every change that queued while the previous one was written. A `sync` commit (fsync) writes
 * everything queued in one level batch with `sync: true` before it returns.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Level } from 'level'
import { BazilError, ErrorCode, fromSystemError } from '../errors.ts'
import type { ContentRef } from '../cas/manifest.ts'
import { logger } from '../util/log.ts'
import { MetaLog } from './meta-log.ts'
import type { BatchOp } from './meta-log.ts'

const log = logger('bazil:meta')
/** The log file inside the level dir (leveldb leaves names it does not know alone). */
const LOG_NAME = 'BAZIL-WAL'
/** Past this many bytes, a commit waits for level to catch up and empties the log. */
const LOG_LIMIT = 8 * 1024 * 1024
/** The log is emptied once level has caught up and it holds more than this. */
const LOG_CLEAR = 1024 * 1024
/** How long a change waits in the log for others to share its level batch. */
const WRITE_BEHIND_MS = 20

export const ROOT_INO = 1
export const S_IFMT = 0o170000
export const S_IFREG = 0o100000
export const S_IFDIR = 0o040000
export const S_IFLNK = 0o120000

export interface Entry {
  ino: number
  /** Stable id (hex, 16 random bytes): survives renames, and is the entry's identity for sync. */
  id: string
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  atimeMs: number
  mtimeMs: number
  ctimeMs: number
  birthMs: number
  target?: string
  content?: ContentRef | null
  /** name → base64 value */
  xattrs?: Record<string, string>
}

export function isDir (e: Entry): boolean { return (e.mode & S_IFMT) === S_IFDIR }
export function isFile (e: Entry): boolean { return (e.mode & S_IFMT) === S_IFREG }
export function isSymlink (e: Entry): boolean { return (e.mode & S_IFMT) === S_IFLNK }

/** A set of changes applied to memory at once and written to level in one batch. */
export class Change {
  readonly ops: BatchOp[] = []
  /** Entries this change created, changed, moved or removed: ino → stable id. */
  readonly touched = new Map<number, string>()
  constructor (private readonly meta: MetaStore) {}

  putEntry (entry: Entry): void {
    this.meta.entries.set(entry.ino, entry)
    this.touched.set(entry.ino, entry.id)
    if (entry.xattrs !== undefined) this.meta.onXattrs?.(entry)
    this.ops.push({ type: 'put', key: `e:${entry.ino}`, value: JSON.stringify(entry) })
  }

  delEntry (ino: number): void {
    const id = this.meta.entries.get(ino)?.id
    if (id !== undefined) this.touched.set(ino, id)
    this.meta.entries.delete(ino)
    this.meta.children.delete(ino)
    this.ops.push({ type: 'del', key: `e:${ino}` })
  }

  link (parent: number, name: string, ino: number): void {
    this.meta.dir(parent).set(name, ino)
    this.meta.addName(ino, parent, name)
    this.touch(ino)
    this.ops.push({ type: 'put', key: `d:${parent}:${name}`, value: String(ino) })
  }

  unlink (parent: number, name: string): void {
    const ino = this.meta.children.get(parent)?.get(name)
    this.meta.dir(parent).delete(name)
    if (ino !== undefined) {
      this.meta.dropName(ino, parent, name)
      this.touch(ino)
    }
    this.ops.push({ type: 'del', key: `d:${parent}:${name}` })
  }

  /** A key of a layer above (not `e:`, `d:` or `m:`), written in this batch. */
  put (key: string, value: string): void {
    this.ops.push({ type: 'put', key, value })
  }

  del (key: string): void {
    this.ops.push({ type: 'del', key })
  }

  private touch (ino: number): void {
    const id = this.meta.entries.get(ino)?.id
    if (id !== undefined) this.touched.set(ino, id)
  }
}

export class MetaStore {
  readonly entries = new Map<number, Entry>()
  readonly children = new Map<number, Map<string, number>>()
  /** Reverse of `children`: the names (parent ino, name) of each entry, in the order made. */
  readonly names = new Map<number, Array<{ parent: number, name: string }>>()
  /**
   * Called with every change just before it is written (inside the volume actor), so a layer
   * above can add its own keys to the batch (sync: clocks and the change log).
   */
  beforeCommit: ((change: Change) => void) | undefined
  /** Called for every entry put with extended attributes, whoever changes it (see Volume.watchXattr). */
  onXattrs: ((entry: Entry) => void) | undefined
  private nextIno = ROOT_INO + 1
  /** Changes in the log and not yet in level, in order. */
  private pending: BatchOp[] = []
  /** The level batches, one at a time. */
  private writes: Promise<void> = Promise.resolve()
  private writingBehind = false
  /** Why the last batch written behind failed; the next commit retries it and reports. */
  private failure: unknown
  private closed = false

  private constructor (private readonly db: Level<string, string>, private readonly log: MetaLog) {}

  static async open (dir: string, owner: { uid: number, gid: number }): Promise<MetaStore> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' })
    try {
      await db.open()
    } catch (err) {
      throw fromSystemError((err as { cause?: unknown }).cause ?? err, `opening the metadata database in ${dir}`)
    }
    let opened: { log: MetaLog, records: BatchOp[][] }
    try {
      opened = MetaLog.open(join(dir, LOG_NAME))
      // Changes a crash left in the log only: into level, durably, before the log is emptied.
      if (opened.records.length > 0) {
        await db.batch(opened.records.flat(), { sync: true })
        log('replayed %d changes from the log', opened.records.length)
      }
      opened.log.clear()
    } catch (err) {
      await db.close()
      throw fromSystemError((err as { cause?: unknown }).cause ?? err, `replaying the metadata log in ${dir}`)
    }
    const meta = new MetaStore(db, opened.log)
    await meta.load(owner)
    return meta
  }

  private async load (owner: { uid: number, gid: number }): Promise<void> {
    for await (const [key, value] of this.db.iterator()) {
      if (key.startsWith('e:')) {
        const entry = JSON.parse(value) as Entry
        this.entries.set(entry.ino, entry)
        this.nextIno = Math.max(this.nextIno, entry.ino + 1)
      } else if (key.startsWith('d:')) {
        const second = key.indexOf(':', 2)
        const parent = Number(key.slice(2, second))
        const name = key.slice(second + 1)
        this.dir(parent).set(name, Number(value))
        this.addName(Number(value), parent, name)
      } else if (key === 'm:nextIno') {
        this.nextIno = Math.max(this.nextIno, Number(value))
      }
    }
    if (!this.entries.has(ROOT_INO)) {
      const now = Date.now()
      const change = this.change()
      change.putEntry({
        ino: ROOT_INO, id: randomBytes(16).toString('hex'), mode: S_IFDIR | 0o755, uid: owner.uid, gid: owner.gid,
        size: 4096, nlink: 2, atimeMs: now, mtimeMs: now, ctimeMs: now, birthMs: now
      })
      await this.commit(change, { sync: true })
    }
  }

  change (): Change { return new Change(this) }

  /**
   * Records a change (already applied in memory): in the log at once, in level soon after, or
   * durably in level before returning with `sync`.
   */
  async commit (change: Change, options: { sync?: boolean } = {}): Promise<void> {
    if (change.touched.size > 0) this.beforeCommit?.(change)
    if (change.ops.length === 0 && options.sync !== true) return
    if (this.failure !== undefined) {
      this.failure = undefined
      await this.writeBatch(false) // throws again if level still fails
    }
    if (change.ops.length > 0) {
      if (this.log.size > LOG_LIMIT) await this.writeBatch(false)
      this.log.append(change.ops)
      for (const op of change.ops) this.pending.push(op)
    }
    if (options.sync === true) await this.writeBatch(true)
    else this.writeBehind()
  }

  /**
   * Starts writing pending changes to level soon, unless that is under way. The short delay
   * lets a burst of changes share a batch (and lastPerKey fold them).
   */
  private writeBehind (): void {
    if (this.writingBehind) return
    this.writingBehind = true
    void (async () => {
      try {
        await new Promise(resolve => setTimeout(resolve, WRITE_BEHIND_MS))
        while (this.pending.length > 0 && this.failure === undefined && !this.closed) await this.writeBatch(false)
      } catch (err) {
        this.failure = err
        log.error('writing metadata behind the log failed (the next change retries): %O', err)
      } finally {
        this.writingBehind = false
      }
    })()
  }

  /** Writes every pending change in one level batch (after the batch running now, if any). */
  private async writeBatch (sync: boolean): Promise<void> {
    const run = this.writes.then(async () => {
      const ops = this.pending
      this.pending = []
      if (ops.length === 0 && !sync) return
      try {
        await this.db.batch(ops.length > 0 ? lastPerKey(ops) : [{ type: 'put', key: 'm:nextIno', value: String(this.nextIno) }], { sync })
      } catch (err) {
        this.pending = ops.concat(this.pending)
        throw fromSystemError((err as { cause?: unknown }).cause ?? err, 'writing metadata')
      }
      // Everything in the log is now in level too (emptied now and then: each truncate costs a
      // journal transaction).
      if (this.pending.length === 0 && (sync || this.log.size > LOG_CLEAR)) this.log.clear()
    })
    this.writes = run.catch(() => {})
    await run
  }

  allocIno (change: Change): number {
    const ino = this.nextIno++
    change.ops.push({ type: 'put', key: 'm:nextIno', value: String(this.nextIno) })
    return ino
  }

  get (ino: number): Entry {
    const entry = this.entries.get(ino)
    if (entry === undefined) throw new BazilError(ErrorCode.NOT_FOUND, `no entry ${ino}`)
    return entry
  }

  /** The parent of a directory (directories have one name), or undefined for the root. */
  parentOf (ino: number): number | undefined {
    return this.names.get(ino)?.[0]?.parent
  }

  /** Values of the keys starting with `prefix` (a layer above reading its own state at start). */
  async * scan (prefix: string): AsyncGenerator<[string, string]> {
    await this.writeBatch(false) // level lags the log: let it catch up first
    for await (const entry of this.db.iterator({ gte: prefix, lt: prefix + '\uffff' })) yield entry
  }

  addName (ino: number, parent: number, name: string): void {
    const names = this.names.get(ino)
    if (names === undefined) this.names.set(ino, [{ parent, name }])
    else if (!names.some(n => n.parent === parent && n.name === name)) names.push({ parent, name })
  }

  dropName (ino: number, parent: number, name: string): void {
    const names = this.names.get(ino)?.filter(n => !(n.parent === parent && n.name === name))
    if (names === undefined || names.length === 0) this.names.delete(ino)
    else this.names.set(ino, names)
  }

  dir (ino: number): Map<string, number> {
    let d = this.children.get(ino)
    if (d === undefined) {
      d = new Map()
      this.children.set(ino, d)
    }
    return d
  }

  async close (): Promise<void> {
    this.closed = true
    try {
      await this.writeBatch(true)
    } finally {
      this.log.close()
      await this.db.close()
    }
  }
}

/**
 * The ops of a batch with only the last one per key: a batch is applied atomically, so that is
 * the same result, and an untar changes each new entry four or five times in a row (create,
 * chown, chmod, utimens, the commit at close), each op costing level's encoding on this thread.
 */
function lastPerKey (ops: BatchOp[]): BatchOp[] {
  const last = new Map<string, BatchOp>()
  for (const op of ops) {
    last.delete(op.key)
    last.set(op.key, op)
  }
  return last.size === ops.length ? ops : [...last.values()]
}
