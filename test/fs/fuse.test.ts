/**
 * The FUSE edge (src/fs/fuse.ts) against the kernel: a passthrough volume mounted on a temp
 * dir, exercised through real syscalls (node:fs, coreutils, python3 for xattrs and errnos).
 *
 * The mount is served by this very process, so the test touches it only through async APIs
 * (a sync call on the mount would block the thread that has to answer it) and one request
 * at a time (the passthrough needs libuv's small thread pool too).
 */
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { constants as fsConstants, existsSync } from 'node:fs'
import * as fs from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { MAX_WRITE, errnoOf, fuseUnavailable, mountVolume, recoverStaleMount } from '../../src/fs/fuse.ts'
import type { Mount } from '../../src/fs/fuse.ts'
import { passthroughVolume } from '../helpers/passthrough-volume.ts'
import type { PassthroughVolume } from '../helpers/passthrough-volume.ts'
import { tmpDir } from '../helpers/tmp.ts'

const run = promisify(execFile)
const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

function onPath (command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some(dir => dir !== '' && existsSync(join(dir, command)))
}

const fuseMissing = [
  await fuseUnavailable(), // /dev/fuse, libfuse2, the patched fuse-native
  onPath('fusermount') || onPath('fusermount3') ? undefined : 'missing fusermount (Debian package fuse3)',
  onPath('python3') ? undefined : 'missing python3'
].filter(why => why !== undefined).join('; ') || undefined

describe('errnoOf', () => {
  it('maps every listed code to its errno', () => {
    const expected: Array<[ErrorCode, number]> = [
      ['NOT_FOUND', -2], ['EXISTS', -17], ['NOT_EMPTY', -39], ['NOT_DIR', -20], ['IS_DIR', -21],
      ['INVALID', -22], ['NO_SPACE', -28], ['CORRUPT', -5], ['IO', -5], ['UNAVAILABLE', -5],
      ['TIMEOUT', -5], ['NAME_TOO_LONG', -36], ['NO_ATTR', -61], ['NOT_SUPPORTED', -95],
      ['PERMISSION', -1], ['BAD_HANDLE', -9], ['TOO_BIG', -27], ['RANGE', -34], ['BUSY', -16],
      ['ABORTED', -4], ['CLOSED', -5]
    ]
    for (const [code, errno] of expected) {
      expect([code, errnoOf(new BazilError(code, 'x'))]).toEqual([code, errno])
    }
  })

  it('answers EIO for anything else', () => {
    expect(errnoOf(new Error('boom'))).toBe(-5)
    expect(errnoOf('not even an error')).toBe(-5)
    expect(errnoOf(new BazilError(ErrorCode.CONFLICT, 'x'))).toBe(-5)
  })
})

if (fuseMissing !== undefined && process.env.CI === 'true') {
  describe('FUSE edge', () => {
    it('has FUSE on this machine', () => {
      throw new Error(`FUSE tests cannot run in CI: ${fuseMissing}`)
    })
  })
}

describe.skipIf(fuseMissing !== undefined)(`FUSE edge${fuseMissing === undefined ? '' : ` (skipped: ${fuseMissing})`}`, () => {
  let backing: string
  let mnt: string
  let volume: PassthroughVolume
  let mount: Mount | undefined

  beforeAll(async () => {
    backing = await tmpDir('bazil-fuse-backing-')
    // Not tmpDir(): its recursive cleanup must never run into a mount.
    mnt = await fs.mkdtemp(join(tmpdir(), 'bazil-fuse-mnt-'))
    volume = passthroughVolume(backing)
    mount = await mountVolume(volume, mnt)
  })

  afterAll(async () => {
    await mount?.unmount()
    await volume?.close()
    await fs.rmdir(mnt)
  })

  const at = (name: string): string => join(mnt, name)

  it('writes a big file in 128 KiB pieces and reads it back', async () => {
    const data = randomBytes(8 * 1024 * 1024 + 123)
    await fs.writeFile(at('big'), data)
    expect((await fs.readFile(at('big'))).equals(data)).toBe(true)
    expect((await fs.readFile(join(backing, 'big'))).equals(data)).toBe(true)
    expect(volume.stats.maxWrite).toBe(MAX_WRITE)
    expect((await fs.stat(at('big'))).size).toBe(data.length)
  })

  it('fills reads into a few reused buffers, and every read still gets its own bytes', async () => {
    // A fresh external buffer per read made V8 collect garbage every 64 MiB read (patch level 5).
    const data = randomBytes(8 * 1024 * 1024 + 5)
    const other = randomBytes(8 * 1024 * 1024 + 7)
    await fs.writeFile(join(backing, 'reused'), data)
    await fs.writeFile(join(backing, 'reused-too'), other)
    const seen = new Set<ArrayBufferLike>()
    let reads = 0
    const read = volume.read.bind(volume)
    volume.read = async (fh, buffer, length, position) => {
      reads++
      seen.add(buffer.buffer)
      return await read(fh, buffer, length, position)
    }
    try {
      // Two readers at once, so reads are in flight together and must not share a buffer.
      const [a, b] = await Promise.all([fs.readFile(at('reused')), fs.readFile(at('reused-too'))])
      expect(a.equals(data)).toBe(true)
      expect(b.equals(other)).toBe(true)
    } finally {
      volume.read = read
    }
    expect(reads).toBeGreaterThanOrEqual(128)
    expect(seen.size).toBeLessThanOrEqual(16)
  })

  it('shows the volume\'s inode numbers and lists . and ..', async () => {
    await fs.writeFile(at('ino'), 'x')
    expect((await fs.stat(at('ino'))).ino).toBe((await fs.stat(join(backing, 'ino'))).ino)
    const { stdout } = await run('ls', ['-a1', mnt])
    expect(stdout.split('\n').slice(0, 2)).toEqual(['.', '..'])
  })

  it('sets only mtime with touch -m and only atime with touch -a', async () => {
    const file = at('times')
    await fs.writeFile(file, 'x')
    await run('touch', ['-a', '-d', '1999-01-02 03:04:05Z', file])
    await run('touch', ['-m', '-d', '2001-02-03 04:05:06Z', file])
    let st = await fs.stat(file)
    expect(st.atime.toISOString()).toBe('1999-01-02T03:04:05.000Z')
    expect(st.mtime.toISOString()).toBe('2001-02-03T04:05:06.000Z')
    expect(volume.stats.utimens.at(-1)).toEqual({ path: '/times', atime: 'omit', mtime: Date.parse('2001-02-03T04:05:06Z') })

    await run('touch', ['-a', '-d', '2002-03-04 05:06:07Z', file])
    st = await fs.stat(file)
    expect(st.atime.toISOString()).toBe('2002-03-04T05:06:07.000Z')
    expect(st.mtime.toISOString()).toBe('2001-02-03T04:05:06.000Z')
    expect(volume.stats.utimens.at(-1)).toEqual({ path: '/times', atime: Date.parse('2002-03-04T05:06:07Z'), mtime: 'omit' })

    const before = Date.now()
    await run('touch', ['-m', file])
    st = await fs.stat(file)
    expect(volume.stats.utimens.at(-1)).toEqual({ path: '/times', atime: 'omit', mtime: 'now' })
    expect(st.mtimeMs).toBeGreaterThanOrEqual(before - 1000)
    expect(st.atime.toISOString()).toBe('2002-03-04T05:06:07.000Z')
  })

  it('sets, sizes, gets, lists and removes xattrs', async () => {
    const file = at('xattrs')
    await fs.writeFile(file, 'x')
    // python3's os module and ctypes (for the size query and a too-small buffer).
    const script = `
import ctypes, json, os, sys
p = sys.argv[1]; libc = ctypes.CDLL(None, use_errno=True); out = {}
value = bytes(range(256)) * 2
os.setxattr(p, 'user.big', value)
os.setxattr(p, 'user.small', b'v')
out['size'] = libc.getxattr(p.encode(), b'user.big', None, 0)
small = ctypes.create_string_buffer(16)
out['small'] = [libc.getxattr(p.encode(), b'user.big', small, 16), ctypes.get_errno()]
out['same'] = os.getxattr(p, 'user.big') == value
out['listSize'] = libc.listxattr(p.encode(), None, 0)
out['list'] = sorted(os.listxattr(p))
try:
  os.setxattr(p, 'user.small', b'w', os.XATTR_CREATE); out['create'] = 0
except OSError as e: out['create'] = e.errno
os.removexattr(p, 'user.big')
try:
  os.getxattr(p, 'user.big'); out['removed'] = 0
except OSError as e: out['removed'] = e.errno
print(json.dumps(out))
`
    const { stdout } = await run('python3', ['-c', script, file])
    const out = JSON.parse(stdout) as Record<string, unknown>
    expect(out.size).toBe(512)
    expect(out.small).toEqual([-1, 34]) // ERANGE
    expect(out.same).toBe(true)
    expect(out.listSize).toBeGreaterThanOrEqual('user.big\0user.small\0'.length)
    expect(out.list).toEqual(['user.big', 'user.small'])
    expect(out.create).toBe(17) // EEXIST
    expect(out.removed).toBe(61) // ENODATA
  })

  it('refuses FIFOs with EPERM, as mknod(2) documents for unsupported node types', async () => {
    const { stdout } = await run('python3', ['-c', `
import os, sys
try:
  os.mkfifo(sys.argv[1]); print(0)
except OSError as e: print(e.errno)`, at('fifo')])
    expect(stdout.trim()).toBe('1') // EPERM: mkfifo(1) says "Operation not permitted"
    await expect(fs.lstat(at('fifo'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('maps volume errors to errnos', async () => {
    await expect(fs.readFile(at('nope'))).rejects.toMatchObject({ code: 'ENOENT' })
    await fs.mkdir(at('dir'))
    await expect(fs.mkdir(at('dir'))).rejects.toMatchObject({ code: 'EEXIST' })
    await fs.writeFile(at('dir/f'), 'x')
    await expect(fs.rmdir(at('dir'))).rejects.toMatchObject({ code: 'ENOTEMPTY' })
  })

  it('keeps an unlinked open file readable, writable and fstat-able, leaving nothing behind', async () => {
    const handle = await fs.open(at('doomed'), 'w+')
    try {
      await handle.write('data', 0)
      await fs.unlink(at('doomed'))
      expect(await fs.readdir(mnt)).not.toContain('doomed')
      const buffer = Buffer.alloc(4)
      expect((await handle.read(buffer, 0, 4, 0)).bytesRead).toBe(4)
      expect(buffer.toString()).toBe('data')
      await handle.write('more', 4)
      const st = await handle.stat()
      expect(st.size).toBe(8)
      expect(st.nlink).toBe(0)
      expect((await fs.readdir(mnt)).filter(name => name.startsWith('.fuse_hidden'))).toEqual([])
      expect((await fs.readdir(backing)).filter(name => name.startsWith('.fuse_hidden') || name === 'doomed')).toEqual([])
    } finally {
      await handle.close()
    }
    expect((await fs.readdir(mnt)).filter(name => name.startsWith('.fuse_hidden'))).toEqual([])
  })

  it('keeps an open file that a rename replaced', async () => {
    await fs.writeFile(at('victim'), 'old')
    await fs.writeFile(at('winner'), 'new')
    const handle = await fs.open(at('victim'), 'r')
    try {
      await fs.rename(at('winner'), at('victim'))
      expect(await fs.readFile(at('victim'), 'utf8')).toBe('new')
      expect(await handle.readFile('utf8')).toBe('old')
      expect((await handle.stat()).size).toBe(3)
      expect((await fs.readdir(backing)).filter(name => name.startsWith('.fuse_hidden'))).toEqual([])
    } finally {
      await handle.close()
    }
  })

  it('shows a fresh link count right after link, unlink and rename', async () => {
    await fs.writeFile(at('a'), 'x')
    expect((await fs.stat(at('a'))).nlink).toBe(1)
    await fs.link(at('a'), at('b'))
    expect((await fs.stat(at('a'))).nlink).toBe(2)
    await fs.writeFile(at('c'), 'y')
    await fs.rename(at('c'), at('b'))
    expect((await fs.stat(at('a'))).nlink).toBe(1)
    expect(await fs.readFile(at('b'), 'utf8')).toBe('y')
  })

  it('passes symlinks, renames, truncation and statfs through', async () => {
    await fs.symlink('target/elsewhere', at('link'))
    expect(await fs.readlink(at('link'))).toBe('target/elsewhere')
    await fs.writeFile(at('t'), 'hello world')
    await fs.truncate(at('t'), 5)
    await fs.rename(at('t'), at('t2'))
    expect(await fs.readFile(at('t2'), 'utf8')).toBe('hello')
    await fs.chmod(at('t2'), 0o600)
    expect((await fs.stat(at('t2'))).mode & 0o777).toBe(0o600)
    await fs.chown(at('t2'), 1234, 5678)
    expect(await fs.stat(at('t2'))).toMatchObject({ uid: 1234, gid: 5678 })
    await fs.access(at('t2'), fsConstants.R_OK | fsConstants.W_OK)
    const handle = await fs.open(at('t2'), 'r+')
    try {
      await handle.write('J', 0)
      await handle.datasync()
      await handle.sync()
      await handle.truncate(3)
    } finally {
      await handle.close()
    }
    expect(await fs.readFile(join(backing, 't2'), 'utf8')).toBe('Jel')
    const s = await fs.statfs(mnt)
    expect(s.bsize).toBeGreaterThan(0)
    expect(s.blocks).toBeGreaterThan(0)
  })

  it('refuses a missing, non-empty or already mounted mount point', async () => {
    await expect(mountVolume(volume, join(backing, 'missing'))).rejects.toMatchObject({ code: 'NOT_FOUND' })
    await fs.writeFile(join(backing, 'occupied'), 'x')
    await expect(mountVolume(volume, backing)).rejects.toMatchObject({ code: 'NOT_EMPTY' })
    await expect(mountVolume(volume, mnt)).rejects.toMatchObject({ code: 'BUSY' })
  })

  it('recoverStaleMount: false for a plain dir, BUSY for a live mount', async () => {
    expect(await recoverStaleMount(backing)).toBe(false)
    await expect(recoverStaleMount(mnt)).rejects.toMatchObject({ code: 'BUSY' })
  })

  it('recovers the dead mount a SIGKILLed daemon leaves', async () => {
    const childBacking = await tmpDir('bazil-fuse-child-')
    const childMnt = await fs.mkdtemp(join(tmpdir(), 'bazil-fuse-dead-'))
    try {
      const child = await startChild('hold', childBacking, childMnt)
      await waitForLine(child, 'mounted')
      await fs.writeFile(join(childMnt, 'f'), 'served by the child')
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
      await expect(fs.stat(childMnt)).rejects.toMatchObject({ code: 'ENOTCONN' })
      expect(await recoverStaleMount(childMnt)).toBe(true)
      expect(await fs.readdir(childMnt)).toEqual([])
      expect(await recoverStaleMount(childMnt)).toBe(false)
    } finally {
      await recoverStaleMount(childMnt).catch(() => false)
      await fs.rmdir(childMnt)
    }
  })

  it('lets the process exit by itself after unmount', async () => {
    const childBacking = await tmpDir('bazil-fuse-child-')
    const childMnt = await fs.mkdtemp(join(tmpdir(), 'bazil-fuse-cycle-'))
    try {
      const child = await startChild('cycle', childBacking, childMnt)
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL')
          reject(new Error('the child did not exit within 20 s of unmounting'))
        }, 20_000)
        child.once('exit', code => { clearTimeout(timer); resolve(code) })
      })
      expect(code).toBe(0)
      expect(await fs.readFile(join(childBacking, 'written'), 'utf8')).toBe('through the mount')
    } finally {
      await recoverStaleMount(childMnt).catch(() => false)
      await fs.rmdir(childMnt)
    }
  })
})

/**
 * A passthrough volume with write-behind whose writes wait at a gate the test holds: every
 * other request that depends on a write (getattr, read, write, flush, fsync, release,
 * truncate, utimens) waits for the writes handed over before it, as VolumeOps asks.
 */
function gatedWriteBehind (inner: PassthroughVolume): { volume: PassthroughVolume, log: string[], hold: () => void, release: () => void } {
  const log: string[] = []
  let applied: Promise<void> = Promise.resolve()
  let gate: Promise<void> = Promise.resolve()
  let open = (): void => {}
  const ordered = new Set(['getattr', 'fgetattr', 'read', 'write', 'flush', 'fsync', 'release', 'truncate', 'ftruncate', 'utimens'])
  const volume = new Proxy(inner, {
    get (target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver)
      if (prop === 'writeBehind') {
        return async (fh: number, buffer: Buffer, position: number): Promise<void> => {
          log.push(`behind ${position}+${buffer.length}`)
          const before = applied
          const at = gate
          applied = (async () => {
            await before
            await at
            await inner.write(fh, buffer, buffer.length, position)
          })().catch(() => {})
          await applied
        }
      }
      if (typeof prop !== 'string' || !ordered.has(prop) || typeof value !== 'function') return value
      return async (...args: unknown[]): Promise<unknown> => {
        log.push(prop === 'write' ? `write ${String(args[3])}+${String(args[2])}` : prop)
        await applied
        return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
      }
    }
  })
  return {
    volume,
    log,
    hold: () => { gate = new Promise(resolve => { open = resolve }) },
    release: () => { open() }
  }
}

async function until (what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

describe.skipIf(fuseMissing !== undefined)(`FUSE edge: write-behind${fuseMissing === undefined ? '' : ` (skipped: ${fuseMissing})`}`, () => {
  let backing: string
  let mnt: string
  let gated: ReturnType<typeof gatedWriteBehind>
  let mount: Mount | undefined

  beforeAll(async () => {
    backing = await tmpDir('bazil-fuse-wb-backing-')
    mnt = await fs.mkdtemp(join(tmpdir(), 'bazil-fuse-wb-mnt-'))
    gated = gatedWriteBehind(passthroughVolume(backing))
    mount = await mountVolume(gated.volume, mnt, { writeBehindBytes: 64 * 1024 })
  })

  afterAll(async () => {
    gated?.release()
    await mount?.unmount()
    await gated?.volume.close()
    await fs.rmdir(mnt)
  })

  it('answers a write before the volume applies it, and hands it over before the next request', async () => {
    const a = randomBytes(1000)
    const b = randomBytes(3000)
    const file = await fs.open(join(mnt, 'early'), 'w')
    try {
      gated.log.length = 0
      gated.hold()
      // Both writes return while the volume cannot apply either (the gate is shut).
      await file.write(a, 0, a.length, 0)
      await file.write(b, 0, b.length, a.length)
      const stat = file.stat()
      await until('the getattr', () => gated.log.some(line => line.endsWith('getattr')))
      const asked = gated.log.findIndex(line => line.endsWith('getattr'))
      expect(gated.log.slice(0, asked)).toEqual(['behind 0+1000', 'behind 1000+3000'])
      gated.release()
      expect((await stat).size).toBe(4000)
    } finally {
      gated.release()
      await file.close()
    }
    expect((await fs.readFile(join(backing, 'early'))).equals(Buffer.concat([a, b]))).toBe(true)
  })

  it('past its budget, a write waits its turn behind the ones answered early', async () => {
    const pieces = Array.from({ length: 17 }, () => randomBytes(4096))
    const file = await fs.open(join(mnt, 'budget'), 'w')
    try {
      gated.log.length = 0
      gated.hold()
      // 16 writes of 4 KiB fill the 64 KiB budget; the 17th takes the ordinary path.
      for (let i = 0; i < 16; i++) await file.write(pieces[i] as Buffer, 0, 4096, i * 4096)
      const last = file.write(pieces[16] as Buffer, 0, 4096, 16 * 4096)
      await until('the ordinary write', () => gated.log.some(line => line.startsWith('write ')))
      expect(gated.log.filter(line => line.startsWith('behind') || line.startsWith('write'))).toEqual([
        ...pieces.slice(0, 16).map((_, i) => `behind ${i * 4096}+4096`),
        `write ${16 * 4096}+4096`
      ])
      gated.release()
      expect((await last).bytesWritten).toBe(4096)
    } finally {
      gated.release()
      await file.close()
    }
    expect((await fs.readFile(join(backing, 'budget'))).equals(Buffer.concat(pieces))).toBe(true)
  })
})

/** A separate daemon process (node --import tsx, so a SIGKILL reaches the mounting process). */
async function startChild (mode: 'hold' | 'cycle', backing: string, mnt: string): Promise<ReturnType<typeof spawn>> {
  const dir = await tmpDir('bazil-fuse-script-')
  const script = join(dir, 'daemon.mts')
  const fuseUrl = new URL('../../src/fs/fuse.ts', import.meta.url).href
  const volumeUrl = new URL('../helpers/passthrough-volume.ts', import.meta.url).href
  await fs.writeFile(script, `
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { mountVolume } from ${JSON.stringify(fuseUrl)}
import { passthroughVolume } from ${JSON.stringify(volumeUrl)}
const [mode, backing, mnt] = process.argv.slice(2)
const volume = passthroughVolume(backing)
const mount = await mountVolume(volume, mnt)
process.stdout.write('mounted\\n')
if (mode === 'cycle') {
  await writeFile(join(mnt, 'written'), 'through the mount')
  await mount.unmount()
  await volume.close()
}
`)
  const child = spawn(process.execPath, ['--import', 'tsx', script, mode, backing, mnt], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'inherit']
  })
  return child
}

async function waitForLine (child: ReturnType<typeof spawn>, line: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => { reject(new Error(`no "${line}" from the child within 20 s`)) }, 20_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      seen += chunk.toString()
      if (seen.split('\n').includes(line)) { clearTimeout(timer); resolve() }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`the child exited (${code}) before "${line}"`)) })
  })
}
