/**
 * LocalStore on real disk: the KV compliance suite (with and without fsync), plus what only a
 * local store has: its on-disk layout, crash leftovers, reopening, and a full disk.
 */
import { randomBytes } from 'node:crypto'
import { readdir, readFile, stat, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { LocalStore } from '../../src/kv/local.ts'
import type { LocalStoreOptions } from '../../src/kv/local.ts'
import { kvComplianceSuite } from '../compliance/kv.suite.ts'
import { tmpDir, tmpfsDir } from '../helpers/tmp.ts'

kvComplianceSuite('LocalStore', async () => {
  const store = await LocalStore.open(await tmpDir())
  return { kv: store, teardown: async () => { await store.close() } }
})

kvComplianceSuite('LocalStore without fsync', async () => {
  const store = await LocalStore.open(await tmpDir(), { fsync: false })
  return { kv: store, teardown: async () => { await store.close() } }
})

async function openStore (dir: string, options?: LocalStoreOptions): Promise<LocalStore> {
  const store = await LocalStore.open(dir, options)
  onTestFinished(async () => { await store.close() })
  return store
}

async function codeOf (promise: Promise<unknown>): Promise<string> {
  return await promise.then(() => 'resolved', (err: unknown) => err instanceof BazilError ? err.code : String(err))
}

describe('LocalStore on disk', () => {
  it('keeps an object at objects/<first 2 hex>/<rest of hex> and no temp files', async () => {
    const dir = await tmpDir()
    const store = await openStore(dir)
    const key = Buffer.from('ab' + 'cd'.repeat(31), 'hex')
    const value = randomBytes(1234)
    await store.put(key, value)
    const file = join(dir, 'objects', 'ab', 'cd'.repeat(31))
    expect(Buffer.compare(await readFile(file), value)).toBe(0)
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
    expect(await readdir(join(dir, 'objects'))).toEqual(['ab'])
  })

  it('does not rewrite an object that is already there', async () => {
    const dir = await tmpDir()
    const store = await openStore(dir)
    const key = randomBytes(32)
    const value = randomBytes(100)
    await store.put(key, value)
    const file = join(dir, 'objects', key.toString('hex').slice(0, 2), key.toString('hex').slice(2))
    const before = await stat(file)
    await store.put(key, value)
    const after = await stat(file)
    expect(after.ino).toBe(before.ino)
    expect(after.mtimeMs).toBe(before.mtimeMs)
  })

  it('removes temp files left by a crash when it opens', async () => {
    const dir = await tmpDir()
    const first = await LocalStore.open(dir)
    const key = randomBytes(32)
    await first.put(key, randomBytes(10))
    await first.close()
    const leftover = join(dir, 'tmp', `${randomBytes(32).toString('hex')}.999.0`)
    await writeFile(leftover, randomBytes(500))
    await writeFile(join(dir, 'tmp', 'junk'), '')
    const store = await openStore(dir)
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
    expect(await store.stat()).toEqual({ objects: 1, bytes: 10 })
  })

  it('sees the same objects, keys and stat after reopening', async () => {
    const dir = await tmpDir()
    const first = await LocalStore.open(dir)
    const entries = Array.from({ length: 50 }, (_, i) => [randomBytes(32), randomBytes(i * 100)] as const)
    await Promise.all(entries.map(async ([key, value]) => { await first.put(key, value) }))
    await first.delete(entries[0]![0])
    const statBefore = await first.stat()
    await first.close()
    await expect(codeOf(first.get(entries[1]![0]))).resolves.toBe(ErrorCode.CLOSED)

    const store = await openStore(dir)
    expect(await store.stat()).toEqual(statBefore)
    expect(statBefore.objects).toBe(49)
    for (const [key, value] of entries.slice(1)) expect(Buffer.compare(await store.get(key), value)).toBe(0)
    const listed: string[] = []
    for await (const key of store.keys()) listed.push(Buffer.from(key).toString('hex'))
    expect(listed.sort()).toEqual(entries.slice(1).map(([key]) => key.toString('hex')).sort())
  })

  it('never shows a reader a partial object while a put is in progress', async () => {
    const store = await openStore(await tmpDir())
    const key = randomBytes(32)
    const value = randomBytes(8 * 1024 * 1024)
    let done = false
    const put = store.put(key, value).finally(() => { done = true })
    while (!done) {
      const got = await store.get(key).catch((err: unknown) => {
        if (err instanceof BazilError && err.code === ErrorCode.NOT_FOUND) return undefined
        throw err
      })
      if (got !== undefined) expect(Buffer.compare(got, value)).toBe(0)
    }
    await put
    expect(Buffer.compare(await store.get(key), value)).toBe(0)
  })

  it('finishes operations in progress on close, then rejects calls with CLOSED', async () => {
    const dir = await tmpDir()
    const store = await LocalStore.open(dir)
    let settled = 0
    const puts = Array.from({ length: 20 }, async () => {
      await store.put(randomBytes(32), randomBytes(4096)).finally(() => { settled++ })
    })
    await store.close()
    expect(settled).toBe(20)
    await Promise.all(puts)
    await expect(codeOf(store.put(randomBytes(32), randomBytes(1)))).resolves.toBe(ErrorCode.CLOSED)
    await expect(codeOf(store.stat())).resolves.toBe(ErrorCode.CLOSED)
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
  })

  it('rejects keys it cannot name with INVALID', async () => {
    const store = await openStore(await tmpDir())
    await expect(codeOf(store.put(new Uint8Array(0), randomBytes(1)))).resolves.toBe(ErrorCode.INVALID)
    await expect(codeOf(store.get(new Uint8Array(1)))).resolves.toBe(ErrorCode.INVALID)
    await expect(codeOf(store.has(new Uint8Array(128)))).resolves.toBe(ErrorCode.INVALID)
  })

  it('rejects a put with NO_SPACE on a full disk, removing its temp file and harming nothing', async (ctx) => {
    const fs = await tmpfsDir('1m')
    if ('unavailable' in fs) {
      if (process.env.CI === 'true') throw new Error(`CI must run the ENOSPC test: ${fs.unavailable}`)
      ctx.skip(fs.unavailable)
      return
    }
    const store = await openStore(fs.dir)
    const stored: Array<[Buffer, Buffer]> = []
    let code = 'resolved'
    while (code === 'resolved' && stored.length < 100) {
      const entry: [Buffer, Buffer] = [randomBytes(32), randomBytes(64 * 1024)]
      code = await codeOf(store.put(...entry))
      if (code === 'resolved') stored.push(entry)
    }
    expect(code).toBe(ErrorCode.NO_SPACE)
    expect(stored.length).toBeGreaterThan(5)
    // Several puts failing at once each clean up after themselves too, freeing their space.
    const freeBefore = (await statfs(fs.dir)).bfree
    const codes = await Promise.all(Array.from({ length: 8 }, async () => await codeOf(store.put(randomBytes(32), randomBytes(256 * 1024)))))
    expect(codes).toEqual(Array(8).fill(ErrorCode.NO_SPACE))
    expect(await readdir(join(fs.dir, 'tmp'))).toEqual([])
    expect(await store.stat()).toEqual({ objects: stored.length, bytes: stored.length * 64 * 1024 })
    for (const [key, value] of stored) expect(Buffer.compare(await store.get(key), value)).toBe(0)
    expect((await statfs(fs.dir)).bfree).toBe(freeBefore)
    // The store still works once there is room.
    await store.delete(stored[0]![0])
    const small: [Buffer, Buffer] = [randomBytes(32), randomBytes(16)]
    await store.put(...small)
    expect(Buffer.compare(await store.get(small[0]), small[1])).toBe(0)
  })
})
