/**
 * Types for fuse-native 2.2.6 as patched by `scripts/patches/fuse-native+2.2.6.patch` (utimens
 * gets 'now'/'omit', create gets the open flags, fgetattr gets the handle; handle-based ops may
 * get a null path for a removed node, which only happens with `-o hard_remove`; chown, chmod,
 * utimens, mkdir and create may answer with the entry's new stat, which answers the getattr
 * libfuse sends right after them without another round trip). Only what `src/fs/fuse.ts` uses
 * is declared.
 *
 * Callback conventions: `err` is 0 or a negative errno; read/write answer with the byte count
 * (or a negative errno) as their only argument; handles are int32 > 0.
 */
declare module 'fuse-native' {
  namespace Fuse {
    interface Stat {
      mode: number
      uid: number
      gid: number
      size: number
      dev?: number
      nlink: number
      ino: number
      rdev?: number
      blksize?: number
      blocks: number
      /** Milliseconds since the epoch (or a Date). */
      atime: number | Date
      mtime: number | Date
      ctime: number | Date
    }

    interface StatFs {
      bsize: number
      frsize: number
      blocks: number
      bfree: number
      bavail: number
      files: number
      ffree: number
      favail: number
      fsid: number
      flag: number
      namemax: number
    }

    type Done = (err: number) => void
    /** Done, optionally with the stat after the change (see the module comment). */
    type DoneWithStat = (err: number, stat?: Stat) => void
    type Count = (result: number) => void
    type Time = number | 'now' | 'omit'

    interface Operations {
      init?: (cb: Done) => void
      access?: (path: string, mode: number, cb: Done) => void
      statfs?: (path: string, cb: (err: number, statfs?: StatFs) => void) => void
      getattr?: (path: string, cb: (err: number, stat?: Stat) => void) => void
      fgetattr?: (path: string | null, fd: number, cb: (err: number, stat?: Stat) => void) => void
      flush?: (path: string | null, fd: number, cb: Done) => void
      fsync?: (path: string | null, datasync: number, fd: number, cb: Done) => void
      fsyncdir?: (path: string | null, datasync: number, fd: number, cb: Done) => void
      readdir?: (path: string | null, cb: (err: number, names?: string[], stats?: Stat[]) => void) => void
      truncate?: (path: string, size: number, cb: Done) => void
      ftruncate?: (path: string | null, fd: number, size: number, cb: Done) => void
      utimens?: (path: string, atime: Time, mtime: Time, cb: DoneWithStat) => void
      readlink?: (path: string, cb: (err: number, target?: string) => void) => void
      chown?: (path: string, uid: number, gid: number, cb: DoneWithStat) => void
      chmod?: (path: string, mode: number, cb: DoneWithStat) => void
      mknod?: (path: string, mode: number, dev: number, cb: Done) => void
      setxattr?: (path: string, name: string, value: Buffer, position: number, flags: number, cb: Done) => void
      getxattr?: (path: string, name: string, position: number, cb: (err: number, value?: Buffer) => void) => void
      listxattr?: (path: string, cb: (err: number, names?: string[]) => void) => void
      removexattr?: (path: string, name: string, cb: Done) => void
      open?: (path: string, flags: number, cb: (err: number, fd?: number) => void) => void
      opendir?: (path: string, flags: number, cb: (err: number, fd?: number) => void) => void
      /** `buffer` is libfuse's memory, valid only until `cb` is called. */
      read?: (path: string | null, fd: number, buffer: Buffer, length: number, position: number, cb: Count) => void
      /** `buffer` is libfuse's memory, valid only until `cb` is called. */
      write?: (path: string | null, fd: number, buffer: Buffer, length: number, position: number, cb: Count) => void
      release?: (path: string | null, fd: number, cb: Done) => void
      releasedir?: (path: string | null, fd: number, cb: Done) => void
      create?: (path: string, mode: number, flags: number, cb: (err: number, fd?: number, stat?: Stat) => void) => void
      unlink?: (path: string, cb: Done) => void
      rename?: (from: string, to: string, cb: Done) => void
      link?: (existing: string, newPath: string, cb: Done) => void
      symlink?: (target: string, path: string, cb: Done) => void
      mkdir?: (path: string, mode: number, cb: DoneWithStat) => void
      rmdir?: (path: string, cb: Done) => void
      /**
       * A write the binding already answered (write-behind, see `bazilWriteBehind`): apply it,
       * then call `done` once, whatever the outcome. `buffer` is the binding's own copy.
       */
      bazilWriteBehind?: (fd: number, buffer: Buffer, position: number, done: () => void) => void
    }

    interface Options {
      /** Per-op timeout in ms, or false for none (the default is 15 s, answered ETIMEDOUT). */
      timeout?: number | false
      debug?: boolean
      fsname?: string
      subtype?: string
      force?: boolean
      mkdir?: boolean
    }
  }

  class Fuse {
    constructor (mnt: string, ops: Fuse.Operations, opts?: Fuse.Options)
    readonly mnt: string
    mount (cb: (err?: Error | null) => void): void
    unmount (cb: (err?: Error | null) => void): void
    /** The `-o...` option string handed to libfuse ('' when there are none). */
    protected _fuseOptions (): string
    static unmount (mnt: string, cb: (err?: Error | null) => void): void
    /** 0 when the unpatched prebuilt binary was loaded. */
    static readonly BAZIL_PATCH_LEVEL: number
    /**
     * While on, getxattr of `security.capability` (asked before every write) answers ENODATA
     * in C without a round trip: turn it on only while no entry has that attribute.
     */
    static bazilNoCapability (on: boolean): void
    /**
     * Write-behind for this mount (call after mounting): each write is answered at once while at
     * most `maxBytes` of them wait for `ops.bazilWriteBehind`, which gets them in order, each
     * before any later request; 0 turns it off.
     */
    bazilWriteBehind (maxBytes: number): void
    /** Hands the writes still waiting to `ops.bazilWriteBehind` now. */
    bazilDrainWrites (): void
  }

  export = Fuse
}
