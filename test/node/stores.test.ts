/**
 * Stores end to end through the CLI and the mount, with a second local directory as the other
 * store: push copies only what is missing (dry run first), new writes replicate by themselves,
 * a file whose chunks exist only in the other store still reads back through the mount (and
 * stays local once read), and `bazil get` brings the rest home.
 */
import { randomBytes } from 'node:crypto'
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import type { RunResult } from '../helpers/mount.ts'
import { tmpDir } from '../helpers/tmp.ts'

const kind = testTarget()

async function json<T> (result: RunResult): Promise<T> {
  expect(result.code, result.stderr).toBe(0)
  return JSON.parse(result.stdout) as T
}

interface Transfer { files: number, objects: number, missing: number, bytes: number, dryRun: boolean, sources?: Array<{ store: string, objects: number, bytes: number }>, unavailable?: number }

describe.runIf(kind === 'bazil' && requireFuse('bazil'))('stores, push and get', () => {
  it('pushes what is missing, replicates new writes, reads from the other store, gets back', async () => {
    const node = await startBazil()
    const backup = await tmpDir('bazil-backup-')
    const before = randomBytes(3 * 1024 * 1024)
    await writeFile(join(node.mount, 'before.bin'), before)

    const stores = await json<Array<{ name: string, state: string }>>(await node.run(['store', 'add', 'backup', backup, '--json']))
    expect(stores.map(s => s.name)).toEqual(['local', 'backup'])
    expect((await node.run(['store', 'add', 'backup', backup])).code).not.toBe(0)
    expect((await node.run(['store', 'add', 'bad', 'ftp://x/y'])).code).not.toBe(0)

    const dry = await json<Transfer>(await node.run(['push', '/', 'backup', '--dry-run', '--json']))
    expect(dry.dryRun).toBe(true)
    expect(dry.missing).toBeGreaterThan(0)
    expect(await readdir(join(backup, 'objects'), { recursive: true })).toEqual([]) // a dry run moves nothing
    const pushed = await json<Transfer>(await node.run(['push', join(node.mount, 'before.bin'), 'backup', '--json']))
    expect(pushed.missing).toBe(dry.missing)
    expect(pushed.bytes).toBeGreaterThan(before.length)
    expect((await json<Transfer>(await node.run(['push', '/', 'backup', '--json']))).missing).toBe(0)
    // Each store says what it holds: the backup has exactly what was pushed.
    const holdings = await json<Array<{ name: string, objects?: number, bytes?: number }>>(await node.run(['store', 'list', '--json']))
    expect(holdings.find(s => s.name === 'backup')?.objects).toBe(pushed.missing)
    expect(holdings.find(s => s.name === 'backup')?.bytes).toBe(pushed.bytes)
    expect(holdings.find(s => s.name === 'local')?.objects).toBeGreaterThanOrEqual(pushed.missing)

    // Written after the store was added: replicated in the background.
    const after = randomBytes(2 * 1024 * 1024)
    await writeFile(join(node.mount, 'after.bin'), after)
    for (let i = 0; i < 200; i++) {
      const status = await json<{ replication: Array<{ store: string, pending: number }> }>(await node.run(['status', '--json']))
      if (status.replication.every(r => r.pending === 0)) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect((await json<Transfer>(await node.run(['push', '/', 'backup', '--dry-run', '--json']))).missing).toBe(0)

    // Only the other store has the chunks: reads still work through the mount.
    await node.stop()
    await rm(join(node.home, 'store', 'objects'), { recursive: true, force: true })
    await node.restart()
    expect((await readFile(join(node.mount, 'before.bin'))).equals(before)).toBe(true)
    // What was read is kept locally: `get` of that file finds nothing missing; of the other, it does.
    expect((await json<Transfer>(await node.run(['get', join(node.mount, 'before.bin'), '--dry-run', '--json']))).missing).toBe(0)
    // A dry run says where the missing objects are. (Walking the files reads their manifests,
    // which are then kept: the first dry run may count a manifest node that later ones do not.)
    expect((await node.run(['get', '/', '--dry-run'])).stdout).toMatch(/backup holds \d+ of them/)
    const where = await json<Transfer>(await node.run(['get', '/', '--dry-run', '--json']))
    expect(where.missing).toBeGreaterThan(0)
    expect(where.sources).toEqual([{ store: 'backup', objects: where.missing, bytes: where.bytes }])
    expect(where.unavailable).toBe(0)
    const got = await json<Transfer>(await node.run(['get', '/', '--json']))
    expect(got.missing).toBe(where.missing)
    expect((await readFile(join(node.mount, 'after.bin'))).equals(after)).toBe(true)
    expect((await json<Transfer>(await node.run(['get', '/', '--json']))).missing).toBe(0)
    await node.stop()
    await rm(backup, { recursive: true, force: true })
    await node.restart()
    expect((await readFile(join(node.mount, 'before.bin'))).equals(before)).toBe(true)
    const list = await node.run(['store', 'list'])
    expect(list.code).toBe(0)
    expect(list.stdout).toContain('backup')
    expect((await json<unknown[]>(await node.run(['store', 'rm', 'backup', '--json']))).length).toBe(1)
  })
})
