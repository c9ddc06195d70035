/**
 * A VolumeOps stub for FUSE tests: passes every call through to a real directory with
 * node:fs/promises (handles map to open FileHandles). Node has no xattr API, so xattrs live in
 * an in-memory map keyed by path. `stats` records what the FUSE edge delivered (largest write,
 * utimens arguments) so tests can check the kernel-facing side.
 */
import { constants, type Stats } from 'node:fs'
import * as fs from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { BazilError, ErrorCode, fromSystemError } from '../../src/errors.ts'
import { XATTR_CREATE, XATTR_REPLACE } from '../../src/fs/types.ts'
import type { Attr, TimeSpec, VolumeOps } from '../../src/fs/types.ts'

export interface PassthroughStats {
  writes: number
  maxWrite: number
  utimens: Array<{ path: string, atime: TimeSpec, mtime: TimeSpec }>
}

export interface PassthroughVolume extends VolumeOps {
  readonly root: string
  readonly stats: PassthroughStats
  /** Closes every handle still open. */
  close: () => Promise<void>
}

/** Codes errors.ts's fromSystemError does not know. */
const moreSystemCodes: Record<string, ErrorCode> = {
  ENAMETOOLONG: ErrorCode.NAME_TOO_LONG,
  EINVAL: ErrorCode.INVALID,
  EBADF: ErrorCode.BAD_HANDLE,
  EFBIG: ErrorCode.TOO_BIG,
  ERANGE: ErrorCode.RANGE,
  ENODATA: ErrorCode.NO_ATTR,
  EOPNOTSUPP: ErrorCode.NOT_SUPPORTED
}

function systemError (err: unknown, what: string): BazilError {
  const code = moreSystemCodes[(err as NodeJS.ErrnoException)?.code ?? '']
  if (code !== undefined) return new BazilError(code, `${what}: ${String(err)}`, { cause: err })
  return fromSystemError(err, what)
}

/** Runs `fn`, turning Node system errors into BazilErrors. */
async function sys<T> (what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw systemError(err, what)
  }
}

function toAttr (st: Stats): Attr {
  return {
    ino: st.ino,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    nlink: st.nlink,
    blocks: st.blocks,
    atimeMs: st.atimeMs,
    mtimeMs: st.mtimeMs,
    ctimeMs: st.ctimeMs
  }
}

export function passthroughVolume (root: string): PassthroughVolume {
  const handles = new Map<number, FileHandle>()
  const xattrs = new Map<string, Map<string, Buffer>>()
  const stats: PassthroughStats = { writes: 0, maxWrite: 0, utimens: [] }
  let nextHandle = 1

  const real = (path: string): string => join(root, path)
  const handle = (fh: number): FileHandle => {
    const h = handles.get(fh)
    if (h === undefined) throw new BazilError(ErrorCode.BAD_HANDLE, `no handle ${fh}`)
    return h
  }
  const remember = (h: FileHandle): number => {
    const fh = nextHandle++
    handles.set(fh, h)
    return fh
  }
  const xattrsOf = async (path: string): Promise<Map<string, Buffer>> => {
    await sys(`lstat ${path}`, async () => await fs.lstat(real(path))) // NOT_FOUND for a missing entry
    let map = xattrs.get(path)
    if (map === undefined) xattrs.set(path, map = new Map())
    return map
  }
  // The kernel already placed an O_APPEND write at the end; a real O_APPEND fd would ignore
  // the position instead, and O_DIRECT would demand aligned buffers.
  const openFlags = (flags: number): number => flags & ~(constants.O_APPEND | constants.O_DIRECT)

  return {
    root,
    stats,
    getattr: async path => toAttr(await sys(`lstat ${path}`, async () => await fs.lstat(real(path)))),
    fgetattr: async (_path, fh) => toAttr(await sys(`fstat ${fh}`, async () => await handle(fh).stat())),
    readdir: async path => await sys(`readdir ${path}`, async () => {
      const names = await fs.readdir(real(path))
      const attrs = await Promise.all(names.map(async name => toAttr(await fs.lstat(join(real(path), name)))))
      return { names, attrs }
    }),
    open: async (path, flags) => remember(await sys(`open ${path}`, async () => await fs.open(real(path), openFlags(flags)))),
    create: async (path, mode) => remember(await sys(`create ${path}`, async () =>
      await fs.open(real(path), constants.O_CREAT | constants.O_EXCL | constants.O_RDWR, mode))),
    read: async (fh, buffer, length, position) =>
      (await sys(`read ${fh}`, async () => await handle(fh).read(buffer, 0, length, position))).bytesRead,
    write: async (fh, buffer, length, position) => {
      stats.writes++
      stats.maxWrite = Math.max(stats.maxWrite, length)
      return (await sys(`write ${fh}`, async () => await handle(fh).write(buffer, 0, length, position))).bytesWritten
    },
    flush: async fh => { handle(fh) },
    fsync: async (fh, datasync) => {
      await sys(`fsync ${fh}`, async () => { await (datasync ? handle(fh).datasync() : handle(fh).sync()) })
    },
    release: async fh => {
      const h = handle(fh)
      handles.delete(fh)
      await sys(`close ${fh}`, async () => { await h.close() })
    },
    truncate: async (path, size) => { await sys(`truncate ${path}`, async () => { await fs.truncate(real(path), size) }) },
    ftruncate: async (fh, size) => { await sys(`ftruncate ${fh}`, async () => { await handle(fh).truncate(size) }) },
    unlink: async path => {
      await sys(`unlink ${path}`, async () => { await fs.unlink(real(path)) })
      xattrs.delete(path)
    },
    mkdir: async (path, mode) => { await sys(`mkdir ${path}`, async () => { await fs.mkdir(real(path), mode) }) },
    rmdir: async path => { await sys(`rmdir ${path}`, async () => { await fs.rmdir(real(path)) }) },
    rename: async (from, to) => { await sys(`rename ${from}`, async () => { await fs.rename(real(from), real(to)) }) },
    link: async (existing, newPath) => { await sys(`link ${newPath}`, async () => { await fs.link(real(existing), real(newPath)) }) },
    symlink: async (target, path) => { await sys(`symlink ${path}`, async () => { await fs.symlink(target, real(path)) }) },
    readlink: async path => await sys(`readlink ${path}`, async () => await fs.readlink(real(path))),
    mknod: async (path, mode) => {
      if ((mode & constants.S_IFMT) !== constants.S_IFREG && (mode & constants.S_IFMT) !== 0) {
        throw new BazilError(ErrorCode.NOT_SUPPORTED, `mknod ${path}: only regular files`)
      }
      await sys(`mknod ${path}`, async () => { await (await fs.open(real(path), 'wx', mode & 0o7777)).close() })
    },
    chmod: async (path, mode) => { await sys(`chmod ${path}`, async () => { await fs.chmod(real(path), mode) }) },
    chown: async (path, uid, gid) => { await sys(`chown ${path}`, async () => { await fs.lchown(real(path), uid, gid) }) },
    utimens: async (path, atime, mtime) => {
      stats.utimens.push({ path, atime, mtime })
      await sys(`utimens ${path}`, async () => {
        // Node's utimes has no UTIME_OMIT / UTIME_NOW: resolve them here.
        const current = await fs.lstat(real(path))
        const resolveTime = (t: TimeSpec, keep: number): number => t === 'omit' ? keep : t === 'now' ? Date.now() : t
        await fs.lutimes(real(path), resolveTime(atime, current.atimeMs) / 1000, resolveTime(mtime, current.mtimeMs) / 1000)
      })
    },
    setxattr: async (path, name, value, flags) => {
      const map = await xattrsOf(path)
      if ((flags & XATTR_CREATE) !== 0 && map.has(name)) throw new BazilError(ErrorCode.EXISTS, `xattr ${name} exists`)
      if ((flags & XATTR_REPLACE) !== 0 && !map.has(name)) throw new BazilError(ErrorCode.NO_ATTR, `no xattr ${name}`)
      map.set(name, Buffer.from(value))
    },
    getxattr: async (path, name) => {
      const value = (await xattrsOf(path)).get(name)
      if (value === undefined) throw new BazilError(ErrorCode.NO_ATTR, `no xattr ${name}`)
      return value
    },
    listxattr: async path => [...(await xattrsOf(path)).keys()],
    removexattr: async (path, name) => {
      if (!(await xattrsOf(path)).delete(name)) throw new BazilError(ErrorCode.NO_ATTR, `no xattr ${name}`)
    },
    statfs: async path => {
      const s = await sys(`statfs ${path}`, async () => await fs.statfs(real(path)))
      return {
        bsize: s.bsize,
        frsize: s.bsize,
        blocks: s.blocks,
        bfree: s.bfree,
        bavail: s.bavail,
        files: s.files,
        ffree: s.ffree,
        favail: s.ffree,
        namemax: 255
      }
    },
    close: async () => {
      const open = [...handles.values()]
      handles.clear()
      await Promise.all(open.map(async h => { await h.close() }))
    }
  }
}
