/**
 * The volume's metadata in level: entries (inodes with stable ids) and directory entries.
 * Keys: `e:<ino>` → Entry JSON; `d:<parent ino>:<name>` → child ino; `m:nextIno` → number.
 * The whole namespace is also held in memory (loaded on open) so lookups never wait on disk;
 * every change is written through in one level batch before the operation returns, and with
 * `sync` when the caller needs it durable (fsync).
 */
import { randomBytes } from 'node:crypto'
import { Level } from 'level'
import { BazilError, ErrorCode, fromSystemError } from '../errors.ts'
import type { ContentRef } from '../cas/manifest.ts'

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

type BatchOp = { type: 'put', key: string, value: string } | { type: 'del', key: string }

/** A set of changes applied to memory at once and written to level in one batch. */
export class Change {
  readonly ops: BatchOp[] = []
  constructor (private readonly meta: MetaStore) {}

  putEntry (entry: Entry): void {
    this.meta.entries.set(entry.ino, entry)
    this.ops.push({ type: 'put', key: `e:${entry.ino}`, value: JSON.stringify(entry) })
  }

  delEntry (ino: number): void {
    this.meta.entries.delete(ino)
    this.meta.children.delete(ino)
    this.ops.push({ type: 'del', key: `e:${ino}` })
  }

  link (parent: number, name: string, ino: number): void {
    this.meta.dir(parent).set(name, ino)
    this.ops.push({ type: 'put', key: `d:${parent}:${name}`, value: String(ino) })
  }

  unlink (parent: number, name: string): void {
    this.meta.dir(parent).delete(name)
    this.ops.push({ type: 'del', key: `d:${parent}:${name}` })
  }
}

export class MetaStore {
  readonly entries = new Map<number, Entry>()
  readonly children = new Map<number, Map<string, number>>()
  private nextIno = ROOT_INO + 1

  private constructor (private readonly db: Level<string, string>) {}

  static async open (dir: string, owner: { uid: number, gid: number }): Promise<MetaStore> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' })
    try {
      await db.open()
    } catch (err) {
      throw fromSystemError((err as { cause?: unknown }).cause ?? err, `opening the metadata database in ${dir}`)
    }
    const meta = new MetaStore(db)
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
        this.dir(Number(key.slice(2, second))).set(key.slice(second + 1), Number(value))
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

  async commit (change: Change, options: { sync?: boolean } = {}): Promise<void> {
    if (change.ops.length === 0 && options.sync !== true) return
    const ops = change.ops.length > 0 ? change.ops : [{ type: 'put' as const, key: 'm:nextIno', value: String(this.nextIno) }]
    try {
      await this.db.batch(ops, { sync: options.sync === true })
    } catch (err) {
      throw fromSystemError((err as { cause?: unknown }).cause ?? err, 'writing metadata')
    }
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

  dir (ino: number): Map<string, number> {
    let d = this.children.get(ino)
    if (d === undefined) {
      d = new Map()
      this.children.set(ino, d)
    }
    return d
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
