/**
 * What the FUSE edge (`src/fs/fuse.ts`) asks of a volume. Path-based, because fuse-native wraps
 * libfuse's high-level API. Every method rejects with a BazilError whose code `fuse.ts` turns
 * into an errno (see the table there); nothing here knows about FUSE.
 */

export interface Attr {
  /** Local inode number (stable for the life of the entry on this device). */
  ino: number
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  /** 512-byte blocks, as st_blocks. */
  blocks: number
  atimeMs: number
  mtimeMs: number
  ctimeMs: number
}

export interface StatFs {
  bsize: number
  frsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  favail: number
  namemax: number
}

/** `utimens` time: milliseconds since the epoch, 'now', or 'omit' (leave unchanged). */
export type TimeSpec = number | 'now' | 'omit'

export const XATTR_CREATE = 1
export const XATTR_REPLACE = 2

export interface VolumeOps {
  getattr: (path: string) => Promise<Attr>
  /** Like getattr, but for an open handle (works for an unlinked open file). */
  fgetattr: (path: string, fh: number) => Promise<Attr>
  /** Names in the directory (without '.' and '..') with their attributes, same order. */
  readdir: (path: string) => Promise<{ names: string[], attrs: Attr[] }>
  /** `flags` are open(2) flags (O_TRUNC, O_APPEND, O_ACCMODE bits). Returns a handle > 0. */
  open: (path: string, flags: number) => Promise<number>
  /** Creates a regular file (EXISTS if present) and opens it with open(2) `flags` (default read/write). */
  create: (path: string, mode: number, flags?: number) => Promise<number>
  read: (fh: number, buffer: Buffer, length: number, position: number) => Promise<number>
  write: (fh: number, buffer: Buffer, length: number, position: number) => Promise<number>
  /**
   * Optional write-behind: a write the FUSE edge has already answered. It must be ordered, at
   * the moment of the call, before every later request (a read, getattr or utimens of the file
   * waits for it; flush, fsync and truncate come after it), and a failure must be reported by
   * the next flush or fsync of `fh`. Resolves (never rejects) once the write is applied or
   * has failed. Without it, every write waits for `write`.
   */
  writeBehind?: (fh: number, buffer: Buffer, position: number) => Promise<void>
  flush: (fh: number) => Promise<void>
  fsync: (fh: number, datasync: boolean) => Promise<void>
  release: (fh: number) => Promise<void>
  truncate: (path: string, size: number) => Promise<void>
  ftruncate: (fh: number, size: number) => Promise<void>
  unlink: (path: string) => Promise<void>
  mkdir: (path: string, mode: number) => Promise<void>
  rmdir: (path: string) => Promise<void>
  rename: (from: string, to: string) => Promise<void>
  link: (existing: string, newPath: string) => Promise<void>
  symlink: (target: string, path: string) => Promise<void>
  readlink: (path: string) => Promise<string>
  /** Device nodes, FIFOs and sockets: rejects NOT_SUPPORTED for those (regular files allowed). */
  mknod: (path: string, mode: number, dev: number) => Promise<void>
  chmod: (path: string, mode: number) => Promise<void>
  chown: (path: string, uid: number, gid: number) => Promise<void>
  utimens: (path: string, atime: TimeSpec, mtime: TimeSpec) => Promise<void>
  setxattr: (path: string, name: string, value: Buffer, flags: number) => Promise<void>
  /** Rejects NO_ATTR when absent. */
  getxattr: (path: string, name: string) => Promise<Buffer>
  listxattr: (path: string) => Promise<string[]>
  removexattr: (path: string, name: string) => Promise<void>
  statfs: (path: string) => Promise<StatFs>
  /**
   * True if any entry has the extended attribute `name`. Optional: without it the FUSE edge
   * assumes yes (and asks the volume for security.capability before every write).
   */
  hasXattr?: (name: string) => boolean
  /** Calls `seen` whenever an entry gets the attribute `name`, by any writer (optional too). */
  watchXattr?: (name: string, seen: () => void) => void
}
