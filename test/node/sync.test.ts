/**
 * Sync between two of your devices, as two real daemons on loopback (issue 4): B joins A; a
 * tree written on A appears on B through the mount, content fetched lazily from A; changes on
 * B come back; small files' content follows by itself, large files' stays lazy; a file edited on both while B is stopped ends as the file and a conflict copy
 * on both, listed by `bazil conflicts` and settled by deleting the copy; a read of content no
 * reachable peer holds fails at once with EIO; a change to a file open for writing waits until
 * it is closed; and a daemon killed while applying a batch comes back consistent and resumes.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { ConflictReport, SyncReport } from '../../src/node/api.ts'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import type { BazilMount, RunResult } from '../helpers/mount.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { snapshot } from '../helpers/tree.ts'

const kind = testTarget()

function json<T> (result: RunResult): T {
  if (result.code !== 0) throw new Error(`exit ${String(result.code)}: ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

async function syncWait (...nodes: BazilMount[]): Promise<void> {
  for (const node of nodes) {
    const report = json<SyncReport>(await node.run(['sync', '--wait', '--timeout', '60', '--json']))
    expect(report.peers.filter(p => p.connected).length).toBeGreaterThan(0)
  }
}

async function pairedPair (): Promise<{ a: BazilMount, b: BazilMount }> {
  const a = await startBazil()
  const { code } = json<{ code: string }>(await a.run(['invite', '--json']))
  const bHome = join(await tmpDir('bazil-sync-b-'), 'home')
  json(await a.run(['--home', bHome, 'join', code, '--json']))
  const b = await startBazil({ home: bHome })
  return { a, b }
}

describe.runIf(kind === 'bazil' && requireFuse('bazil'))('sync between two daemons', () => {
  it('carries a tree from A to B and changes back, content fetched from the peer on read', async () => {
    const { a, b } = await pairedPair()
    const big = randomBytes(3 * 1024 * 1024 + 11)
    await mkdir(join(a.mount, 'docs/deep'), { recursive: true })
    await writeFile(join(a.mount, 'docs/deep/big.bin'), big)
    await writeFile(join(a.mount, 'docs/note.txt'), 'hello from A')
    await syncWait(a, b)
    expect(await readFile(join(b.mount, 'docs/note.txt'), 'utf8')).toBe('hello from A')
    expect((await readFile(join(b.mount, 'docs/deep/big.bin'))).equals(big)).toBe(true)
    expect((await stat(join(b.mount, 'docs/deep/big.bin'))).size).toBe(big.length)
    // Content read once stays on B: it reads with A gone.
    await a.stop()
    expect((await readFile(join(b.mount, 'docs/deep/big.bin'))).equals(big)).toBe(true)
    expect(await readFile(join(b.mount, 'docs/note.txt'), 'utf8')).toBe('hello from A')
    await a.start()

    await writeFile(join(b.mount, 'docs/note.txt'), 'edited on B')
    await rename(join(b.mount, 'docs/deep'), join(b.mount, 'moved'))
    await syncWait(b, a)
    expect(await readFile(join(a.mount, 'docs/note.txt'), 'utf8')).toBe('edited on B')
    expect((await readFile(join(a.mount, 'moved/big.bin'))).equals(big)).toBe(true)
    expect(await readdir(join(a.mount, 'docs'))).toEqual(['note.txt'])
  })

  it('keeps both versions of a file edited on both sides while apart, and settles when the copy is deleted', async () => {
    const { a, b } = await pairedPair()
    await writeFile(join(a.mount, 'report.txt'), 'base')
    await syncWait(a, b)
    expect(await readFile(join(b.mount, 'report.txt'), 'utf8')).toBe('base')
    await b.stop()
    await writeFile(join(a.mount, 'report.txt'), 'version A')
    await b.restart({ offline: true })
    await writeFile(join(b.mount, 'report.txt'), 'version B')
    await b.stop()
    await b.restart()
    await syncWait(a, b)
    await syncWait(a, b)
    const names = (await readdir(a.mount)).sort()
    expect(names).toHaveLength(2)
    expect((await readdir(b.mount)).sort()).toEqual(names)
    const texts = await Promise.all(names.map(async n => await readFile(join(a.mount, n), 'utf8')))
    expect(texts.sort()).toEqual(['version A', 'version B'])
    const conflicts = json<ConflictReport[]>(await a.run(['conflicts', '--json']))
    expect(conflicts).toHaveLength(1)
    expect(conflicts[0]?.path).toMatch(/^\/report\.sync-conflict-\d{8}-\d{6}-[0-9a-z]+\.txt$/)
    expect(conflicts[0]?.original).toBe('/report.txt')
    expect((await a.run(['conflicts'])).stdout).toContain('report.sync-conflict-')

    await rm(join(b.mount, (conflicts[0]?.path as string).slice(1)))
    await syncWait(b, a)
    expect(await readdir(a.mount)).toEqual(['report.txt'])
    expect(json<ConflictReport[]>(await a.run(['conflicts', '--json']))).toEqual([])
    expect(json<ConflictReport[]>(await b.run(['conflicts', '--json']))).toEqual([])
  })

  it('fails a read of content that no reachable peer holds with EIO, and reads it once the peer is back', async () => {
    const { a, b } = await pairedPair()
    const data = randomBytes(512 * 1024)
    await writeFile(join(a.mount, 'only-on-a.bin'), data)
    await syncWait(a, b)
    expect((await stat(join(b.mount, 'only-on-a.bin'))).size).toBe(data.length) // metadata is here
    await a.stop()
    const error = await readFile(join(b.mount, 'only-on-a.bin')).then(() => undefined, (err: NodeJS.ErrnoException) => err)
    expect(error?.code).toBe('EIO')
    await a.start()
    await syncWait(b)
    expect((await readFile(join(b.mount, 'only-on-a.bin'))).equals(data)).toBe(true)
  })

  it('fetches the content of small files in the background as they arrive; large files stay lazy', async () => {
    const { a, b } = await pairedPair()
    await mkdir(join(a.mount, 'notes'))
    const small = Array.from({ length: 30 }, (_, i) => randomBytes(500 + i * 997))
    for (const [i, bytes] of small.entries()) await writeFile(join(a.mount, `notes/n${i}.txt`), bytes)
    const large = randomBytes(2 * 1024 * 1024)
    await writeFile(join(a.mount, 'large.bin'), large)
    await syncWait(a, b)
    // Nothing on B reads them: B's store fills by itself (the bound only guards against a hang).
    const missing = async (path: string): Promise<number> => json<{ missing: number }>(await b.run(['get', join(b.mount, path), '--dry-run', '--json'])).missing
    for (let i = 0; await missing('notes') > 0; i++) {
      if (i > 300) throw new Error('the small files never arrived in B\'s store')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(await missing('large.bin')).toBeGreaterThan(0)
    await a.stop()
    for (const [i, bytes] of small.entries()) expect((await readFile(join(b.mount, `notes/n${i}.txt`))).equals(bytes)).toBe(true)
    const error = await readFile(join(b.mount, 'large.bin')).then(() => undefined, (err: NodeJS.ErrnoException) => err)
    expect(error?.code).toBe('EIO')
  })

  it('holds a change to a file open for writing until it is closed, then keeps both versions', async () => {
    const { a, b } = await pairedPair()
    await writeFile(join(a.mount, 'open.txt'), 'base')
    await syncWait(a, b)
    const handle = await open(join(b.mount, 'open.txt'), 'r+')
    try {
      await handle.write('written on b while open', 0)
      await writeFile(join(a.mount, 'open.txt'), 'written on a')
      await syncWait(a)
      for (let i = 0; ; i++) {
        const report = json<SyncReport>(await b.run(['sync', '--json']))
        if (report.waiting > 0) break
        if (i > 400) throw new Error(`b never held the change: ${JSON.stringify(report)}`)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
      expect(await readFile(join(b.mount, 'open.txt'), 'utf8')).toBe('written on b while open')
    } finally {
      await handle.close()
    }
    for (let i = 0; json<SyncReport>(await b.run(['sync', '--json'])).waiting > 0; i++) {
      if (i > 400) throw new Error('the held change was never applied')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    await syncWait(b, a)
    const names = (await readdir(a.mount)).sort()
    expect((await readdir(b.mount)).sort()).toEqual(names)
    const texts = await Promise.all(names.map(async n => await readFile(join(a.mount, n), 'utf8')))
    expect(texts.sort()).toEqual(['written on a', 'written on b while open'])
  })

  it('comes back consistent after being killed while applying a batch, and resumes', async () => {
    const a = await startBazil()
    const count = 1200
    await mkdir(join(a.mount, 'many'))
    for (let i = 0; i < count; i++) await writeFile(join(a.mount, 'many', `f${i}.txt`), `file ${i}\n`)
    const { code } = json<{ code: string }>(await a.run(['invite', '--json']))
    const bHome = join(await tmpDir('bazil-sync-crash-'), 'home')
    json(await a.run(['--home', bHome, 'join', code, '--json']))
    const b = await startBazil({ home: bHome })
    // Kill it as soon as it has applied part of A's log (if it is done already, the rest still holds).
    let midway = false
    for (let i = 0; i < 2000; i++) {
      const peer = json<SyncReport>(await b.run(['sync', '--json'])).peers[0]
      if (peer !== undefined && peer.cursor > 0) { midway = peer.behind > 0; break }
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    await b.kill9()
    await b.start()
    await syncWait(b, a)
    const [ta, tb] = await Promise.all([snapshot(a.mount, { content: false }), snapshot(b.mount, { content: false })])
    expect(tb).toEqual(ta)
    expect(Object.keys(tb)).toHaveLength(count + 1)
    expect(await readFile(join(b.mount, 'many', `f${count - 1}.txt`), 'utf8')).toBe(`file ${count - 1}\n`)
    process.stdout.write(`killed ${midway ? 'in the middle of' : 'after'} applying A's log\n`)
  })
})
