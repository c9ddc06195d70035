/**
 * Sync between three computers on one LAN (issue 4): real daemons, each in its own network
 * namespace on one bridge, finding each other over mDNS, every pair paired. A change made on
 * one reaches the others by itself; edits made while one is cut off (an nftables drop in its
 * namespace) converge once it is back, with the documented outcomes — rename/edit keeps the
 * edit under the new name, modify/modify keeps both versions (the other as
 * NAME.sync-conflict-…), modify/delete keeps the modified file — and a randomized run of
 * operations under random partitions ends with three identical trees holding every version
 * that was a node's last word (seed printed; BAZIL_SEED reproduces the operations).
 *
 * Bounds on waits guard against hangs only; nothing here judges speed.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { ConflictReport, SyncReport } from '../../src/node/api.ts'
import { requireFuse, testTarget } from '../helpers/mount.ts'
import type { BazilMount, RunResult } from '../helpers/mount.ts'
import { requireNetns, useLan } from '../helpers/netns.ts'
import { createRng, testSeed } from '../helpers/rng.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { contents, randomOperation, snapshot } from '../helpers/tree.ts'

const kind = testTarget()
/** Generous: peers reconnect after a partition within an mDNS interval or a redial round. */
const SYNC_TIMEOUT_S = 90

function json<T> (result: RunResult): T {
  if (result.code !== 0) throw new Error(`exit ${String(result.code)}: ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

describe.runIf(kind === 'bazil' && requireFuse('bazil') && requireNetns())('sync between three computers on one LAN', () => {
  const lan = useLan(['a', 'b', 'c'])
  const nodes: Record<'a' | 'b' | 'c', BazilMount> = {} as Record<'a' | 'b' | 'c', BazilMount>

  /** Waits until every node is caught up with every connected peer, and all see both others. */
  async function settle (): Promise<void> {
    for (let round = 0; round < 2; round++) {
      for (const node of Object.values(nodes)) {
        for (let i = 0; ; i++) {
          const report = json<SyncReport>(await node.run(['sync', '--wait', '--timeout', String(SYNC_TIMEOUT_S), '--json']))
          if (report.peers.filter(p => p.connected).length === 2) break
          if (i > SYNC_TIMEOUT_S * 4) throw new Error(`${node.home}: not connected to both peers: ${JSON.stringify(report.peers)}`)
          await new Promise(resolve => setTimeout(resolve, 250))
        }
      }
    }
  }

  async function trees (): Promise<Array<Record<string, string>>> {
    return await Promise.all(Object.values(nodes).map(async node => await snapshot(node.mount)))
  }

  beforeAll(async () => {
    nodes.a = await lan().start('a')
    for (const name of ['b', 'c'] as const) {
      const home = join(await tmpDir(`bazil-lan-${name}-`), 'home')
      const invite = json<{ code: string }>(await nodes.a.run(['invite', '--json']))
      json(await lan().bazil(name, ['--home', home, 'join', invite.code, '--json']))
      if (name === 'c') {
        // Every pair paired: c joins b too (same owner, same volume).
        const fromB = json<{ code: string }>(await nodes.b.run(['invite', '--json']))
        json(await lan().bazil(name, ['--home', home, 'join', fromB.code, '--json']))
      }
      nodes[name] = await lan().start(name, { home })
    }
    await settle()
  }, 240_000)

  it('carries a change made on one computer to the other two by itself', async () => {
    await mkdir(join(nodes.a.mount, 'shared'))
    await writeFile(join(nodes.a.mount, 'shared/hello.txt'), 'hello from a')
    await settle()
    for (const node of [nodes.b, nodes.c]) {
      expect(await readFile(join(node.mount, 'shared/hello.txt'), 'utf8')).toBe('hello from a')
    }
  }, 240_000)

  it('converges edits made while B was cut off, with the documented outcomes', async () => {
    await mkdir(join(nodes.a.mount, 'project'))
    await writeFile(join(nodes.a.mount, 'project/plan.txt'), 'plan v1')
    await writeFile(join(nodes.a.mount, 'report.txt'), 'report v1')
    await writeFile(join(nodes.a.mount, 'keep.txt'), 'keep v1')
    await settle()

    await lan().partition('b')
    await rename(join(nodes.a.mount, 'project'), join(nodes.a.mount, 'project-2027')) // rename on A ...
    await writeFile(join(nodes.b.mount, 'project/plan.txt'), 'plan v2, edited on b') // ... edit inside on B
    await writeFile(join(nodes.a.mount, 'report.txt'), 'report from a') // modify/modify
    await writeFile(join(nodes.b.mount, 'report.txt'), 'report from b')
    await rm(join(nodes.c.mount, 'keep.txt')) // modify/delete: deleted on C ...
    await writeFile(join(nodes.b.mount, 'keep.txt'), 'keep v2, edited on b') // ... edited on B
    await writeFile(join(nodes.b.mount, 'offline.txt'), 'written while apart')
    await lan().heal('b')
    await settle()

    const [ta, tb, tc] = await trees()
    expect(tb).toEqual(ta)
    expect(tc).toEqual(ta)
    const root = nodes.c.mount
    expect(await readFile(join(root, 'project-2027/plan.txt'), 'utf8')).toBe('plan v2, edited on b')
    expect((await readdir(root)).includes('project')).toBe(false)
    expect(await readFile(join(root, 'keep.txt'), 'utf8')).toBe('keep v2, edited on b')
    expect(await readFile(join(root, 'offline.txt'), 'utf8')).toBe('written while apart')
    const reports = (await readdir(root)).filter(n => n.startsWith('report'))
    expect(reports).toHaveLength(2)
    const texts = await Promise.all(reports.map(async n => await readFile(join(root, n), 'utf8')))
    expect(texts.sort()).toEqual(['report from a', 'report from b'])
    const conflicts = json<ConflictReport[]>(await nodes.a.run(['conflicts', '--json']))
    expect(conflicts.map(c => c.path)).toEqual(reports.filter(n => n !== 'report.txt').map(n => `/${n}`))
  }, 300_000)

  it('ends random operations under random partitions with identical trees and no lost last versions', async () => {
    const seed = testSeed()
    const rng = createRng(seed)
    const names = ['a', 'b', 'c'] as const
    const cut = new Set<string>()
    /** The last version each node wrote of each path, by content digest. */
    const last = new Map<string, string>()
    const log: string[] = []
    for (let step = 0; step < 45; step++) {
      if (rng.chance(0.12)) {
        const name = rng.pick([...names])
        if (cut.has(name)) { await lan().heal(name); cut.delete(name) } else if (cut.size < 2) { await lan().partition(name); cut.add(name) }
        log.push(`${step}: ${cut.has(name) ? 'cut' : 'heal'} ${name}`)
        continue
      }
      const name = rng.pick([...names])
      let result: Awaited<ReturnType<typeof randomOperation>>
      try {
        result = await randomOperation(nodes[name].mount, rng, `${name}${step}`)
      } catch (err) {
        const daemonLog = await readFile(join(nodes[name].home, 'daemon.log'), 'utf8').catch(() => '(no log)')
        throw new Error(`seed ${seed}, step ${step} on ${name}: ${(err as Error).message}\n${log.join('\n')}\n--- daemon log of ${name} (tail):\n${daemonLog.slice(-6000)}`)
      }
      log.push(`${step}: ${name} ${result.op}`)
      if (result.wrote !== undefined) last.set(`${name}:${result.wrote.path}`, result.wrote.digest)
      // A truncate replaces what this node wrote there: that version is gone on purpose.
      if (result.op.startsWith('truncate ')) last.delete(`${name}:${result.op.slice('truncate '.length)}`)
      if (rng.chance(0.2)) await new Promise(resolve => setTimeout(resolve, rng.int(10, 300)))
    }
    for (const name of cut) await lan().heal(name)
    await settle()
    const [ta, tb, tc] = await trees()
    const context = `seed ${seed}\n${log.join('\n')}`
    expect(tb, context).toEqual(ta)
    expect(tc, context).toEqual(ta)
    // A node's last write to a path survives (under the path, moved, or as a conflict copy)
    // unless a later operation could legitimately have removed it: a delete anywhere, or a
    // write, truncate or rename onto that same path.
    const present = contents(ta as Record<string, string>)
    for (const [key, digest] of last) {
      const path = key.slice(key.indexOf(':') + 1)
      const node = key.slice(0, key.indexOf(':'))
      const at = log.findLastIndex(line => line.replace(/^\d+: /, '').startsWith(`${node} write ${path} (`))
      const later = log.slice(at + 1)
      const excused = later.some(line => line.includes(' rm -r ') || line.includes(`write ${path} (`) || line.includes(`truncate ${path}`) || line.endsWith(` ${path}`))
      if (!excused) expect(present.has(digest), `${context}\nlost: ${key}`).toBe(true)
    }
  }, 420_000)
})
