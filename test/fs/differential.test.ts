/**
 * Randomized differential test: one random sequence of file system operations is applied to the
 * mounted volume and to a plain temp directory (the reference); after every operation the two
 * outcomes (success and value, or the errno name) must match, and every so often, at the end and
 * after a remount the whole trees must match (names, types, sizes, content hashes, modes, symlink
 * targets, user xattrs, file nlink and which names share an inode).
 *
 * BAZIL_SEED replays a run (the seed is printed at the start and in every failure);
 * BAZIL_DIFF_OPS sets the number of operations (default 2,000); BAZIL_DIFF_EXCLUDE leaves op
 * kinds out (e.g. "link") to narrow a failure down. On a failure the whole op log is written to
 * os.tmpdir()/bazil-diff-<target>-<seed>.log and named in the message.
 */
import { createHash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import {
  chmod, link, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, rmdir, stat, symlink,
  truncate, unlink
} from 'node:fs/promises'
import { constants, lstatSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { errnoOf, requireFuse, testTarget, useVolume } from '../helpers/mount.ts'
import { createRng, testSeed } from '../helpers/rng.ts'
import type { Rng } from '../helpers/rng.ts'
import { startSyscalls } from '../helpers/syscalls.ts'
import type { SysResult, Syscalls } from '../helpers/syscalls.ts'
import { tmpDir } from '../helpers/tmp.ts'

const kind = testTarget()
const OPS = Number(process.env.BAZIL_DIFF_OPS ?? 2000)
const TREE_EVERY = 100
const NAMES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l']
const XATTR_NAMES = ['user.x', 'user.y', 'user.z']
const MAX_FILE = 3 * 1024 * 1024
const HISTORY = 25
/** Op kinds to leave out (comma-separated, e.g. "link,rename"), to narrow down a failure. */
const EXCLUDED = new Set((process.env.BAZIL_DIFF_EXCLUDE ?? '').split(',').filter((name) => name !== ''))

type Op =
  | { op: 'write', path: string, offset: number, length: number, dataSeed: number, mode: number, append: boolean }
  | { op: 'truncate', path: string, size: number, viaFd: boolean }
  | { op: 'read', path: string, offset: number, length: number }
  | { op: 'rename', from: string, to: string }
  | { op: 'mkdir', path: string, mode: number }
  | { op: 'rmdir', path: string }
  | { op: 'unlink', path: string }
  | { op: 'symlink', target: string, path: string }
  | { op: 'readlink', path: string }
  | { op: 'chmod', path: string, mode: number }
  | { op: 'link', from: string, to: string }
  | { op: 'setxattr', path: string, name: string, value: string }
  | { op: 'removexattr', path: string, name: string }
  | { op: 'getxattr', path: string, name: string }
  | { op: 'listxattr', path: string }
  | { op: 'stat', path: string, follow: boolean }
  | { op: 'readdir', path: string }
  // Descriptors kept open across other operations (renames, unlinks, truncates of their file).
  | { op: 'fdopen', slot: number, path: string, create: boolean }
  | { op: 'fdwrite', slot: number, offset: number, length: number, dataSeed: number }
  | { op: 'fdread', slot: number, offset: number, length: number }
  | { op: 'fdtruncate', slot: number, size: number }
  | { op: 'fdstat', slot: number }
  | { op: 'fdsync', slot: number }
  | { op: 'fdclose', slot: number }

interface Outcome { code: string, value?: unknown }

interface Entry { type: 'file' | 'dir' | 'symlink' | 'other', size: number }

/**
 * The reference tree's entries by relative path ('' is the root), sorted. Runs after every
 * operation, so it is synchronous: the reference is a local directory, and sync calls are
 * several times faster than the thread pool round trips.
 */
function scan (root: string): Map<string, Entry> {
  const entries = new Map<string, Entry>([['', { type: 'dir', size: 0 }]])
  const walk = (rel: string): void => {
    const children = readdirSync(join(root, rel), { withFileTypes: true }).sort((x, y) => x.name < y.name ? -1 : 1)
    for (const dirent of children) {
      const child = rel === '' ? dirent.name : `${rel}/${dirent.name}`
      const type = dirent.isFile() ? 'file' : dirent.isDirectory() ? 'dir' : dirent.isSymbolicLink() ? 'symlink' : 'other'
      entries.set(child, { type, size: type === 'file' ? lstatSync(join(root, child)).size : 0 })
      if (type === 'dir') walk(child)
    }
  }
  walk('')
  return entries
}

const SLOTS = 3
const FD_OPS = ['fdopen', 'fdwrite', 'fdread', 'fdtruncate', 'fdstat', 'fdsync', 'fdclose']
if (kind === 'bindfs') {
  // bindfs (libfuse without hard_remove) renames an unlinked open file to .fuse_hiddenNNN, which
  // then shows in listings and keeps its directory non-empty: no open descriptors there.
  for (const name of FD_OPS) EXCLUDED.add(name)
}

/**
 * `xattrPaths`: names a setxattr recently succeeded on, so get/remove often find something;
 * `openSlots`: which descriptor slots hold an open file.
 */
function generate (rng: Rng, tree: Map<string, Entry>, xattrPaths: string[], openSlots: boolean[]): Op {
  const all = [...tree.keys()].filter((p) => p !== '')
  const dirs = [...tree].filter(([, e]) => e.type === 'dir').map(([p]) => p)
  const files = [...tree].filter(([, e]) => e.type === 'file').map(([p]) => p)
  const under = (dir: string, name: string): string => dir === '' ? name : `${dir}/${name}`
  const randomPath = (): string => {
    const depth = rng.int(1, 3)
    return Array.from({ length: depth }, () => rng.pick(NAMES)).join('/')
  }
  const newPath = (): string => under(rng.pick(dirs), rng.pick(NAMES))
  const existing = (pool: string[] = all): string => pool.length > 0 ? rng.pick(pool) : newPath()
  /** Mostly a name that exists, sometimes a fresh one, rarely anything. */
  const somePath = (pool: string[] = all): string => {
    const r = rng.next()
    return r < 0.6 ? existing(pool) : r < 0.9 ? newPath() : randomPath()
  }
  const xattrPath = (): string => xattrPaths.length > 0 && rng.chance(0.7) ? rng.pick(xattrPaths) : somePath()
  const sizeOf = (path: string): number => tree.get(path)?.size ?? 0
  const fileMode = (): number => rng.pick([0o644, 0o600, 0o755, 0o640, 0o444, 0o000, 0o777, rng.int(0, 0o777)])

  const weights: Array<[Op['op'], number]> = [
    ['write', 20], ['truncate', 7], ['read', 10], ['rename', 12], ['mkdir', 5], ['rmdir', 5],
    ['unlink', 7], ['symlink', 4], ['readlink', 2], ['chmod', 4], ['link', 5], ['setxattr', 4],
    ['removexattr', 2], ['getxattr', 3], ['listxattr', 2], ['stat', 4], ['readdir', 3],
    ['fdopen', 3], ['fdwrite', 4], ['fdread', 3], ['fdtruncate', 1], ['fdstat', 2], ['fdsync', 1], ['fdclose', 2]
  ]
  const enabled = weights.filter(([name]) => !EXCLUDED.has(name))
  let roll = rng.int(0, enabled.reduce((sum, [, w]) => sum + w, 0) - 1)
  let chosen: Op['op'] = 'write'
  for (const [name, weight] of enabled) {
    if (roll < weight) { chosen = name; break }
    roll -= weight
  }

  switch (chosen) {
    case 'write': {
      const path = rng.chance(0.6) ? existing(files) : somePath()
      const size = sizeOf(path)
      const big = rng.chance(0.1)
      const length = big ? rng.int(0, 1024 * 1024) : rng.int(0, 65536)
      const offset = Math.min(rng.chance(0.3) ? size : rng.int(0, size + 300_000), MAX_FILE - length)
      return { op: 'write', path, offset, length, dataSeed: rng.int(0, 0xffffffff), mode: fileMode(), append: rng.chance(0.2) }
    }
    case 'truncate': {
      const path = rng.chance(0.8) ? existing(files) : somePath()
      const size = sizeOf(path)
      const target = rng.pick([0, Math.max(0, size - 1), rng.int(0, size), size + rng.int(1, 200_000), rng.int(0, 2 * MAX_FILE / 3)])
      return { op: 'truncate', path, size: target, viaFd: rng.chance(0.5) }
    }
    case 'read': {
      const path = rng.chance(0.8) ? existing(files) : somePath()
      const size = sizeOf(path)
      return { op: 'read', path, offset: rng.int(0, size + 10), length: rng.int(0, Math.min(size + 100, 400_000)) }
    }
    case 'rename': {
      const from = somePath()
      const r = rng.next()
      const to = r < 0.4 ? existing() : r < 0.85 ? newPath() : r < 0.95 ? under(from, rng.pick(NAMES)) : randomPath()
      return { op: 'rename', from, to }
    }
    case 'mkdir': return { op: 'mkdir', path: rng.chance(0.8) ? newPath() : somePath(), mode: rng.pick([0o755, 0o700, 0o750, 0o777]) }
    case 'rmdir': return { op: 'rmdir', path: somePath(dirs.filter((d) => d !== '')) }
    case 'unlink': return { op: 'unlink', path: somePath() }
    case 'symlink': {
      // Relative targets without '..' always resolve below the link's own directory, so no
      // operation that follows a link can ever reach outside either tree.
      const target = Array.from({ length: rng.int(1, 2) }, () => rng.pick(NAMES)).join('/')
      return { op: 'symlink', target, path: rng.chance(0.85) ? newPath() : somePath() }
    }
    case 'readlink': return { op: 'readlink', path: somePath() }
    case 'chmod': {
      const path = somePath()
      // Set-id bits only through chmod: bindfs drops them from a create mode.
      const mode = tree.get(path)?.type === 'dir' ? 0o700 | rng.int(0, 0o77) : rng.chance(0.1) ? rng.pick([0o4755, 0o2750, 0o6711]) : fileMode()
      return { op: 'chmod', path, mode }
    }
    case 'link': return { op: 'link', from: somePath(), to: rng.chance(0.85) ? newPath() : somePath() }
    case 'setxattr':
      return { op: 'setxattr', path: somePath(), name: rng.pick(XATTR_NAMES), value: rng.bytes(rng.int(0, 64)).toString('hex') }
    case 'removexattr': return { op: 'removexattr', path: xattrPath(), name: rng.pick(XATTR_NAMES) }
    case 'getxattr': return { op: 'getxattr', path: xattrPath(), name: rng.pick(XATTR_NAMES) }
    case 'listxattr': return { op: 'listxattr', path: xattrPath() }
    case 'stat': return { op: 'stat', path: somePath(), follow: rng.chance(0.5) }
    case 'readdir': return { op: 'readdir', path: rng.chance(0.7) ? rng.pick(dirs) : somePath() }
    default: {
      const open = openSlots.flatMap((isOpen, slot) => isOpen ? [slot] : [])
      const free = openSlots.flatMap((isOpen, slot) => isOpen ? [] : [slot])
      if (chosen === 'fdopen' || open.length === 0) {
        if (free.length === 0) return { op: 'fdclose', slot: rng.pick(open) }
        return { op: 'fdopen', slot: rng.pick(free), path: rng.chance(0.8) ? existing(files) : somePath(), create: rng.chance(0.3) }
      }
      const slot = rng.pick(open)
      switch (chosen) {
        case 'fdwrite': {
          const length = rng.int(0, 65536)
          return { op: 'fdwrite', slot, offset: rng.int(0, MAX_FILE - length), length, dataSeed: rng.int(0, 0xffffffff) }
        }
        case 'fdread': return { op: 'fdread', slot, offset: rng.int(0, 1024 * 1024), length: rng.int(0, 200_000) }
        case 'fdtruncate': return { op: 'fdtruncate', slot, size: rng.int(0, 1024 * 1024) }
        case 'fdstat': return { op: 'fdstat', slot }
        case 'fdsync': return { op: 'fdsync', slot }
        default: return { op: 'fdclose', slot }
      }
    }
  }
}

function sha (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 16)
}

function typeOf (mode: number): string {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFREG: return 'file'
    case constants.S_IFDIR: return 'dir'
    case constants.S_IFLNK: return 'symlink'
    default: return 'other'
  }
}

/** One side of the test: its root and its open descriptors by slot. */
interface Side { root: string, slots: Array<FileHandle | undefined> }

async function apply (side: Side, op: Op, sys: Syscalls): Promise<Outcome> {
  const at = (rel: string): string => join(side.root, rel)
  const fd = (slot: number): FileHandle => {
    const handle = side.slots[slot]
    if (handle === undefined) throw new Error(`slot ${slot} is not open: the generator is wrong`)
    return handle
  }
  const sysOutcome = (result: SysResult<unknown>): Outcome =>
    result.ok ? { code: 'OK', value: Buffer.isBuffer(result.value) ? result.value.toString('hex') : result.value ?? undefined } : { code: result.code }
  try {
    switch (op.op) {
      case 'write': {
        const flags = op.append
          ? constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND
          : constants.O_WRONLY | constants.O_CREAT
        const handle = await open(at(op.path), flags, op.mode)
        try {
          const data = createRng(op.dataSeed).bytes(op.length)
          const { bytesWritten } = await handle.write(data, 0, data.length, op.append ? null : op.offset)
          return { code: 'OK', value: bytesWritten }
        } finally {
          await handle.close()
        }
      }
      case 'truncate': {
        if (!op.viaFd) {
          await truncate(at(op.path), op.size)
          return { code: 'OK' }
        }
        const handle = await open(at(op.path), 'r+')
        try { await handle.truncate(op.size) } finally { await handle.close() }
        return { code: 'OK' }
      }
      case 'read': {
        const handle = await open(at(op.path), 'r')
        try {
          const buffer = Buffer.alloc(op.length)
          const { bytesRead } = await handle.read(buffer, 0, op.length, op.offset)
          return { code: 'OK', value: `${bytesRead}:${sha(buffer.subarray(0, bytesRead))}` }
        } finally {
          await handle.close()
        }
      }
      case 'rename': await rename(at(op.from), at(op.to)); return { code: 'OK' }
      case 'mkdir': await mkdir(at(op.path), op.mode); return { code: 'OK' }
      case 'rmdir': await rmdir(at(op.path)); return { code: 'OK' }
      case 'unlink': await unlink(at(op.path)); return { code: 'OK' }
      case 'symlink': await symlink(op.target, at(op.path)); return { code: 'OK' }
      case 'readlink': return { code: 'OK', value: await readlink(at(op.path)) }
      case 'chmod': await chmod(at(op.path), op.mode); return { code: 'OK' }
      case 'link': await link(at(op.from), at(op.to)); return { code: 'OK' }
      case 'setxattr': return sysOutcome(await sys.setxattr(at(op.path), op.name, Buffer.from(op.value, 'hex')))
      case 'removexattr': return sysOutcome(await sys.removexattr(at(op.path), op.name))
      case 'getxattr': return sysOutcome(await sys.getxattr(at(op.path), op.name))
      case 'listxattr': return sysOutcome(await sys.listxattr(at(op.path)))
      case 'stat': {
        const st = op.follow ? await stat(at(op.path)) : await lstat(at(op.path))
        const type = typeOf(st.mode)
        return {
          code: 'OK',
          value: { type, mode: st.mode & 0o7777, size: type === 'dir' ? undefined : st.size, nlink: type === 'dir' ? undefined : st.nlink }
        }
      }
      case 'readdir': return { code: 'OK', value: (await readdir(at(op.path))).sort() }
      case 'fdopen': {
        const flags = constants.O_RDWR | (op.create ? constants.O_CREAT : 0)
        side.slots[op.slot] = await open(at(op.path), flags, 0o644)
        return { code: 'OK' }
      }
      case 'fdwrite': {
        const data = createRng(op.dataSeed).bytes(op.length)
        return { code: 'OK', value: (await fd(op.slot).write(data, 0, data.length, op.offset)).bytesWritten }
      }
      case 'fdread': {
        const buffer = Buffer.alloc(op.length)
        const { bytesRead } = await fd(op.slot).read(buffer, 0, op.length, op.offset)
        return { code: 'OK', value: `${bytesRead}:${sha(buffer.subarray(0, bytesRead))}` }
      }
      case 'fdtruncate': await fd(op.slot).truncate(op.size); return { code: 'OK' }
      case 'fdstat': {
        const st = await fd(op.slot).stat()
        return { code: 'OK', value: { mode: st.mode.toString(8), size: st.size, nlink: st.nlink } }
      }
      case 'fdsync': await fd(op.slot).sync(); return { code: 'OK' }
      case 'fdclose': {
        const handle = fd(op.slot)
        side.slots[op.slot] = undefined
        await handle.close()
        return { code: 'OK' }
      }
    }
  } catch (err) {
    const code = errnoOf(err)
    if (code === undefined) throw err
    return { code }
  }
}

/** For a failure message: what each side shows now for the op's paths and their parents. */
async function describePaths (op: Op, mountRoot: string, refRoot: string): Promise<string> {
  if (!('path' in op) && !('from' in op)) return `(descriptor slot ${op.slot})`
  const paths = [...new Set(Object.entries(op).filter(([key]) => ['path', 'from', 'to'].includes(key)).map(([, v]) => String(v)))]
  const look = async (root: string, rel: string): Promise<string> => {
    const st = await lstat(join(root, rel)).catch((err: unknown) => errnoOf(err) ?? String(err))
    return typeof st === 'string' ? st : `${typeOf(st.mode)} ${(st.mode & 0o7777).toString(8)} size ${st.size} nlink ${st.nlink}`
  }
  const list = async (root: string, rel: string): Promise<string> =>
    await readdir(join(root, rel)).then((names) => `[${names.sort().join(' ')}]`, (err: unknown) => errnoOf(err) ?? String(err))
  const lines: string[] = []
  for (const rel of paths) {
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : ''
    lines.push(`${rel}: mount ${await look(mountRoot, rel)} | ref ${await look(refRoot, rel)}`)
    lines.push(`${parent === '' ? '(root)' : parent}/: mount ${await list(mountRoot, parent)} | ref ${await list(refRoot, parent)}`)
  }
  return lines.join('\n  ')
}

interface TreeEntry {
  path: string
  type: string
  mode: string
  size?: number
  content?: string
  target?: string
  nlink?: number
  xattrs?: Record<string, string> | string
}

/** Everything comparable about a tree, plus which names share an inode and dirs' nlink. */
async function snapshot (root: string, sys: Syscalls): Promise<{ entries: TreeEntry[], inodeGroups: string[][], dirNlink: Map<string, number> }> {
  const entries: TreeEntry[] = []
  const byIno = new Map<bigint, string[]>()
  const dirNlink = new Map<string, number>()
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`
      const st = await lstat(join(root, path), { bigint: true })
      const type = typeOf(Number(st.mode))
      const entry: TreeEntry = { path, type, mode: (Number(st.mode) & 0o7777).toString(8) }
      if (type === 'file') {
        entry.size = Number(st.size)
        entry.content = sha(await readFile(join(root, path)))
        entry.nlink = Number(st.nlink)
      } else if (type === 'symlink') {
        entry.target = await readlink(join(root, path))
        entry.nlink = Number(st.nlink)
      }
      if (type !== 'dir') byIno.set(st.ino, [...(byIno.get(st.ino) ?? []), path])
      entries.push(entry)
      if (type === 'dir') {
        dirNlink.set(path, Number(st.nlink))
        await walk(path)
      }
    }
  }
  await walk('')
  const dump = await sys.dumpxattrs(entries.map((e) => join(root, e.path)))
  if (!dump.ok) throw new Error(`xattr dump failed: ${dump.code}`)
  for (const entry of entries) {
    if (entry.type === 'symlink') continue // user.* xattrs cannot be set on symlinks themselves
    entry.xattrs = dump.value[join(root, entry.path)]
  }
  const inodeGroups = [...byIno.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort()
  return { entries, inodeGroups, dirNlink }
}

describe.runIf(requireFuse(kind, ['python3']))(`differential: ${kind} mount vs a plain directory`, () => {
  const volume = useVolume(kind)
  let sys: Syscalls
  let reference: string
  beforeAll(async () => {
    process.umask(0o022)
    sys = startSyscalls()
    reference = await tmpDir('bazil-diff-ref-')
  })
  afterAll(async () => {
    await sys.close()
    await rm(reference, { recursive: true, force: true })
  })

  it(`applies ${OPS} random operations with identical outcomes and trees`, async () => {
    const seed = testSeed()
    console.log(`differential test on ${kind}: BAZIL_SEED=${seed} BAZIL_DIFF_OPS=${OPS}` +
      (EXCLUDED.size > 0 ? ` BAZIL_DIFF_EXCLUDE=${[...EXCLUDED].join(',')}` : ''))
    const rng = createRng(seed)
    const mountRoot = join(volume().mount, 'diff')
    await mkdir(mountRoot)
    await mkdir(join(reference, 'diff'))
    const refRoot = join(reference, 'diff')
    const log: string[] = []
    const logPath = join(tmpdir(), `bazil-diff-${kind}-${seed}.log`)
    /** A failure message; also writes the whole op log, kept on purpose for diagnosis. */
    const failure = (i: number, what: string): string => {
      writeFileSync(logPath, log.join('\n') + '\n')
      return `${what}; BAZIL_SEED=${seed} (target ${kind}), op #${i}; full op log: ${logPath}; ` +
        `last ops:\n  ${log.slice(-HISTORY).join('\n  ')}`
    }

    const compareTrees = async (i: number, when: string): Promise<void> => {
      const [mine, theirs] = [await snapshot(mountRoot, sys), await snapshot(refRoot, sys)]
      if (!isDeepStrictEqual(mine.entries, theirs.entries)) {
        expect(mine.entries, failure(i, `tree differs ${when}`)).toEqual(theirs.entries)
      }
      if (!isDeepStrictEqual(mine.inodeGroups, theirs.inodeGroups)) {
        expect(mine.inodeGroups, failure(i, `hard link groups differ ${when}`)).toEqual(theirs.inodeGroups)
      }
      for (const [dir, nlink] of theirs.dirNlink) {
        // Directory link counts: the reference's 2 + subdirectories, or 1 ("not counted", as
        // btrfs and many FUSE file systems report) are both acceptable.
        const got = mine.dirNlink.get(dir)
        if (got !== 1 && got !== nlink) expect(got, failure(i, `nlink of dir ${dir} ${when}`)).toBe(nlink)
      }
    }

    let tree = scan(refRoot)
    let xattrPaths: string[] = []
    const mountSide: Side = { root: mountRoot, slots: Array.from({ length: SLOTS }, () => undefined) }
    const refSide: Side = { root: refRoot, slots: Array.from({ length: SLOTS }, () => undefined) }
    const counts = new Map<string, number>()
    onTestFinished(async () => {
      // After a failure, descriptors may still be open; they would keep the mount busy.
      for (const handle of [...mountSide.slots, ...refSide.slots]) await handle?.close().catch(() => {})
    })
    for (let i = 1; i <= OPS; i++) {
      const op = generate(rng, tree, xattrPaths, refSide.slots.map((h) => h !== undefined))
      const expected = await apply(refSide, op, sys)
      const actual = await apply(mountSide, op, sys)
      log.push(`#${i} ${JSON.stringify(op)} -> ref ${JSON.stringify(expected)}`)
      const key = `${op.op}:${expected.code}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
      if (op.op === 'rmdir' && expected.code === 'OK' && actual.code === 'ENOTEMPTY' &&
          (await readdir(join(mountRoot, op.path))).length === 0) {
        // Documented libfuse 2 behaviour (src/fs/fuse.ts rmdir): a directory whose unlinked
        // file is still open stays until the descriptor closes. Mirror it in the reference.
        await mkdir(join(refRoot, op.path), { mode: (await stat(join(mountRoot, op.path))).mode & 0o7777 })
        await chmod(join(refRoot, op.path), (await stat(join(mountRoot, op.path))).mode & 0o7777)
        // The directory kept its xattrs too (seed 873409812).
        const kept = await sys.dumpxattrs([join(mountRoot, op.path)])
        const xattrs = kept.ok ? kept.value[join(mountRoot, op.path)] : undefined
        if (typeof xattrs === 'object') {
          for (const [name, hex] of Object.entries(xattrs)) await sys.setxattr(join(refRoot, op.path), name, Buffer.from(hex, 'hex'))
        }
        log.push(`#${i} (rmdir refused while an unlinked file in it is open; reference re-created)`)
        tree = scan(refRoot)
        continue
      }
      if (!isDeepStrictEqual(actual, expected)) {
        const state = await describePaths(op, mountRoot, refRoot)
        expect(actual, `${failure(i, `outcome of ${op.op} differs`)}\nstate right after:\n  ${state}`).toEqual(expected)
      }
      tree = scan(refRoot)
      if (op.op === 'setxattr' && expected.code === 'OK') xattrPaths = [...xattrPaths.slice(-9), op.path]
      if (i % TREE_EVERY === 0) await compareTrees(i, `after op #${i}`)
    }
    for (let slot = 0; slot < SLOTS; slot++) {
      if (refSide.slots[slot] === undefined) continue
      const op: Op = { op: 'fdclose', slot }
      const [expected, actual] = [await apply(refSide, op, sys), await apply(mountSide, op, sys)]
      log.push(`#end ${JSON.stringify(op)} -> ref ${JSON.stringify(expected)}`)
      if (!isDeepStrictEqual(actual, expected)) expect(actual, failure(OPS, `closing slot ${slot} at the end`)).toEqual(expected)
    }
    await compareTrees(OPS, 'at the end')
    console.log(`outcomes: ${[...counts].sort().map(([k, n]) => `${k}=${n}`).join(' ')}`)

    // The same tree must come back after a remount.
    await volume().remount()
    await compareTrees(OPS, 'after remount')
  }, 600_000)
})
