/**
 * POSIX behaviour of a mounted volume, through the kernel, as any program sees it: data at any
 * offset, holes, append, truncate, unlink (also while open), directories, the rename rules,
 * symlinks, modes, owners, times, statfs, xattrs, fsync, hard links, refused special files, and
 * persistence across a remount. Runs on Bazil, or on bindfs (BAZIL_TEST_TARGET=bindfs) to check
 * the test itself against a reference FUSE file system.
 */
import { createHash } from 'node:crypto'
import {
  chmod, chown, lchown, link, lstat, mkdir, open, readdir, readFile, readlink, rename, rmdir,
  stat, statfs, symlink, truncate, unlink, utimes, writeFile
} from 'node:fs/promises'
import type { BigIntStats } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errnoOf, exec, requireFuse, sleep, testTarget, useVolume } from '../helpers/mount.ts'
import { createRng } from '../helpers/rng.ts'
import { XATTR_CREATE, XATTR_REPLACE, startSyscalls } from '../helpers/syscalls.ts'
import type { Syscalls } from '../helpers/syscalls.ts'

const kind = testTarget()
const S_IFMT = 0o170000
const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const S_IFLNK = 0o120000
const MiB = 1024 * 1024

/** 'OK' or the errno name, so expectations read as the outcome. */
async function outcome (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'OK'
  } catch (err) {
    const code = errnoOf(err)
    if (code === undefined) throw err
    return code
  }
}

async function bstat (path: string): Promise<BigIntStats> {
  return await stat(path, { bigint: true })
}

/** Long enough that any clock the file system keeps (ns or ms) has moved on. Not a threshold. */
async function letClockTick (): Promise<void> {
  await sleep(20)
}

function sha (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

describe.runIf(requireFuse(kind, ['python3', 'touch']))(`POSIX behaviour on a ${kind} mount`, () => {
  const volume = useVolume(kind)
  let sys: Syscalls
  let counter = 0
  /** A fresh directory per test so tests never see each other's entries. */
  const fresh = async (): Promise<string> => {
    const dir = join(volume().mount, `t${counter++}`)
    await mkdir(dir)
    return dir
  }

  beforeAll(() => {
    process.umask(0o022)
    sys = startSyscalls()
  })
  afterAll(async () => { await sys.close() })

  it('creates, opens and reads files with the right type, mode and size', async () => {
    const dir = await fresh()
    const path = join(dir, 'a.txt')
    const handle = await open(path, 'wx', 0o640)
    await handle.write(Buffer.from('hello world'))
    await handle.close()
    const st = await stat(path)
    expect(st.mode & S_IFMT).toBe(S_IFREG)
    expect(st.mode & 0o7777).toBe(0o640)
    expect(st.size).toBe(11)
    expect(st.nlink).toBe(1)
    expect(st.uid).toBe(process.getuid?.())
    expect(await readFile(path, 'utf8')).toBe('hello world')
    expect(await readdir(dir)).toEqual(['a.txt'])

    expect(await outcome(open(path, 'wx'))).toBe('EEXIST')
    expect(await outcome(open(join(dir, 'missing'), 'r'))).toBe('ENOENT')
    expect(await outcome(open(dir, 'w'))).toBe('EISDIR')
    expect(await outcome(open(join(path, 'below'), 'w'))).toBe('ENOTDIR')
    // O_TRUNC empties an existing file.
    await (await open(path, 'w')).close()
    expect((await stat(path)).size).toBe(0)
  })

  it('reads and writes at any offset, and holes read as zeros', async () => {
    const dir = await fresh()
    const rng = createRng(7)
    const path = join(dir, 'sparse')
    const handle = await open(path, 'w+')
    // A single byte far past EOF makes a hole.
    await handle.write(Buffer.from('x'), 0, 1, MiB + 5)
    expect((await handle.stat()).size).toBe(MiB + 6)
    const head = Buffer.alloc(MiB + 5, 0xff)
    const { bytesRead } = await handle.read(head, 0, head.length, 0)
    expect(bytesRead).toBe(MiB + 5)
    expect(head.every((b) => b === 0)).toBe(true)

    // Scattered writes at odd offsets and sizes, checked against a model.
    const model = Buffer.alloc(3 * MiB + 17)
    model[MiB + 5] = 0x78
    for (let i = 0; i < 40; i++) {
      const offset = rng.int(0, model.length - 1)
      const length = Math.min(rng.int(1, 200_000), model.length - offset)
      const data = rng.bytes(length)
      data.copy(model, offset)
      await handle.write(data, 0, length, offset)
    }
    await handle.write(Buffer.alloc(0), 0, 0, model.length) // a zero-length write does not extend
    const size = (await handle.stat()).size
    const expected = model.subarray(0, size)
    await handle.close()
    expect(sha(await readFile(path))).toBe(sha(expected))
    // Reads at random ranges, including across the end of the file.
    const reader = await open(path, 'r')
    for (let i = 0; i < 30; i++) {
      const offset = rng.int(0, size + 10)
      const length = rng.int(0, 300_000)
      const buffer = Buffer.alloc(length)
      const result = await reader.read(buffer, 0, length, offset)
      expect(result.bytesRead).toBe(Math.max(0, Math.min(length, size - offset)))
      expect(sha(buffer.subarray(0, result.bytesRead))).toBe(sha(expected.subarray(offset, offset + result.bytesRead)))
    }
    await reader.close()
  })

  it('appends with O_APPEND even when another descriptor moved the end', async () => {
    const dir = await fresh()
    const path = join(dir, 'log')
    await writeFile(path, 'abc')
    const appender = await open(path, 'a')
    const other = await open(path, 'r+')
    await appender.write('def')
    await other.write('X', 0)
    await other.write('12', 6) // extends the file to 8 bytes
    await appender.write('ghi')
    // Positional writes on an O_APPEND descriptor still append on Linux.
    await appender.write(Buffer.from('!'), 0, 1, 0)
    await appender.close()
    await other.close()
    expect(await readFile(path, 'utf8')).toBe('Xbcdef12ghi!')
  })

  it('truncates and ftruncates, growing with zeros and shrinking for good', async () => {
    const dir = await fresh()
    const path = join(dir, 'f')
    const data = createRng(11).bytes(300_000)
    await writeFile(path, data)
    await truncate(path, 100)
    expect((await stat(path)).size).toBe(100)
    // Growing again must not resurrect the bytes cut off before.
    await truncate(path, 200_000)
    const grown = await readFile(path)
    expect(grown.length).toBe(200_000)
    expect(grown.subarray(0, 100).equals(data.subarray(0, 100))).toBe(true)
    expect(grown.subarray(100).every((b) => b === 0)).toBe(true)

    const handle = await open(path, 'r+')
    await handle.truncate(5)
    expect((await handle.stat()).size).toBe(5)
    await handle.truncate(2 * MiB + 3)
    await handle.write(Buffer.from('end'), 0, 3, 2 * MiB)
    await handle.close()
    const after = await readFile(path)
    expect(after.length).toBe(2 * MiB + 3)
    expect(after.subarray(0, 5).equals(data.subarray(0, 5))).toBe(true)
    expect(after.subarray(5, 2 * MiB).every((b) => b === 0)).toBe(true)
    expect(after.subarray(2 * MiB).toString()).toBe('end')
    await truncate(path, 0)
    expect((await readFile(path)).length).toBe(0)
    expect(await outcome(truncate(join(dir, 'missing'), 0))).toBe('ENOENT')
    expect(await outcome(truncate(dir, 0))).toBe('EISDIR')
  })

  it('unlinks files, and refuses directories and missing names', async () => {
    const dir = await fresh()
    await writeFile(join(dir, 'a'), 'a')
    await mkdir(join(dir, 'd'))
    await unlink(join(dir, 'a'))
    expect(await outcome(stat(join(dir, 'a')))).toBe('ENOENT')
    expect(await outcome(unlink(join(dir, 'a')))).toBe('ENOENT')
    expect(await outcome(unlink(join(dir, 'd')))).toBe('EISDIR')
    expect(await readdir(dir)).toEqual(['d'])
  })

  it('keeps the directory of an unlinked open file until the descriptor closes (libfuse 2)', async () => {
    if (kind === 'bindfs') return // bindfs passes rmdir through to the backing directory
    const dir = await fresh()
    const sub = join(dir, 'sub')
    await mkdir(sub)
    await writeFile(join(sub, 'f'), 'still here')
    const handle = await open(join(sub, 'f'), 'r')
    await unlink(join(sub, 'f'))
    await expect(rmdir(sub)).rejects.toMatchObject({ code: 'ENOTEMPTY' })
    expect((await handle.stat()).size).toBe(10)
    expect((await handle.readFile('utf8'))).toBe('still here')
    await handle.close()
    await rmdir(sub)
    expect(await readdir(dir)).toEqual([])
  })

  it('keeps an unlinked file readable and writable through its open descriptor', async () => {
    const dir = await fresh()
    const path = join(dir, 'open-unlinked')
    const handle = await open(path, 'w+')
    await handle.write('before')
    await unlink(path)
    expect(await outcome(stat(path))).toBe('ENOENT')
    const listing = await readdir(dir)
    if (kind === 'bindfs') {
      // libfuse's high-level API without hard_remove (bindfs) renames it to .fuse_hiddenNNN.
      expect(listing.every((name) => name.startsWith('.fuse_hidden'))).toBe(true)
    } else {
      expect(listing).toEqual([])
    }
    await handle.write('+after', 6)
    const buffer = Buffer.alloc(64)
    const { bytesRead } = await handle.read(buffer, 0, 64, 0)
    expect(buffer.subarray(0, bytesRead).toString()).toBe('before+after')
    // fstat on the open descriptor still works, with no name left.
    const fstat = await handle.stat().then((st) => ({ size: st.size, nlink: st.nlink }), (err: unknown) => errnoOf(err))
    expect.soft(fstat)
      .toEqual({ size: 12, nlink: 0 })
    expect(await outcome(handle.sync())).toBe('OK')
    // A new file with the same name is a different file.
    await writeFile(path, 'new')
    const again = Buffer.alloc(64)
    const second = await handle.read(again, 0, 64, 0)
    expect(again.subarray(0, second.bytesRead).toString()).toBe('before+after')
    await handle.close()
    expect(await readFile(path, 'utf8')).toBe('new')
    await unlink(path)
    expect(await readdir(dir)).toEqual([])
    await rmdir(dir)
  })

  it('keeps an open file that loses one of several names linked to the others', async () => {
    const dir = await fresh()
    const p = (name: string): string => join(dir, name)
    await writeFile(p('a'), 'x'.repeat(10))
    await link(p('a'), p('b'))
    const handle = await open(p('a'), 'r+')
    await unlink(p('a'))
    const nlinkAfterUnlink = (await handle.stat()).nlink
    await handle.write('YY', 0)
    // Replacing a name by rename is the other way to lose one.
    await writeFile(p('c'), 'c'.repeat(5))
    await link(p('c'), p('d'))
    await link(p('c'), p('e'))
    await writeFile(p('n'), 'new')
    const second = await open(p('c'), 'r+')
    await rename(p('n'), p('c'))
    const nlinkAfterRename = (await second.stat()).nlink
    await second.write('Z', 0)
    await second.close()
    await handle.close()
    expect(await readFile(p('b'), 'utf8')).toBe('YYxxxxxxxx')
    expect(await readFile(p('d'), 'utf8')).toBe('Zcccc')
    expect(await readFile(p('c'), 'utf8')).toBe('new')
    expect((await stat(p('b'))).nlink).toBe(1)
    expect((await stat(p('d'))).nlink).toBe(2)
    expect((await readdir(dir)).sort()).toEqual(['b', 'c', 'd', 'e'])
    if (kind === 'bindfs') {
      // bindfs keeps the lost name as .fuse_hiddenNNN until close, so it still counts a link.
      return
    }
    expect({ nlinkAfterUnlink, nlinkAfterRename }).toEqual({ nlinkAfterUnlink: 1, nlinkAfterRename: 2 })
  })

  it('treats rename between two names of one inode as a no-op, also while one is open', async () => {
    const dir = await fresh()
    const p = (name: string): string => join(dir, name)
    await writeFile(p('a'), 'shared')
    await link(p('a'), p('b'))
    const handle = await open(p('b'), 'r+')
    await rename(p('a'), p('b'))
    await handle.close()
    const names = (await readdir(dir)).sort()
    if (kind === 'bindfs') {
      // libfuse's path API hides the open target (.fuse_hiddenNNN) before renaming onto it.
      return
    }
    expect(names).toEqual(['a', 'b'])
    expect((await stat(p('a'))).nlink).toBe(2)
    expect(await readFile(p('a'), 'utf8')).toBe('shared')
  })

  it('makes and removes directories with the POSIX errors', async () => {
    const dir = await fresh()
    const sub = join(dir, 'sub')
    await mkdir(sub, 0o750)
    const st = await stat(sub)
    expect(st.mode & S_IFMT).toBe(S_IFDIR)
    expect(st.mode & 0o7777).toBe(0o750)
    expect(await outcome(mkdir(sub))).toBe('EEXIST')
    expect(await outcome(mkdir(join(dir, 'no', 'such')))).toBe('ENOENT')
    await writeFile(join(sub, 'f'), 'x')
    expect(await outcome(rmdir(sub))).toBe('ENOTEMPTY')
    expect(await outcome(rmdir(join(sub, 'f')))).toBe('ENOTDIR')
    expect(await outcome(rmdir(join(dir, 'missing')))).toBe('ENOENT')
    expect(await outcome(mkdir(join(sub, 'f', 'x')))).toBe('ENOTDIR')
    await unlink(join(sub, 'f'))
    await rmdir(sub)
    expect(await outcome(stat(sub))).toBe('ENOENT')
    expect(await readdir(dir)).toEqual([])
  })

  it('renames files and directories across directories', async () => {
    const dir = await fresh()
    await mkdir(join(dir, 'x'))
    await mkdir(join(dir, 'y'))
    await writeFile(join(dir, 'x', 'f'), 'content of f')
    const ino = (await stat(join(dir, 'x', 'f'))).ino
    await rename(join(dir, 'x', 'f'), join(dir, 'y', 'g'))
    expect(await readdir(join(dir, 'x'))).toEqual([])
    expect(await readdir(join(dir, 'y'))).toEqual(['g'])
    expect(await readFile(join(dir, 'y', 'g'), 'utf8')).toBe('content of f')
    expect((await stat(join(dir, 'y', 'g'))).ino).toBe(ino)

    // A directory with content moves as a whole, deep entries included.
    await mkdir(join(dir, 'x', 'tree', 'deep'), { recursive: true })
    await writeFile(join(dir, 'x', 'tree', 'deep', 'leaf'), 'leaf')
    await rename(join(dir, 'x', 'tree'), join(dir, 'y', 'moved'))
    expect(await readFile(join(dir, 'y', 'moved', 'deep', 'leaf'), 'utf8')).toBe('leaf')
    expect(await outcome(stat(join(dir, 'x', 'tree')))).toBe('ENOENT')
    // Renaming a name onto itself changes nothing.
    await rename(join(dir, 'y', 'g'), join(dir, 'y', 'g'))
    expect(await readFile(join(dir, 'y', 'g'), 'utf8')).toBe('content of f')
    expect(await outcome(rename(join(dir, 'missing'), join(dir, 'z')))).toBe('ENOENT')
    expect(await outcome(rename(join(dir, 'y', 'g'), join(dir, 'nodir', 'g')))).toBe('ENOENT')
  })

  it('follows the POSIX overwrite rules on rename', async () => {
    const dir = await fresh()
    const p = (name: string): string => join(dir, name)
    await writeFile(p('file1'), 'one')
    await writeFile(p('file2'), 'two')
    await mkdir(p('empty'))
    await mkdir(p('full'))
    await writeFile(p('full/inside'), 'in')
    await mkdir(p('dir'))
    await writeFile(p('dir/keep'), 'keep')

    // file over file replaces it.
    await rename(p('file1'), p('file2'))
    expect(await readFile(p('file2'), 'utf8')).toBe('one')
    expect(await outcome(stat(p('file1')))).toBe('ENOENT')
    // file over directory, directory over file.
    expect(await outcome(rename(p('file2'), p('empty')))).toBe('EISDIR')
    expect(await outcome(rename(p('dir'), p('file2')))).toBe('ENOTDIR')
    // directory over a non-empty directory.
    expect(await outcome(rename(p('dir'), p('full')))).toBe('ENOTEMPTY')
    expect(await readFile(p('full/inside'), 'utf8')).toBe('in')
    // directory into its own subtree.
    await mkdir(p('dir/sub'))
    expect(await outcome(rename(p('dir'), p('dir/sub/dir')))).toBe('EINVAL')
    // directory over an empty directory replaces it.
    await rename(p('dir'), p('empty'))
    expect(await readFile(p('empty/keep'), 'utf8')).toBe('keep')
    expect(await outcome(stat(p('dir')))).toBe('ENOENT')
    expect((await readdir(dir)).sort()).toEqual(['empty', 'file2', 'full'])
    // Nothing was lost or duplicated along the way.
    expect((await readdir(p('empty'))).sort()).toEqual(['keep', 'sub'])
  })

  it('makes and reads symlinks', async () => {
    const dir = await fresh()
    await writeFile(join(dir, 'target'), 'pointed at')
    await symlink('target', join(dir, 'rel'))
    await symlink('/nonexistent/dangling/path', join(dir, 'dangling'))
    expect(await readlink(join(dir, 'rel'))).toBe('target')
    const ls = await lstat(join(dir, 'rel'))
    expect(ls.mode & S_IFMT).toBe(S_IFLNK)
    expect(ls.size).toBe('target'.length)
    expect(await readFile(join(dir, 'rel'), 'utf8')).toBe('pointed at')
    expect((await stat(join(dir, 'rel'))).mode & S_IFMT).toBe(S_IFREG)
    expect(await readlink(join(dir, 'dangling'))).toBe('/nonexistent/dangling/path')
    expect(await outcome(stat(join(dir, 'dangling')))).toBe('ENOENT')
    expect(await outcome(readlink(join(dir, 'target')))).toBe('EINVAL')
    expect(await outcome(symlink('x', join(dir, 'target')))).toBe('EEXIST')
    // A long target survives intact.
    const long = 'seg/'.repeat(200) + 'end'
    await symlink(long, join(dir, 'long'))
    expect(await readlink(join(dir, 'long'))).toBe(long)
    // Writing through a symlink writes the target.
    await writeFile(join(dir, 'rel'), 'through link')
    expect(await readFile(join(dir, 'target'), 'utf8')).toBe('through link')
    await unlink(join(dir, 'rel'))
    expect(await readFile(join(dir, 'target'), 'utf8')).toBe('through link')
  })

  it('changes modes, and ctime moves with them', async () => {
    const dir = await fresh()
    const path = join(dir, 'f')
    await writeFile(path, 'x')
    for (const mode of [0o600, 0o755, 0o4711, 0o2750, 0o1777, 0o000, 0o644]) {
      const before = await bstat(path)
      await letClockTick()
      await chmod(path, mode)
      const after = await bstat(path)
      expect(Number(after.mode) & 0o7777).toBe(mode)
      expect(Number(after.mode) & S_IFMT).toBe(S_IFREG)
      expect(after.ctimeNs).toBeGreaterThan(before.ctimeNs)
      expect(after.mtimeNs).toBe(before.mtimeNs)
    }
    await chmod(dir, 0o1750)
    expect((await stat(dir)).mode & 0o7777).toBe(0o1750)
    expect(await outcome(chmod(join(dir, 'missing'), 0o600))).toBe('ENOENT')
  })

  it('changes owners and reports them', async () => {
    const dir = await fresh()
    const path = join(dir, 'f')
    await writeFile(path, 'x')
    const before = await bstat(path)
    await letClockTick()
    await chown(path, 1234, 5678)
    let st = await bstat(path)
    expect([st.uid, st.gid]).toEqual([1234n, 5678n])
    expect(st.ctimeNs).toBeGreaterThan(before.ctimeNs)
    // -1 leaves that id alone.
    await chown(path, -1, 42)
    st = await bstat(path)
    expect([st.uid, st.gid]).toEqual([1234n, 42n])
    await chown(path, 99, -1)
    st = await bstat(path)
    expect([st.uid, st.gid]).toEqual([99n, 42n])
    // lchown changes the link, not its target.
    await symlink('f', join(dir, 'link'))
    await lchown(join(dir, 'link'), 777, 888)
    const linkStat = await lstat(join(dir, 'link'))
    expect([linkStat.uid, linkStat.gid]).toEqual([777, 888])
    expect((await stat(path)).uid).toBe(99)
  })

  it('sets times: both, only atime, only mtime', async () => {
    const dir = await fresh()
    const path = join(dir, 'f')
    await writeFile(path, 'x')
    await utimes(path, 1_000_000_000.5, 1_100_000_000.25)
    let st = await bstat(path)
    expect(st.atimeNs).toBe(1_000_000_000_500_000_000n)
    expect(st.mtimeNs).toBe(1_100_000_000_250_000_000n)

    // touch -a / -m call futimens with UTIME_OMIT for the other time.
    const onlyAtime = await exec('touch', ['-a', '-d', '@1200000000', path])
    expect(onlyAtime.code).toBe(0)
    const onlyMtime = await exec('touch', ['-m', '-d', '@1300000000', path])
    expect(onlyMtime.code).toBe(0)
    st = await bstat(path)
    if (kind === 'bindfs') {
      // bindfs 1.14 answers success to a UTIME_OMIT futimens but changes neither time.
      expect(st.mtimeNs).toBe(1_100_000_000_250_000_000n)
    } else {
      expect(st.atimeNs).toBe(1_200_000_000_000_000_000n)
      expect(st.mtimeNs).toBe(1_300_000_000_000_000_000n)
      // ...and each one alone leaves the other untouched.
      expect((await exec('touch', ['-a', '-d', '@1400000000', path])).code).toBe(0)
      st = await bstat(path)
      expect(st.atimeNs).toBe(1_400_000_000_000_000_000n)
      expect(st.mtimeNs).toBe(1_300_000_000_000_000_000n)
    }

    // Directories keep times too.
    await utimes(dir, 1_000_000_000, 1_000_000_001)
    expect((await bstat(dir)).mtimeNs).toBe(1_000_000_001_000_000_000n)
    // Setting times to "now" (touch with no date) moves mtime off the old value.
    expect((await exec('touch', [path])).code).toBe(0)
    expect((await bstat(path)).mtimeNs).toBeGreaterThan(1_400_000_000_000_000_000n)
  })

  it('moves mtime and ctime on write and truncate, and dir times on entry changes', async () => {
    const dir = await fresh()
    const path = join(dir, 'f')
    await writeFile(path, 'start')
    const old = 1_000_000_000
    const oldNs = 1_000_000_000_000_000_000n

    /** Sets old times on `target`, runs `action` once the clock has moved, returns both stats. */
    const around = async (target: string, action: () => Promise<unknown>): Promise<{ before: BigIntStats, after: BigIntStats }> => {
      await utimes(target, old, old)
      const before = await bstat(target)
      await letClockTick()
      await action()
      return { before, after: await bstat(target) }
    }
    const writes: Record<string, () => Promise<unknown>> = {
      'pwrite': async () => { const h = await open(path, 'r+'); await h.write('W', 2); await h.close() },
      'truncate (shrink)': async () => { await truncate(path, 1) },
      'truncate (grow)': async () => { await truncate(path, 4096) },
      'ftruncate': async () => { const h = await open(path, 'r+'); await h.truncate(10); await h.close() },
      'O_TRUNC rewrite': async () => { await writeFile(path, 'rewritten') }
    }
    for (const [label, action] of Object.entries(writes)) {
      const { before, after } = await around(path, action)
      expect(after.mtimeNs, `mtime after ${label}`).toBeGreaterThan(oldNs)
      expect(after.ctimeNs, `ctime after ${label}`).toBeGreaterThan(before.ctimeNs)
    }

    // rename and link change the inode's ctime, not its mtime.
    const nameChanges: Record<string, () => Promise<unknown>> = {
      'rename': async () => { await rename(path, join(dir, 'g')); await rename(join(dir, 'g'), path) },
      'link': async () => { await link(path, join(dir, 'hard')) },
      'unlink of another name': async () => { await unlink(join(dir, 'hard')) }
    }
    for (const [label, action] of Object.entries(nameChanges)) {
      const { before, after } = await around(path, action)
      expect(after.ctimeNs, `ctime after ${label}`).toBeGreaterThan(before.ctimeNs)
      expect(after.mtimeNs, `mtime after ${label}`).toBe(oldNs)
    }

    // A directory's mtime and ctime move when entries are added, removed or renamed.
    const entryChanges: Record<string, () => Promise<unknown>> = {
      'create': async () => { await writeFile(join(dir, 'new'), '') },
      'rename within': async () => { await rename(join(dir, 'new'), join(dir, 'renamed')) },
      'unlink': async () => { await unlink(join(dir, 'renamed')) },
      'mkdir': async () => { await mkdir(join(dir, 'subdir')) },
      'rmdir': async () => { await rmdir(join(dir, 'subdir')) },
      'symlink': async () => { await symlink('f', join(dir, 'sym')) }
    }
    for (const [label, action] of Object.entries(entryChanges)) {
      const { before, after } = await around(dir, action)
      expect(after.mtimeNs, `dir mtime after ${label}`).toBeGreaterThan(oldNs)
      expect(after.ctimeNs, `dir ctime after ${label}`).toBeGreaterThan(before.ctimeNs)
    }
  })

  it('reports sane statfs figures', async () => {
    const st = await statfs(volume().mount)
    expect(st.bsize).toBeGreaterThan(0)
    expect(st.blocks).toBeGreaterThan(0)
    expect(st.bfree).toBeLessThanOrEqual(st.blocks)
    expect(st.bavail).toBeLessThanOrEqual(st.bfree)
    expect(st.ffree).toBeLessThanOrEqual(st.files)
  })

  it('stores file capabilities (security.capability), which the kernel asks for on every write', async () => {
    const dir = await fresh()
    const path = join(dir, 'cap')
    await writeFile(path, 'x')
    // Asked before each write; answered without the volume while no entry has it (fuse.ts).
    expect(await sys.getxattr(path, 'security.capability')).toEqual({ ok: false, code: 'ENODATA' })
    // VFS_CAP_REVISION_2 with cap_net_bind_service permitted (as setcap writes it).
    const cap = Buffer.alloc(20)
    cap.writeUInt32LE(0x02000000, 0)
    cap.writeUInt32LE(1 << 10, 4)
    expect(await sys.setxattr(path, 'security.capability', cap)).toEqual({ ok: true, value: null })
    expect(await sys.getxattr(path, 'security.capability')).toEqual({ ok: true, value: cap })
    const other = join(dir, 'other')
    await writeFile(other, 'y')
    expect(await sys.getxattr(other, 'security.capability')).toEqual({ ok: false, code: 'ENODATA' })
  })

  it('sets, gets, lists and removes extended attributes', async () => {
    const dir = await fresh()
    const path = join(dir, 'f')
    await writeFile(path, 'x')
    expect(await sys.listxattr(path)).toEqual({ ok: true, value: [] })
    expect(await sys.getxattr(path, 'user.absent')).toEqual({ ok: false, code: 'ENODATA' })
    expect(await sys.setxattr(path, 'user.b', Buffer.from('two'))).toEqual({ ok: true, value: null })
    expect(await sys.setxattr(path, 'user.a', Buffer.from('one'))).toEqual({ ok: true, value: null })
    const binary = Buffer.from([0, 1, 2, 255, 0, 10])
    expect((await sys.setxattr(path, 'user.bin', binary)).ok).toBe(true)
    expect((await sys.setxattr(path, 'user.empty', Buffer.alloc(0))).ok).toBe(true)
    // ext4 (bindfs's backing) holds about one block of xattrs per inode: stay well below.
    const big = createRng(3).bytes(2000)
    expect(await sys.setxattr(path, 'user.big', big)).toEqual({ ok: true, value: null })

    expect(await sys.getxattr(path, 'user.a')).toEqual({ ok: true, value: Buffer.from('one') })
    expect(await sys.getxattr(path, 'user.bin')).toEqual({ ok: true, value: binary })
    expect(await sys.getxattr(path, 'user.empty')).toEqual({ ok: true, value: Buffer.alloc(0) })
    expect(await sys.getxattr(path, 'user.big')).toEqual({ ok: true, value: big })
    expect(await sys.listxattr(path)).toEqual({ ok: true, value: ['user.a', 'user.b', 'user.big', 'user.bin', 'user.empty'] })

    // Replace, and the create/replace flags.
    expect((await sys.setxattr(path, 'user.a', Buffer.from('uno'))).ok).toBe(true)
    expect(await sys.getxattr(path, 'user.a')).toEqual({ ok: true, value: Buffer.from('uno') })
    expect(await sys.setxattr(path, 'user.a', Buffer.from('x'), XATTR_CREATE)).toEqual({ ok: false, code: 'EEXIST' })
    expect(await sys.setxattr(path, 'user.nope', Buffer.from('x'), XATTR_REPLACE)).toEqual({ ok: false, code: 'ENODATA' })
    expect(await sys.setxattr(path, 'user.fresh', Buffer.from('x'), XATTR_CREATE)).toEqual({ ok: true, value: null })

    expect(await sys.removexattr(path, 'user.b')).toEqual({ ok: true, value: null })
    expect(await sys.getxattr(path, 'user.b')).toEqual({ ok: false, code: 'ENODATA' })
    expect(await sys.removexattr(path, 'user.b')).toEqual({ ok: false, code: 'ENODATA' })
    expect(await sys.listxattr(path)).toEqual({ ok: true, value: ['user.a', 'user.big', 'user.bin', 'user.empty', 'user.fresh'] })

    // Directories carry xattrs too; missing paths say ENOENT.
    expect((await sys.setxattr(dir, 'user.dir', Buffer.from('d'))).ok).toBe(true)
    expect(await sys.getxattr(dir, 'user.dir')).toEqual({ ok: true, value: Buffer.from('d') })
    expect(await sys.getxattr(join(dir, 'missing'), 'user.a')).toEqual({ ok: false, code: 'ENOENT' })
    // xattrs follow the inode through a rename.
    await rename(path, join(dir, 'g'))
    expect(await sys.getxattr(join(dir, 'g'), 'user.a')).toEqual({ ok: true, value: Buffer.from('uno') })
  })

  it('fsyncs and fdatasyncs files and directories', async () => {
    const dir = await fresh()
    const path = join(dir, 'f')
    const handle = await open(path, 'w+')
    const data = createRng(5).bytes(700_000)
    await handle.write(data)
    await handle.sync()
    await handle.write('tail', data.length)
    await handle.datasync()
    await handle.close()
    const dirHandle = await open(dir, 'r')
    await dirHandle.sync()
    await dirHandle.close()
    const back = await readFile(path)
    expect(back.length).toBe(data.length + 4)
    expect(sha(back.subarray(0, data.length))).toBe(sha(data))
  })

  it('keeps several names for one inode with hard links', async () => {
    const dir = await fresh()
    const a = join(dir, 'a')
    const b = join(dir, 'sub', 'b')
    await mkdir(join(dir, 'sub'))
    await writeFile(a, 'shared')
    await link(a, b)
    const [sa, sb] = [await stat(a), await stat(b)]
    expect(sa.ino).toBe(sb.ino)
    expect(sa.nlink).toBe(2)
    expect(sb.nlink).toBe(2)
    // Content is shared both ways, including size changes.
    await writeFile(b, 'changed through b')
    expect(await readFile(a, 'utf8')).toBe('changed through b')
    const handle = await open(a, 'r+')
    await handle.write('A', 0)
    await handle.truncate(9)
    await handle.close()
    expect(await readFile(b, 'utf8')).toBe('Ahanged t')
    await chmod(a, 0o600)
    expect((await stat(b)).mode & 0o7777).toBe(0o600)
    // A third name.
    await link(b, join(dir, 'c'))
    expect((await stat(a)).nlink).toBe(3)
    // rename between two names of one inode does nothing.
    await rename(a, join(dir, 'c'))
    expect(await readFile(a, 'utf8')).toBe('Ahanged t')
    expect((await stat(a)).nlink).toBe(3)
    // Unlinking one name keeps the others.
    await unlink(a)
    expect((await stat(b)).nlink).toBe(2)
    await unlink(join(dir, 'c'))
    expect((await stat(b)).nlink).toBe(1)
    expect(await readFile(b, 'utf8')).toBe('Ahanged t')

    expect(await outcome(link(join(dir, 'sub'), join(dir, 'dirlink')))).toBe('EPERM')
    expect(await outcome(link(b, join(dir, 'sub')))).toBe('EEXIST')
    expect(await outcome(link(join(dir, 'missing'), join(dir, 'x')))).toBe('ENOENT')
  })

  it('shows changes made through one hard link in the other at once', async () => {
    const dir = await fresh()
    const a = join(dir, 'a')
    const b = join(dir, 'b')
    await writeFile(a, 'x'.repeat(1000))
    await link(a, b)
    expect((await stat(a)).size).toBe(1000)
    // Truncate through b, then append through a: the append lands at the new end.
    await truncate(b, 0)
    const appender = await open(a, 'a')
    await appender.write('tail')
    await appender.close()
    // Soft: each part below is a separate finding.
    expect.soft(await readFile(b, 'utf8')).toBe('tail')
    expect.soft((await stat(a)).size).toBe(4)
    // Rewrite through b (O_TRUNC), read through a.
    await writeFile(b, 'new content')
    expect.soft(await readFile(a, 'utf8')).toBe('new content')

    // A descriptor already open on a sees writes made through b.
    const reader = await open(a, 'r')
    const first = Buffer.alloc(11)
    await reader.read(first, 0, 11, 0)
    expect.soft(first.toString()).toBe('new content')
    const writer = await open(b, 'r+')
    await writer.write('NEW', 0)
    await writer.close()
    const second = Buffer.alloc(11)
    await reader.read(second, 0, 11, 0)
    await reader.close()
    if (kind === 'bindfs') {
      // bindfs (libfuse's path API) gives each name its own kernel inode and page cache.
      return
    }
    expect(second.toString()).toBe('NEW content')
  })

  it('refuses FIFOs and device nodes with a clear errno', async () => {
    const dir = await fresh()
    const fifo = await sys.mkfifo(join(dir, 'fifo'), 0o644)
    const node = await sys.mknodChar(join(dir, 'null'), 0o644, 1, 3)
    if (kind === 'bindfs') {
      // bindfs passes special files through to the backing directory.
      expect(fifo.ok).toBe(true)
      expect(node.ok).toBe(true)
      return
    }
    console.log(`mkfifo -> ${fifo.ok ? 'OK' : fifo.code}, mknod -> ${node.ok ? 'OK' : node.code}`)
    expect(fifo.ok ? 'OK' : fifo.code).toMatch(/^(EPERM|EOPNOTSUPP)$/)
    expect(node.ok ? 'OK' : node.code).toMatch(/^(EPERM|EOPNOTSUPP)$/)
    expect(await readdir(dir)).toEqual([])
  })

  it('reads and rewrites a large file across chunk boundaries', async () => {
    const dir = await fresh()
    const path = join(dir, 'big')
    const data = createRng(13).bytes(9 * MiB + 123)
    await writeFile(path, data)
    expect(sha(await readFile(path))).toBe(sha(data))
    // Change one byte in the middle and insert nothing: only that byte differs.
    const handle = await open(path, 'r+')
    await handle.write(Buffer.from([data[4 * MiB]! ^ 0xff]), 0, 1, 4 * MiB)
    await handle.close()
    data[4 * MiB] = data[4 * MiB]! ^ 0xff
    expect(sha(await readFile(path))).toBe(sha(data))
  })
})

describe.runIf(requireFuse(kind, ['python3']))(`persistence across a remount of a ${kind} volume`, () => {
  const volume = useVolume(kind)

  it('keeps content, modes, owners, xattrs, symlinks, hard links and times', async () => {
    const sys = startSyscalls()
    const root = join(volume().mount, 'keep')
    const p = (name: string): string => join(root, name)
    const big = createRng(21).bytes(5 * MiB + 7)
    await mkdir(p(''), 0o755)
    await mkdir(p('d1/d2'), { recursive: true, mode: 0o700 })
    await writeFile(p('d1/d2/deep.txt'), 'deep')
    await writeFile(p('big.bin'), big)
    await writeFile(p('empty'), '')
    const sparse = await open(p('sparse'), 'w')
    await sparse.write('z', 3 * MiB)
    await sparse.close()
    await chmod(p('big.bin'), 0o640)
    await chmod(p('d1'), 0o711)
    await chown(p('empty'), 1001, 2002)
    await symlink('d1/d2/deep.txt', p('link'))
    await link(p('big.bin'), p('d1/big-hardlink'))
    expect((await sys.setxattr(p('big.bin'), 'user.color', Buffer.from('blue'))).ok).toBe(true)
    expect((await sys.setxattr(p('d1'), 'user.kind', Buffer.from([0, 1, 2]))).ok).toBe(true)
    await utimes(p('d1/d2/deep.txt'), 1_000_000_000, 1_234_567_890.5)
    await utimes(p('d1/d2'), 1_000_000_000, 1_111_111_111)

    const snapshot = async (): Promise<unknown> => {
      const entries: Record<string, unknown> = {}
      for (const name of ['', 'd1', 'd1/d2', 'd1/d2/deep.txt', 'big.bin', 'empty', 'sparse', 'link', 'd1/big-hardlink']) {
        const st = await lstat(p(name), { bigint: true })
        entries[name] = {
          mode: st.mode.toString(8),
          uid: st.uid,
          gid: st.gid,
          size: st.isDirectory() ? undefined : st.size,
          nlink: st.isDirectory() ? undefined : st.nlink,
          mtime: name === 'd1/d2/deep.txt' || name === 'd1/d2' || name === 'big.bin' ? st.mtimeNs : undefined
        }
      }
      return entries
    }
    const before = await snapshot()
    await volume().remount()

    expect(await snapshot()).toEqual(before)
    expect(sha(await readFile(p('big.bin')))).toBe(sha(big))
    expect(sha(await readFile(p('d1/big-hardlink')))).toBe(sha(big))
    expect(await readFile(p('d1/d2/deep.txt'), 'utf8')).toBe('deep')
    expect(await readFile(p('link'), 'utf8')).toBe('deep')
    expect(await readlink(p('link'))).toBe('d1/d2/deep.txt')
    const sparseBack = await readFile(p('sparse'))
    expect(sparseBack.length).toBe(3 * MiB + 1)
    expect(sparseBack.subarray(0, 3 * MiB).every((b) => b === 0)).toBe(true)
    expect(sparseBack.subarray(3 * MiB).toString()).toBe('z')
    expect((await stat(p('big.bin'))).ino).toBe((await stat(p('d1/big-hardlink'))).ino)
    expect(await sys.getxattr(p('big.bin'), 'user.color')).toEqual({ ok: true, value: Buffer.from('blue') })
    expect(await sys.getxattr(p('d1/big-hardlink'), 'user.color')).toEqual({ ok: true, value: Buffer.from('blue') })
    expect(await sys.listxattr(p('d1'))).toEqual({ ok: true, value: ['user.kind'] })
    expect(await sys.getxattr(p('d1'), 'user.kind')).toEqual({ ok: true, value: Buffer.from([0, 1, 2]) })
    expect((await readdir(root)).sort()).toEqual(['big.bin', 'd1', 'empty', 'link', 'sparse'])
    expect((await readdir(p('d1'))).sort()).toEqual(['big-hardlink', 'd2'])

    // Still a working file system after the remount: the hard link is still one inode.
    await writeFile(p('d1/big-hardlink'), 'after remount')
    expect(await readFile(p('big.bin'), 'utf8')).toBe('after remount')
    await sys.close()
  })
})
