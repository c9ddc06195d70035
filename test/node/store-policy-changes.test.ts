/**
 * How the replication queue follows changes, end to end through the CLI with local-directory
 * stores (a store is broken by replacing its `objects` dir with a file, so every put fails,
 * root or not): a picked store that keeps failing past BAZIL_REROUTE_AFTER_MS hands its objects
 * to the next stores in their rendezvous order and gets nothing back when it returns; lowering
 * `copies` drops what the policy no longer picks; `store rm` drops the store's queue and, under
 * a numeric policy, moves its share to the stores now picked.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import type { BazilMount, RunResult } from '../helpers/mount.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { copiesOf, objectsIn } from '../helpers/store-dirs.ts'
import { json, status } from '../helpers/stores.ts'
import type { StatusReport } from '../../src/node/api.ts'
import { replicasFor } from '../../src/node/stores.ts'

const kind = testTarget()

async function must (node: BazilMount, args: string[]): Promise<RunResult> {
  const result = await node.run(args)
  expect(result.code, result.stderr).toBe(0)
  return result
}

/** Polls until `done` holds; the test's own timeout is the only deadline. */
async function until (done: () => Promise<boolean>): Promise<void> {
  while (!await done()) await new Promise(resolve => setTimeout(resolve, 100))
}

/** A node holding one file's objects (stopped and started again, so they are all in the local store). */
async function nodeWithData (env?: NodeJS.ProcessEnv): Promise<BazilMount> {
  const node = await startBazil(env !== undefined ? { env } : {})
  await writeFile(join(node.mount, 'data.bin'), randomBytes(5 * 1024 * 1024))
  await node.restart()
  return node
}

async function addStores (node: BazilMount, names: string[]): Promise<Map<string, string>> {
  const dirs = new Map<string, string>()
  for (const name of names) {
    const dir = await tmpDir(`bazil-store-${name}-`)
    await must(node, ['store', 'add', name, dir])
    dirs.set(name, dir)
  }
  return dirs
}

async function breakStore (dir: string): Promise<void> {
  await rm(join(dir, 'objects'), { recursive: true })
  await writeFile(join(dir, 'objects'), 'not a directory')
}

async function repairStore (dir: string): Promise<void> {
  await rm(join(dir, 'objects'))
  await mkdir(join(dir, 'objects'))
}

function pendingOf (report: StatusReport, name: string): number | undefined {
  return report.replication.find(r => r.store === name)?.pending
}

/** Waits until every store but `failing` has copied its share and `failing` has failed. */
async function settledExcept (node: BazilMount, failing: string): Promise<StatusReport> {
  let report: StatusReport | undefined
  await until(async () => {
    report = await status(node)
    return report.replication.filter(r => r.store !== failing).every(r => r.pending === 0) &&
      report.replication.find(r => r.store === failing)?.lastError !== undefined
  })
  return report as StatusReport
}

describe.runIf(kind === 'bazil' && requireFuse('bazil'))('the replication queue follows the stores and the policy', () => {
  it('re-routes the objects of a picked store that keeps failing, meets copies=3, and copies nothing back when it returns', async () => {
    const node = await nodeWithData({ BAZIL_REROUTE_AFTER_MS: '1000' })
    const names = ['a', 'b', 'c', 'd']
    const dirs = await addStores(node, names)
    const dirOf = (name: string): string => dirs.get(name) as string
    await breakStore(dirOf('c'))
    await must(node, ['store', 'policy', 'copies=3'])

    const before = await objectsIn(join(node.home, 'store'))
    const pickedC = [...before].filter(id => replicasFor(Buffer.from(id, 'hex'), names, 3).includes('c'))
    expect(pickedC.length).toBeGreaterThan(0)
    // c never takes anything, yet the policy is met: c's share went to the next stores.
    await until(async () => (await status(node)).underReplicated === 0)
    const met = await status(node)
    expect(pendingOf(met, 'c')).toBe(0)
    expect(met.replication.find(r => r.store === 'c')?.lastError).toBeDefined()
    expect(met.replication.find(r => r.store === 'c')?.rerouted).toBe(pickedC.length)
    expect((await must(node, ['status'])).stdout).toContain(`${pickedC.length} sent to other stores instead`)
    expect((await must(node, ['store', 'list'])).stdout).toMatch(/copies=3.*every object meets it/)
    const held = await copiesOf(node, names.filter(n => n !== 'c').map(dirOf))
    expect([...new Set(held.values())]).toEqual([2])

    // c returns: it takes its share of new writes, and none of what went elsewhere.
    await repairStore(dirOf('c'))
    await writeFile(join(node.mount, 'after.bin'), randomBytes(3 * 1024 * 1024))
    await node.restart()
    expect((await objectsIn(join(node.home, 'store'))).size).toBeGreaterThan(before.size)
    await until(async () => (await status(node)).underReplicated === 0)
    const inC = await objectsIn(dirOf('c'))
    expect(inC.size).toBeGreaterThan(0)
    expect([...inC].filter(id => before.has(id))).toEqual([])
    const counts = await copiesOf(node, names.map(dirOf))
    expect([...new Set(counts.values())]).toEqual([2])
  }, 180_000)

  it('lowering copies drops the queue entries of the stores the new policy does not pick', async () => {
    const node = await nodeWithData()
    const names = ['a', 'b', 'c']
    const dirs = await addStores(node, names)
    await breakStore(dirs.get('c') as string)
    await must(node, ['store', 'policy', 'copies=3'])
    const keys = [...await objectsIn(join(node.home, 'store'))].map(id => Buffer.from(id, 'hex'))
    const pickedC = (copies: number): number => keys.filter(key => replicasFor(key, names, copies).includes('c')).length
    expect(pendingOf(await settledExcept(node, 'c'), 'c')).toBe(pickedC(3))
    expect(pickedC(2)).toBeLessThan(pickedC(3))

    await must(node, ['store', 'policy', 'copies=2'])
    const short = await settledExcept(node, 'c')
    expect(pendingOf(short, 'c')).toBe(pickedC(2))
    expect(short.underReplicated).toBe(pickedC(2))

    const single = await json<{ underReplicated: number }>(await node.run(['store', 'policy', 'copies=1', '--json']))
    expect(single.underReplicated).toBe(0)
    expect(pendingOf(await status(node), 'c')).toBe(0)
  }, 180_000)

  it('store rm drops the store\'s queue', async () => {
    const node = await nodeWithData()
    const dirs = await addStores(node, ['a', 'b', 'c'])
    await breakStore(dirs.get('c') as string)
    await must(node, ['store', 'policy', 'copies=all'])
    const stuck = await settledExcept(node, 'c')
    expect(pendingOf(stuck, 'c')).toBeGreaterThan(0)
    expect(stuck.underReplicated).toBe(pendingOf(stuck, 'c'))

    await must(node, ['store', 'rm', 'c'])
    const removed = await status(node)
    expect(removed.underReplicated).toBe(0)
    expect(pendingOf(removed, 'c')).toBeUndefined()
    // A store added again under the old name starts with nothing queued (copies=all queues
    // only new writes for a new store) and receives only what is written after.
    const before = await objectsIn(join(node.home, 'store'))
    const fresh = await tmpDir('bazil-store-c2-')
    await must(node, ['store', 'add', 'c', fresh])
    expect(pendingOf(await status(node), 'c')).toBe(0)
    await writeFile(join(node.mount, 'after.bin'), randomBytes(2 * 1024 * 1024))
    await node.restart()
    await until(async () => (await status(node)).underReplicated === 0)
    const inC = await objectsIn(fresh)
    expect(inC.size).toBeGreaterThan(0)
    expect([...inC].filter(id => before.has(id))).toEqual([])
  }, 180_000)

  it('store rm under copies=2 moves the removed store\'s share to the stores now picked', async () => {
    const node = await nodeWithData()
    const dirs = await addStores(node, ['a', 'b', 'c'])
    const all = ['a', 'b', 'c'].map(name => dirs.get(name) as string)
    await must(node, ['store', 'policy', 'copies=2'])
    await until(async () => (await status(node)).underReplicated === 0)
    expect([...new Set((await copiesOf(node, all)).values())]).toEqual([1])
    expect((await objectsIn(dirs.get('c') as string)).size).toBeGreaterThan(0)

    await must(node, ['store', 'rm', 'c'])
    await until(async () => (await status(node)).underReplicated === 0)
    expect([...new Set((await copiesOf(node, all.slice(0, 2))).values())]).toEqual([1])
  }, 180_000)
})
