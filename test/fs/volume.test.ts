import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { openTestVolume } from '../helpers/volume.ts'
import { GatedStore } from '../helpers/gated-store.ts'
import { isBazilError } from '../../src/errors.ts'
import type { ErrorCode } from '../../src/errors.ts'
import type { Volume } from '../../src/fs/volume.ts'

const code = (c: ErrorCode) => (e: unknown) => isBazilError(e, c)

async function writeFile (v: Volume, path: string, data: Buffer): Promise<void> {
  const fh = await v.create(path, 0o644)
  await v.write(fh, data, data.length, 0)
  await v.release(fh)
}

async function readFile (v: Volume, path: string): Promise<Buffer> {
  const attr = await v.getattr(path)
  const fh = await v.open(path, 0)
  const buf = Buffer.alloc(attr.size)
  let pos = 0
  while (pos < attr.size) {
    const n = await v.read(fh, buf.subarray(pos), Math.min(131072, attr.size - pos), pos)
    if (n === 0) break
    pos += n
  }
  await v.release(fh)
  return buf
}

describe('Volume (no FUSE)', () => {
  it('writes, reads back and keeps content across a reopen', async () => {
    const t = await openTestVolume()
    const big = randomBytes(5 * 1024 * 1024 + 123)
    await t.volume.mkdir('/d', 0o755)
    await writeFile(t.volume, '/d/big', big)
    await writeFile(t.volume, '/small', Buffer.from('hello'))
    expect((await readFile(t.volume, '/d/big')).equals(big)).toBe(true)
    const again = await t.reopen()
    expect((await readFile(again.volume, '/d/big')).equals(big)).toBe(true)
    expect((await readFile(again.volume, '/small')).toString()).toBe('hello')
    expect((await again.volume.getattr('/d')).nlink).toBe(2)
    expect((await again.volume.getattr('/')).nlink).toBe(3)
  })

  it('overwrites in the middle, extends with a hole, truncates', async () => {
    const { volume } = await openTestVolume()
    const base = randomBytes(3 * 1024 * 1024)
    await writeFile(volume, '/f', base)
    const fh = await volume.open('/f', 2)
    await volume.write(fh, Buffer.from('XYZ'), 3, 1000)
    await volume.write(fh, Buffer.from('end'), 3, 4 * 1024 * 1024)
    await volume.release(fh)
    const expected = Buffer.alloc(4 * 1024 * 1024 + 3)
    base.copy(expected)
    expected.write('XYZ', 1000)
    expected.write('end', 4 * 1024 * 1024)
    expect((await readFile(volume, '/f')).equals(expected)).toBe(true)
    await volume.truncate('/f', 10)
    expect((await readFile(volume, '/f')).equals(expected.subarray(0, 10))).toBe(true)
    await volume.truncate('/f', 20)
    expect((await readFile(volume, '/f')).equals(Buffer.concat([expected.subarray(0, 10), Buffer.alloc(10)]))).toBe(true)
  })

  it('chunks a long sequential write while it arrives, and falls back when it is overwritten', async () => {
    const { volume, cas } = await openTestVolume()
    const data = randomBytes(80 * 1024 * 1024)
    const step = 1024 * 1024
    const fh = await volume.create('/seq', 0o644)
    for (let pos = 0; pos < data.length; pos += step) await volume.write(fh, data.subarray(pos, pos + step), step, pos)
    await volume.release(fh)
    expect((await readFile(volume, '/seq')).equals(data)).toBe(true)
    const written = cas.stats.bytesWritten
    // Same bytes again: everything dedups, nothing new is stored.
    const again = await volume.create('/seq2', 0o644)
    for (let pos = 0; pos < data.length; pos += step) await volume.write(again, data.subarray(pos, pos + step), step, pos)
    await volume.release(again)
    expect(cas.stats.bytesWritten).toBe(written)
    // A rewrite below what eager chunking has read invalidates it; the result is still exact.
    const edited = Buffer.from(data)
    const fh3 = await volume.create('/seq3', 0o644)
    for (let pos = 0; pos < data.length; pos += step) await volume.write(fh3, data.subarray(pos, pos + step), step, pos)
    await volume.write(fh3, Buffer.from('rewritten'), 9, 5)
    edited.write('rewritten', 5)
    await volume.release(fh3)
    expect((await readFile(volume, '/seq3')).equals(edited)).toBe(true)
  })

  it('follows the POSIX rename rules', async () => {
    const { volume } = await openTestVolume()
    await volume.mkdir('/a', 0o755)
    await volume.mkdir('/b', 0o755)
    await volume.mkdir('/b/full', 0o755)
    await writeFile(volume, '/b/full/x', Buffer.from('x'))
    await writeFile(volume, '/f', Buffer.from('f'))
    await expect(volume.rename('/a', '/b/full')).rejects.toSatisfy(code('NOT_EMPTY'))
    await expect(volume.rename('/f', '/a')).rejects.toSatisfy(code('IS_DIR'))
    await expect(volume.rename('/a', '/f')).rejects.toSatisfy(code('NOT_DIR'))
    await expect(volume.rename('/b', '/b/full/inside')).rejects.toSatisfy(code('INVALID'))
    const ino = (await volume.getattr('/a')).ino
    await volume.rename('/a', '/b/a2')
    expect((await volume.getattr('/b/a2')).ino).toBe(ino)
    expect((await volume.getattr('/')).nlink).toBe(3)
    expect((await volume.getattr('/b')).nlink).toBe(4)
    await writeFile(volume, '/g', Buffer.from('g'))
    await volume.rename('/g', '/f')
    expect((await readFile(volume, '/f')).toString()).toBe('g')
    await expect(volume.getattr('/g')).rejects.toSatisfy(code('NOT_FOUND'))
  })

  it('keeps an unlinked open file readable, and hard links share content', async () => {
    const { volume } = await openTestVolume()
    await writeFile(volume, '/f', Buffer.from('data'))
    await volume.link('/f', '/g')
    expect((await volume.getattr('/f')).nlink).toBe(2)
    const fh = await volume.open('/f', 0)
    await volume.unlink('/f')
    await volume.unlink('/g')
    const buf = Buffer.alloc(4)
    expect(await volume.read(fh, buf, 4, 0)).toBe(4)
    expect(buf.toString()).toBe('data')
    expect((await volume.fgetattr('/f', fh)).nlink).toBe(0)
    await volume.release(fh)
    expect(volume.meta.entries.size).toBe(1)
  })

  it('passes a set-group-ID directory\'s group and bit on to what is made in it', async () => {
    const { volume } = await openTestVolume()
    await volume.mkdir('/shared', 0o755)
    await volume.chown('/shared', 0, 1234)
    await volume.chmod('/shared', 0o2775)
    await volume.mkdir('/shared/sub', 0o750)
    await writeFile(volume, '/shared/f', Buffer.from('x'))
    expect((await volume.getattr('/shared/sub')).mode & 0o7777).toBe(0o2750)
    expect((await volume.getattr('/shared/sub')).gid).toBe(1234)
    expect((await volume.getattr('/shared/f')).gid).toBe(1234)
    expect((await volume.getattr('/shared/f')).mode & 0o2000).toBe(0)
  })

  it('stores xattrs with create/replace flags', async () => {
    const { volume } = await openTestVolume()
    await writeFile(volume, '/f', Buffer.from(''))
    await volume.setxattr('/f', 'user.a', Buffer.from('1'), 0)
    await expect(volume.setxattr('/f', 'user.a', Buffer.from('2'), 1)).rejects.toSatisfy(code('EXISTS'))
    await expect(volume.setxattr('/f', 'user.b', Buffer.from('2'), 2)).rejects.toSatisfy(code('NO_ATTR'))
    expect(await volume.listxattr('/f')).toEqual(['user.a'])
    await volume.removexattr('/f', 'user.a')
    await expect(volume.getxattr('/f', 'user.a')).rejects.toSatisfy(code('NO_ATTR'))
  })

  it('tells a watcher when any writer gives an entry an attribute (the FUSE edge answers security.capability by it)', async () => {
    const { volume } = await openTestVolume()
    await writeFile(volume, '/f', Buffer.from('x'))
    expect(volume.hasXattr('security.capability')).toBe(false)
    let seen = 0
    volume.watchXattr('security.capability', () => { seen++ })
    await volume.setxattr('/f', 'user.other', Buffer.from('1'), 0)
    expect(seen).toBe(0)
    await volume.setxattr('/f', 'security.capability', Buffer.from('cap'), 0)
    expect(seen).toBe(1)
    expect(volume.hasXattr('security.capability')).toBe(true)
    // A change made behind the volume's own operations (as sync applies a peer's) counts too.
    const change = volume.meta.change()
    const entry = volume.meta.get(volume.resolve('/f'))
    change.putEntry({ ...entry, xattrs: { ...entry.xattrs, 'security.capability': Buffer.from('other').toString('base64') } })
    await volume.meta.commit(change)
    expect(seen).toBe(2)
  })

  it('closing ends a read that waits on a store that never answers: it fails with CLOSED (EIO), not a hang', async () => {
    const store = new GatedStore()
    const t = await openTestVolume({ kv: store })
    await writeFile(t.volume, '/f', randomBytes(300 * 1024))
    const fresh = await t.reopen() // nothing of the file in any cache
    store.holding = true
    const fh = await fresh.volume.open('/f', 0)
    const read = fresh.volume.read(fh, Buffer.alloc(131072), 131072, 0).then(() => 'read', (e: unknown) => e)
    while (store.gets === 0) await new Promise(resolve => setTimeout(resolve, 5))
    await fresh.reopen() // closes this volume
    expect(isBazilError(await read, 'CLOSED')).toBe(true)
    expect(store.aborted).toBeGreaterThan(0) // the cancellation reached the store
  })

  it('write-behind: getattr, read and utimens asked after a write see it, also while the file is busy', async () => {
    const { volume } = await openTestVolume()
    const first = randomBytes(5 * 1024 * 1024)
    const fh = await volume.create('/f', 0o644)
    await volume.write(fh, first, first.length, 0)
    const flushing = volume.flush(fh) // the file's actor is busy chunking 5 MiB
    void volume.writeBehind(fh, Buffer.from('tail'), first.length)
    expect((await volume.getattr('/f')).size).toBe(first.length + 4)
    expect((await volume.fgetattr('/f', fh)).size).toBe(first.length + 4)
    const reader = await volume.open('/f', 0)
    const got = Buffer.alloc(4)
    void volume.writeBehind(fh, Buffer.from('TAIL'), first.length)
    expect(await volume.read(reader, got, 4, first.length)).toBe(4)
    expect(got.toString()).toBe('TAIL')
    void volume.writeBehind(fh, Buffer.from('!'), 0)
    await volume.utimens('/f', 1_000_000, 2_000_000) // after the write: its time must not win
    await flushing
    await volume.release(fh)
    await volume.release(reader)
    const attr = await volume.getattr('/f')
    expect(attr.mtimeMs).toBe(2_000_000)
    expect(attr.size).toBe(first.length + 4)
    const check = await volume.open('/f', 0)
    const head = Buffer.alloc(2)
    await volume.read(check, head, 2, 0)
    await volume.release(check)
    expect(head.equals(Buffer.concat([Buffer.from('!'), first.subarray(1, 2)]))).toBe(true)
  })

  it('write-behind: a failed write is reported by the next flush, once, and the rest stays', async () => {
    const t = await openTestVolume()
    const fh = await t.volume.create('/f', 0o644)
    await t.volume.writeBehind(fh, Buffer.from('kept'), 0)
    // Past 64 KiB a write needs a staging file: without the staging dir it cannot be made.
    await rm(join(t.dir, 'staging'), { recursive: true })
    await t.volume.writeBehind(fh, randomBytes(4096), 1024 * 1024) // resolves: the error waits
    await expect(t.volume.flush(fh)).rejects.toSatisfy(code('NOT_FOUND'))
    await t.volume.flush(fh) // reported once
    await t.volume.release(fh)
    await mkdir(join(t.dir, 'staging'))
    expect((await readFile(t.volume, '/f')).toString()).toBe('kept')
  })

})
