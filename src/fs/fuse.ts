/**
 * The FUSE edge: mounts a `VolumeOps` with fuse-native (the only module that imports it) and
 * turns each kernel request into one promise-returning volume call, and BazilError codes into
 * errnos (the table below is the only place that happens). Also recovers the dead mount a
 * killed daemon leaves behind.
 *
 * fuse-native 2.2.6 runs libfuse 2 (`fuse_loop_mt`) and hands every request to the JS main
 * thread, so requests are in flight concurrently. It is patched (scripts/patches, applied and
 * rebuilt by `postinstall`) so that utimens passes mtime and UTIME_NOW/UTIME_OMIT and fgetattr gets
 * the handle; `mountVolume` refuses an unpatched binary. An unlinked open file stays readable
 * and fstat-able without leaving anything in the volume: see `OpenFiles`.
 *
 * Round trips: each request costs a hop from a libfuse thread to the JS main thread and back
 * (~100 µs on a busy 2-core machine), so the patch answers two kinds of request in C: the
 * getattr libfuse sends right after chown/chmod/utimens/mkdir/create (from the stat those
 * answered with), and getxattr of security.capability (asked before every write) while no
 * entry has it. See DECISIONS.md, "Small files".
 *
 * Buffers given to `read`/`write`/`setxattr` are libfuse's memory: `write` must consume its
 * buffer before its promise settles (fuse-native detaches it right after); setxattr values are
 * copied here.
 */
import type Fuse from 'fuse-native'
import { execFile } from 'node:child_process'
import { access, readFile, readdir, realpath, stat } from 'node:fs/promises'
import { constants } from 'node:os'
import { posix, resolve } from 'node:path'
import { promisify } from 'node:util'
import { BazilError, ErrorCode, fromSystemError, isBazilError } from '../errors.ts'
import { logger } from '../util/log.ts'
import type { Attr, StatFs, VolumeOps } from './types.ts'

const log = logger('bazil:fuse')
const run = promisify(execFile)
const E = constants.errno

/** Largest write the kernel sends with `big_writes` (libfuse 2 caps it at 128 KiB anyway). */
export const MAX_WRITE = 128 * 1024

/**
 * Options for libfuse (besides fsname, subtype and debug). `big_writes,max_write`: writes arrive in
 * 128 KiB pieces, not 4 KiB (1 GiB with dd through the passthrough test volume: ~22 MB/s
 * before, 260-450 MB/s after). `use_ino`: our inode numbers show.
 *
 * Not `hard_remove`: with it, libfuse 2 answers fstat(2) of an unlinked open file ENOENT by
 * itself (the kernel's getattr carries no handle), so we let libfuse "hide" the file and
 * handle the hiding here (`OpenFiles`).
 *
 * `attr_timeout=0`: libfuse 2's path-based API gives each hard link its own kernel inode, so
 * any attribute caching shows stale st_nlink after link/rename/unlink; and the volume changes
 * under the kernel (sync), with no way to invalidate in libfuse 2. `entry_timeout=1`: a name
 * the kernel resolved stays resolved for 1 s without asking (a name removed by sync still
 * answers ENOENT, since every getattr asks); this alone cut untar of 8,758 files from ~24-29 s
 * to ~17 s and find+stat from ~7 s to ~2 s (passthrough volume). `negative_timeout=0`: a name
 * created by sync shows at once.
 */
const LIBFUSE_OPTIONS = [
  'big_writes',
  `max_write=${MAX_WRITE}`,
  `max_read=${MAX_WRITE}`,
  'use_ino',
  'attr_timeout=0',
  'entry_timeout=1',
  'negative_timeout=0'
]

/** st_blksize we report: stdio and cp size their I/O by it, so it matches MAX_WRITE. */
const BLKSIZE = MAX_WRITE

/**
 * BazilError code → errno. NOT_SUPPORTED is EOPNOTSUPP except from mknod, which answers EPERM:
 * mknod(2) documents EPERM for "the file system does not support the type of node requested",
 * so `mkfifo` prints "Operation not permitted".
 */
const errnoByCode: Partial<Record<ErrorCode, number>> = {
  NOT_FOUND: E.ENOENT,
  EXISTS: E.EEXIST,
  NOT_EMPTY: E.ENOTEMPTY,
  NOT_DIR: E.ENOTDIR,
  IS_DIR: E.EISDIR,
  INVALID: E.EINVAL,
  NO_SPACE: E.ENOSPC,
  CORRUPT: E.EIO,
  IO: E.EIO,
  UNAVAILABLE: E.EIO,
  TIMEOUT: E.EIO,
  NAME_TOO_LONG: E.ENAMETOOLONG,
  NO_ATTR: E.ENODATA,
  NOT_SUPPORTED: E.EOPNOTSUPP,
  PERMISSION: E.EPERM,
  BAD_HANDLE: E.EBADF,
  TOO_BIG: E.EFBIG,
  RANGE: E.ERANGE,
  BUSY: E.EBUSY,
  ABORTED: E.EINTR,
  CLOSED: E.EIO
}

/** The negative errno for an error a volume call rejected with; EIO (logged) if unknown. */
export function errnoOf (err: unknown): number {
  if (isBazilError(err)) {
    const errno = errnoByCode[err.code]
    if (errno !== undefined) return -errno
    log.error('no errno for code %s, answering EIO: %O', err.code, err)
    return -E.EIO
  }
  log.error('unexpected error, answering EIO: %O', err)
  return -E.EIO
}

export interface MountOptions {
  /** Shown as the mount's source in /proc/mounts (default 'bazil'). */
  fsname?: string
  /** libfuse's own request trace on stderr. */
  debug?: boolean
  /**
   * Write-behind budget (only for a volume with `writeBehind`): writes are answered at once
   * while at most this many bytes of them wait to be applied; 0 turns it off. Default
   * WRITE_BEHIND_BYTES.
   */
  writeBehindBytes?: number
}

/**
 * Default write-behind budget: 8 MiB, 64 of the largest writes. Each write waiting is
 * charged at least 4 KiB, so at most 2,048 wait (well inside a file actor's mailbox).
 */
export const WRITE_BEHIND_BYTES = 8 * 1024 * 1024

export interface Mount {
  readonly dir: string
  /** Lazily unmounts (open files keep working until closed); safe to call twice. */
  unmount: () => Promise<void>
}

/** Why FUSE cannot be used on this machine, or undefined if it can. */
export async function fuseUnavailable (): Promise<string | undefined> {
  try {
    await access('/dev/fuse')
    await loadFuse()
    return undefined
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  }
}

export async function mountVolume (volume: VolumeOps, dir: string, options: MountOptions = {}): Promise<Mount> {
  const BazilFuse = await loadFuse()
  const fsname = options.fsname ?? 'bazil'
  if (/[,\s\\]/.test(fsname)) throw new BazilError(ErrorCode.INVALID, `fsname may not contain commas, spaces or backslashes: ${fsname}`)
  const mountpoint = resolve(dir)
  await recoverStaleMount(mountpoint)
  // libfuse 2 refuses a non-empty mount point with a bare "fuse failed": say why.
  const present = await readdir(mountpoint).catch(err => { throw fromSystemError(err, `mount point ${mountpoint}`) })
  if (present.length > 0) throw new BazilError(ErrorCode.NOT_EMPTY, `mount point ${mountpoint} is not empty`)

  const capability = capabilityFastPath(BazilFuse, volume)
  const fuse = new BazilFuse(mountpoint, volumeOperations(volume, capability), [
    ...(options.debug === true ? ['debug'] : []),
    `fsname=${fsname}`,
    'subtype=bazil',
    ...LIBFUSE_OPTIONS
  ])
  await new Promise<void>((resolve, reject) => {
    fuse.mount(err => {
      if (err instanceof Error) reject(fromSystemError(err, `mount ${mountpoint}`))
      else resolve()
    })
  }).catch((err: unknown) => { capability.release(); throw err })
  const writeBehindBytes = volume.writeBehind === undefined ? 0 : options.writeBehindBytes ?? WRITE_BEHIND_BYTES
  if (writeBehindBytes > 0) fuse.bazilWriteBehind(writeBehindBytes)
  log('mounted %s (write-behind %d bytes)', mountpoint, writeBehindBytes)

  let unmounting: Promise<void> | undefined
  const unmount = async (): Promise<void> => {
    unmounting ??= new Promise<void>((resolve, reject) => {
      fuse.unmount(err => {
        if (err instanceof Error) {
          unmounting = undefined // let the caller try again
          reject(fromSystemError(err, `unmount ${mountpoint}`))
        } else {
          fuse.bazilDrainWrites() // writes answered before the unmount reach the volume
          log('unmounted %s', mountpoint)
          capability.release()
          resolve()
        }
      })
    })
    return await unmounting
  }
  return { dir: mountpoint, unmount }
}

/**
 * If DIR is a dead FUSE mount (ENOTCONN, left by a killed daemon) unmount it (fusermount -uz,
 * falling back to umount -l). Returns true if it recovered one. Throws BUSY if DIR is a live
 * mount of something else.
 */
export async function recoverStaleMount (dir: string): Promise<boolean> {
  const target = resolve(dir)
  try {
    await stat(target)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return false
    if (code !== 'ENOTCONN' && code !== 'ECONNABORTED') throw fromSystemError(err, `stat ${target}`)
    log('%s is a dead mount (%s): unmounting it', target, code)
    await forceUnmount(target)
    await stat(target).catch(err => { throw fromSystemError(err, `${target} after unmounting its dead mount`) })
    return true
  }
  if (await isMountPoint(target)) throw new BazilError(ErrorCode.BUSY, `${target} is already a mount point`)
  return false
}

async function forceUnmount (dir: string): Promise<void> {
  const attempts: Array<[string, string[]]> = [['fusermount', ['-uz', dir]], ['fusermount3', ['-uz', dir]], ['umount', ['-l', dir]]]
  const failures: string[] = []
  for (const [command, args] of attempts) {
    try {
      await run(command, args)
      return
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string }
      failures.push(`${command}: ${(e.stderr ?? '').trim() || e.code || e.message}`)
    }
  }
  throw new BazilError(ErrorCode.IO, `cannot unmount ${dir}: ${failures.join('; ')}`)
}

async function isMountPoint (dir: string): Promise<boolean> {
  const real = await realpath(dir)
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4] // mount point, with \040-style escapes
    if (field !== undefined && unescapeMountField(field) === real) return true
  }
  return false
}

function unescapeMountField (field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

type BazilFuseClass = (new (mountpoint: string, ops: Fuse.Operations, libfuseOptions: string[]) => Fuse) & Pick<typeof Fuse, 'bazilNoCapability'>

const CAPABILITY = 'security.capability'

/**
 * Whether each live mount of this process must be asked for security.capability. The patched
 * binary's switch is one per process, so it is on only while no mount needs asking.
 */
const capabilityAsked = new Map<symbol, boolean>()

interface CapabilityFastPath {
  /** Call before an entry may get the attribute: from then on the volume is asked. */
  needed: () => void
  release: () => void
}

function capabilityFastPath (BazilFuse: BazilFuseClass, volume: VolumeOps): CapabilityFastPath {
  const token = Symbol('mount')
  const update = (): void => {
    BazilFuse.bazilNoCapability(capabilityAsked.size > 0 && ![...capabilityAsked.values()].includes(true))
  }
  // Without watchXattr, a change made behind the edge (sync) could add the attribute unseen.
  capabilityAsked.set(token, volume.watchXattr === undefined || (volume.hasXattr?.(CAPABILITY) ?? true))
  update()
  let released = false
  const needed = (): void => {
    if (released) return
    capabilityAsked.set(token, true)
    update()
  }
  volume.watchXattr?.(CAPABILITY, needed)
  return {
    needed,
    release: () => { released = true; capabilityAsked.delete(token); update() }
  }
}
let loading: Promise<BazilFuseClass> | undefined

/**
 * Loads fuse-native on first use (so that importing this module works on a machine without
 * libfuse2) and checks it is the patched build.
 */
async function loadFuse (): Promise<BazilFuseClass> {
  loading ??= import('fuse-native').then(({ default: Fuse }) => {
    if (Fuse.BAZIL_PATCH_LEVEL < 5) {
      throw new BazilError(ErrorCode.UNAVAILABLE,
        'fuse-native is not patched (its prebuilt binary was loaded): run `npm install`, whose postinstall patches and rebuilds it')
    }
    /**
     * fuse-native's Fuse with our libfuse options instead of its own (which would also turn on
     * libfuse's debug trace whenever DEBUG contains a '*', e.g. DEBUG=bazil:*).
     */
    return class BazilFuse extends Fuse {
      private readonly libfuseOptions: string[]

      constructor (mountpoint: string, ops: Fuse.Operations, libfuseOptions: string[]) {
        // No per-op timeout: fuse-native's default answers ETIMEDOUT after 15 s, and a fetch
        // from a slow store may legitimately take longer.
        super(mountpoint, ops, { timeout: false })
        this.libfuseOptions = libfuseOptions
      }

      protected override _fuseOptions (): string {
        return `-o${this.libfuseOptions.join(',')}`
      }
    }
  }, (err: unknown) => {
    throw new BazilError(ErrorCode.UNAVAILABLE,
      `cannot load fuse-native (is libfuse2 installed? apt-get install libfuse2): ${err instanceof Error ? err.message : String(err)}`,
      { cause: err })
  })
  return await loading
}

type Answer<V extends unknown[]> = (err: number, ...values: V | []) => void

/** Runs one request: `work`'s values go to `cb` after a 0, a rejection becomes its errno. */
function answer<V extends unknown[]> (op: string, path: string | null, cb: Answer<V>, work: () => Promise<NoInfer<V>>): void {
  settle(op, path, work, values => { cb(0, ...values) }, errno => { cb(errno) })
}

/** Like `answer`, for read/write, whose callback takes the byte count or the errno alone. */
function answerCount (op: string, path: string | null, cb: (result: number) => void, work: () => Promise<number>): void {
  settle(op, path, work, cb, cb)
}

/** Nothing may throw back into fuse-native, so the replies themselves are guarded too. */
/** Counts the requests handed to the volume (see lastHidden in volumeOperations). */
let requestSeq = 0

function settle<T> (op: string, path: string | null, work: () => Promise<T>, onValue: (value: T) => void, onErrno: (errno: number) => void): void {
  requestSeq++
  const guarded = (send: () => void): void => {
    try {
      send()
    } catch (err) {
      log.error('%s: replying to the kernel failed: %O', op, err)
    }
  }
  work().then(value => { guarded(() => { onValue(value) }) }, err => {
    const errno = errnoOf(err)
    log('%s %s: errno %d (%s)', op, path, errno, isBazilError(err) ? err.code : 'unknown')
    guarded(() => { onErrno(errno) })
  })
}

/** The values of a successful answer, as a tuple. */
function ok<T extends unknown[]> (...values: T): T {
  return values
}

/** The fuse-native operation table over a volume. */
function volumeOperations (volume: VolumeOps, capability: CapabilityFastPath): Fuse.Operations {
  const files = new OpenFiles()
  /** The name libfuse hid last (see rename). */
  let lastHidden: { path: string, ino: number, seq: number } | undefined
  const statOf = async (path: string): Promise<Fuse.Stat> => {
    const fh = files.hiddenHandle(path)
    return toStat(fh === undefined ? await volume.getattr(path) : hiddenAttr(await volume.fgetattr(path, fh)))
  }
  /**
   * The stat that answers the getattr libfuse sends after a change (undefined: let it ask).
   * Taken right after the change, so that nothing else can come between.
   */
  const statAfter = async (path: string): Promise<Fuse.Stat | undefined> => await statOf(path).catch(() => undefined)
  return {
    getattr: (path, cb) => {
      answer('getattr', path, cb, async () => ok(await statOf(path)))
    },
    fgetattr: (path, fh, cb) => {
      answer('fgetattr', path, cb, async () => {
        if (fh <= 0) return ok(toStat(await volume.getattr(needPath(path))))
        const attr = await volume.fgetattr(path ?? '', fh)
        return ok(toStat(path != null && files.hiddenHandle(path) !== undefined ? hiddenAttr(attr) : attr))
      })
    },
    readdir: (path, cb) => {
      answer('readdir', path, cb, async () => {
        const dir = needPath(path)
        const parent = dir === '/' ? '/' : posix.dirname(dir)
        const [listing, self] = await Promise.all([volume.readdir(dir), volume.getattr(dir)])
        const up = await volume.getattr(parent).catch(() => self)
        return ok(['.', '..', ...listing.names], [self, up, ...listing.attrs].map(toStat))
      })
    },
    opendir: (path, _flags, cb) => { answer('opendir', path, cb, async () => ok()) },
    releasedir: (path, _fh, cb) => { answer('releasedir', path, cb, async () => ok()) },
    fsyncdir: (path, _datasync, _fh, cb) => { answer('fsyncdir', path, cb, async () => ok()) },
    open: (path, flags, cb) => {
      answer('open', path, cb, async () => {
        const fh = files.opened(checkHandle(await volume.open(path, flags)), path)
        return ok(await withCacheMode(volume, path, fh))
      })
    },
    create: (path, mode, flags, cb) => {
      answer('create', path, cb, async () => {
        const fh = files.opened(checkHandle(await volume.create(path, mode, flags)), path)
        return ok(fh, toStat(await volume.fgetattr(path, fh)))
      })
    },
    read: (path, fh, buffer, length, position, cb) => {
      answerCount('read', path, cb, async () => Math.min(await volume.read(fh, buffer, length, position), length))
    },
    write: (path, fh, buffer, length, position, cb) => {
      answerCount('write', path, cb, async () => await volume.write(fh, buffer, length, position))
    },
    ...(volume.writeBehind === undefined
      ? {}
      : {
          bazilWriteBehind: (fh: number, buffer: Buffer, position: number, done: () => void) => {
            requestSeq++
            const applied = volume.writeBehind?.(fh, buffer, position) ?? Promise.resolve()
            applied.then(done, (err: unknown) => {
              log.error('write-behind: the volume rejected (it must not): %O', err)
              done()
            })
          }
        }),
    flush: (path, fh, cb) => { answer('flush', path, cb, async () => { await volume.flush(fh); return ok() }) },
    fsync: (path, datasync, fh, cb) => { answer('fsync', path, cb, async () => { await volume.fsync(fh, datasync !== 0); return ok() }) },
    release: (path, fh, cb) => {
      files.released(fh)
      answer('release', path, cb, async () => { await volume.release(fh); return ok() })
    },
    truncate: (path, size, cb) => { answer('truncate', path, cb, async () => { await volume.truncate(path, size); return ok() }) },
    ftruncate: (path, fh, size, cb) => { answer('ftruncate', path, cb, async () => { await volume.ftruncate(fh, size); return ok() }) },
    unlink: (path, cb) => {
      answer('unlink', path, cb, async () => {
        // libfuse unlinks a hidden file after its last release: the volume already did.
        if (!files.forgetHidden(path)) await volume.unlink(path)
        return ok()
      })
    },
    mkdir: (path, mode, cb) => { answer('mkdir', path, cb, async () => { await volume.mkdir(path, mode); return ok(await statAfter(path)) }) },
    rmdir: (path, cb) => {
      answer('rmdir', path, cb, async () => {
        // libfuse keeps an unlinked open file under its directory (as `.fuse_hidden…`) and
        // finds it by path: removing the directory would leave that descriptor answering
        // ENOENT. So, as every libfuse 2 file system without hard_remove does, the directory
        // is "not empty" until those descriptors close.
        if (files.hasHiddenIn(path)) throw new BazilError(ErrorCode.NOT_EMPTY, `${path} holds an unlinked file that is still open`)
        await volume.rmdir(path)
        return ok()
      })
    },
    rename: (from, to, cb) => {
      answer('rename', from, cb, async () => {
        if (files.isHiddenName(to)) {
          if (files.isOpen(from)) {
            const { ino } = await volume.getattr(from)
            await volume.unlink(from)
            files.hide(from, to)
            lastHidden = { path: from, ino, seq: requestSeq }
            return ok()
          }
          log.error('libfuse hides %s, which has no open handle here: renaming it for real', from)
        }
        // rename(a, b) where b is an open second name of a's file: libfuse first hid b (we
        // dropped that name); POSIX makes this rename a no-op, so give b back.
        const hidden = lastHidden
        lastHidden = undefined
        // libfuse sends the two renames back to back: anything in between means another case.
        if (hidden !== undefined && hidden.path === to && requestSeq === hidden.seq + 1 &&
            !await exists(volume, to) && (await volume.getattr(from)).ino === hidden.ino) {
          await volume.link(from, to)
          return ok()
        }
        await volume.rename(from, to)
        files.renamed(from, to)
        return ok()
      })
    },
    link: (existing, newPath, cb) => { answer('link', newPath, cb, async () => { await volume.link(existing, newPath); return ok() }) },
    symlink: (target, path, cb) => { answer('symlink', path, cb, async () => { await volume.symlink(target, path); return ok() }) },
    readlink: (path, cb) => { answer('readlink', path, cb, async () => ok(await volume.readlink(path))) },
    mknod: (path, mode, dev, cb) => {
      answer('mknod', path, cb, async () => {
        try {
          await volume.mknod(path, mode, dev)
        } catch (err) {
          // See errnoByCode: mknod(2)'s errno for an unsupported node type is EPERM.
          if (isBazilError(err, ErrorCode.NOT_SUPPORTED)) throw new BazilError(ErrorCode.PERMISSION, err.message, { cause: err })
          throw err
        }
        return ok()
      })
    },
    chmod: (path, mode, cb) => { answer('chmod', path, cb, async () => { await volume.chmod(path, mode); return ok(await statAfter(path)) }) },
    chown: (path, uid, gid, cb) => { answer('chown', path, cb, async () => { await volume.chown(path, uid, gid); return ok(await statAfter(path)) }) },
    utimens: (path, atime, mtime, cb) => { answer('utimens', path, cb, async () => { await volume.utimens(path, atime, mtime); return ok(await statAfter(path)) }) },
    setxattr: (path, name, value, _position, flags, cb) => {
      // Copy: `value` is libfuse's memory, detached once we answer.
      const copy = Buffer.from(value)
      if (name === CAPABILITY) capability.needed()
      answer('setxattr', path, cb, async () => { await volume.setxattr(path, name, copy, flags); return ok() })
    },
    // The kernel asks for security.capability on every write, also to a hidden (unlinked) file.
    getxattr: (path, name, _position, cb) => {
      answer('getxattr', path, cb, async () => {
        if (files.hiddenHandle(path) !== undefined) throw new BazilError(ErrorCode.NO_ATTR, `${path} is unlinked`)
        return ok(await volume.getxattr(path, name))
      })
    },
    listxattr: (path, cb) => {
      answer('listxattr', path, cb, async () => ok(files.hiddenHandle(path) !== undefined ? [] : await volume.listxattr(path)))
    },
    removexattr: (path, name, cb) => { answer('removexattr', path, cb, async () => { await volume.removexattr(path, name); return ok() }) },
    statfs: (path, cb) => { answer('statfs', path, cb, async () => ok(toStatFs(await volume.statfs(path)))) }
    // No `access`: libfuse answers ENOSYS once, after which the kernel allows every access(2)
    // without asking (we run as root, without allow_other), saving a round trip per call.
  }
}

/**
 * Which paths have open handles, so that an unlinked open file keeps working. libfuse 2
 * (without hard_remove) does not unlink an open file: it renames it to `.fuse_hidden<id><n>`
 * and unlinks that after the last release. We turn that rename into a real unlink in the
 * volume (so nothing hidden is stored or synced, and the volume keeps the content for its open
 * handles) and answer the hidden path's getattr by handle (fgetattr) and its final unlink by
 * forgetting it.
 */
class OpenFiles {
  /** libfuse's hidden-name pattern: ".fuse_hidden" + node id and counter, 8 hex digits each. */
  private static readonly hiddenName = /\/\.fuse_hidden[0-9a-f]{16}$/
  private readonly pathOf = new Map<number, string>()
  /** Hidden path → the handles still open on it. */
  private readonly hidden = new Map<string, Set<number>>()

  opened (fh: number, path: string): number {
    this.pathOf.set(fh, path)
    return fh
  }

  released (fh: number): void {
    const path = this.pathOf.get(fh)
    this.pathOf.delete(fh)
    if (path !== undefined) this.hidden.get(path)?.delete(fh)
  }

  /** True if a hidden (unlinked, still open) file lives directly in `dir`. */
  hasHiddenIn (dir: string): boolean {
    for (const [path, handles] of this.hidden) {
      if (handles.size > 0 && posix.dirname(path) === dir) return true
    }
    return false
  }

  isHiddenName (path: string): boolean {
    return OpenFiles.hiddenName.test(path)
  }

  isOpen (path: string): boolean {
    for (const open of this.pathOf.values()) if (open === path) return true
    return false
  }

  /** Moves FROM's handles to the hidden path. */
  hide (from: string, hiddenPath: string): void {
    const handles = new Set<number>()
    for (const [fh, path] of this.pathOf) {
      if (path === from) {
        handles.add(fh)
        this.pathOf.set(fh, hiddenPath)
      }
    }
    this.hidden.set(hiddenPath, handles)
  }

  /** An open handle on a hidden (unlinked) path, if PATH is one. */
  hiddenHandle (path: string): number | undefined {
    const handles = this.hidden.get(path)
    if (handles === undefined) return undefined
    for (const fh of handles) return fh
    return undefined
  }

  /** True if PATH was hidden (and now is forgotten). */
  forgetHidden (path: string): boolean {
    return this.hidden.delete(path)
  }

  /** Keeps paths under a renamed file or directory current. */
  renamed (from: string, to: string): void {
    const moved = (path: string): string | undefined =>
      path === from ? to : path.startsWith(`${from}/`) ? to + path.slice(from.length) : undefined
    for (const [fh, path] of this.pathOf) {
      const now = moved(path)
      if (now !== undefined) this.pathOf.set(fh, now)
    }
    for (const [path, handles] of [...this.hidden]) {
      const now = moved(path)
      if (now !== undefined) {
        this.hidden.delete(path)
        this.hidden.set(now, handles)
      }
    }
  }
}

function needPath (path: string | null): string {
  if (path === null) throw new BazilError(ErrorCode.NOT_FOUND, 'the entry was removed')
  return path
}

/** fuse-native passes handles through int32/uint32: a volume's handle must fit both. */
async function exists (volume: VolumeOps, path: string): Promise<boolean> {
  return await volume.getattr(path).then(() => true, () => false)
}

/**
 * libfuse subtracts one from st_nlink of a hidden (unlinked, still open) file, counting the
 * hidden name as a link; the volume has already dropped that name, so add it back.
 */
function hiddenAttr (attr: Attr): Attr {
  return { ...attr, nlink: attr.nlink + 1 }
}

/** Bit 30 of a handle returned by open asks the patched fuse-native for direct I/O. */
const DIRECT_IO = 0x40000000

/**
 * libfuse 2's path API gives each name of a hard-linked file its own kernel inode, so the page
 * cache of one name would not see writes made through another. Files with several names are
 * therefore opened with direct I/O (every read and write reaches the volume).
 */
async function withCacheMode (volume: VolumeOps, path: string, fh: number): Promise<number> {
  const attr = await volume.fgetattr(path, fh)
  return attr.nlink > 1 ? (fh | DIRECT_IO) : fh
}

function checkHandle (fh: number): number {
  if (!Number.isInteger(fh) || fh <= 0 || fh >= DIRECT_IO) {
    throw new BazilError(ErrorCode.IO, `volume returned an unusable handle ${fh}`)
  }
  return fh
}

function toStat (attr: Attr): Fuse.Stat {
  return {
    mode: attr.mode,
    uid: attr.uid,
    gid: attr.gid,
    size: attr.size,
    nlink: attr.nlink,
    ino: attr.ino, // libfuse 2 via fuse-native carries 32 bits
    blocks: attr.blocks,
    blksize: BLKSIZE,
    dev: 0,
    rdev: 0,
    atime: attr.atimeMs,
    mtime: attr.mtimeMs,
    ctime: attr.ctimeMs
  }
}

/**
 * fuse-native carries statfs fields as uint32: past 2^32 blocks, report bigger blocks (the
 * totals stay right); other fields clamp.
 */
function toStatFs (s: StatFs): Fuse.StatFs {
  let scale = 1
  while (Math.max(s.blocks, s.bfree, s.bavail) / scale > 0xffffffff) scale *= 2
  return {
    bsize: clamp32(s.bsize),
    frsize: clamp32(s.frsize * scale),
    blocks: clamp32(s.blocks / scale),
    bfree: clamp32(s.bfree / scale),
    bavail: clamp32(s.bavail / scale),
    files: clamp32(s.files),
    ffree: clamp32(s.ffree),
    favail: clamp32(s.favail),
    fsid: 0,
    flag: 0,
    namemax: clamp32(s.namemax)
  }
}

function clamp32 (n: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.floor(n)))
}
