/**
 * The replication policy end to end through the CLI and the mount, with three local-directory
 * stores: `bazil store policy copies=3` queues what is stored already, each object ends up in
 * exactly two of the three other stores (the local store counts as one), a store that cannot
 * take its share leaves objects under-replicated in `status` and `store list` until it can, and
 * new writes follow the policy too.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { copiesOf, objectsIn } from '../helpers/store-dirs.ts'
import { json, status } from '../helpers/stores.ts'
import type { PolicyReport } from '../../src/node/api.ts'
import { parseCopies, replicasFor } from '../../src/node/stores.ts'
import { isBazilError } from '../../src/errors.ts'

const kind = testTarget()

/** Polls until `done` holds; the test's own timeout is the only deadline. */
async function until (done: () => Promise<boolean>): Promise<void> {
  while (!await done()) await new Promise(resolve => setTimeout(resolve, 100))
}

describe.runIf(kind === 'bazil' && requireFuse('bazil'))('the replication policy', () => {
  it('copies=3 keeps each object in the local store and two others, and reports what is short', async () => {
    const node = await startBazil()
    await writeFile(join(node.mount, 'before.bin'), randomBytes(6 * 1024 * 1024))
    const dirs = await Promise.all(['a', 'b', 'c'].map(async name => await tmpDir(`bazil-store-${name}-`)))
    for (const [i, name] of ['a', 'b', 'c'].entries()) {
      const added = await node.run(['store', 'add', name, dirs[i] as string])
      expect(added.code, added.stderr).toBe(0)
    }
    expect((await json<PolicyReport>(await node.run(['store', 'policy', '--json']))).copies).toBe('all')
    expect((await node.run(['store', 'policy', 'copies=0'])).code).not.toBe(0)
    expect((await node.run(['store', 'policy', 'copies=two'])).code).not.toBe(0)

    // Store c cannot take anything: its objects dir is a file.
    const broken = dirs[2] as string
    await rm(join(broken, 'objects'), { recursive: true })
    await writeFile(join(broken, 'objects'), 'not a directory')

    const set = await json<PolicyReport>(await node.run(['store', 'policy', 'copies=3', '--json']))
    expect(set.copies).toBe(3)
    expect(set.stores).toBe(4)
    // a and b take their share; what was picked for c stays under-replicated.
    await until(async () => {
      const s = await status(node)
      return s.replication.filter(r => r.store !== 'c').every(r => r.pending === 0) &&
        s.replication.find(r => r.store === 'c')?.lastError !== undefined
    })
    const short = await status(node)
    expect(short.copies).toBe(3)
    expect(short.underReplicated).toBeGreaterThan(0)
    expect(short.underReplicated).toBe(short.replication.find(r => r.store === 'c')?.pending)
    expect((await node.run(['store', 'list'])).stdout).toMatch(/copies=3.*under-replicated/)

    await rm(join(broken, 'objects'))
    await mkdir(join(broken, 'objects'))
    await until(async () => (await status(node)).underReplicated === 0)
    const counts = await copiesOf(node, dirs)
    expect(counts.size).toBeGreaterThan(0)
    expect([...new Set(counts.values())]).toEqual([2])

    // New writes follow the policy, and the policy survives a restart.
    await node.stop()
    await node.restart()
    await writeFile(join(node.mount, 'after.bin'), randomBytes(3 * 1024 * 1024))
    // (The new chunks reach the local store, and so the queue, a moment after the write returns.)
    await until(async () => {
      const after = await copiesOf(node, dirs)
      return after.size > counts.size && [...after.values()].every(n => n === 2) && (await status(node)).underReplicated === 0
    })
    const report = await json<PolicyReport>(await node.run(['store', 'policy', '--json']))
    expect(report).toEqual({ copies: 3, stores: 4, underReplicated: 0 })
  }, 180_000)
})

describe('replicasFor and parseCopies', () => {
  const names = ['a', 'b', 'c', 'd']
  const keys = Array.from({ length: 400 }, (_, i) => new Uint8Array(32).fill(i % 256).map((v, j) => j === 0 ? i >> 8 : v))

  it('picks copies − 1 other stores per key, the same ones every time, spread over all', () => {
    const load = new Map(names.map(n => [n, 0]))
    for (const key of keys) {
      const picked = replicasFor(key, names, 3)
      expect(picked).toHaveLength(2)
      expect(new Set(picked).size).toBe(2)
      expect(replicasFor(key, names, 3)).toEqual(picked)
      for (const n of picked) load.set(n, (load.get(n) ?? 0) + 1)
    }
    // 800 picks over 4 stores: each gets a share (200 expected), none is starved or takes all.
    for (const n of names) expect(load.get(n)).toBeGreaterThan(100)
  })

  it('moves only the keys of a removed store (rendezvous hashing)', () => {
    let moved = 0
    for (const key of keys) {
      const before = replicasFor(key, names, 2)
      const after = replicasFor(key, names.filter(n => n !== 'd'), 2)
      if (!before.includes('d')) expect(after).toEqual(before)
      else moved++
    }
    expect(moved).toBeGreaterThan(0)
  })

  it('copies=all and too few stores mean every store; copies=1 means the local one only', () => {
    expect(replicasFor(keys[0] as Uint8Array, names, 'all')).toEqual(names)
    expect(replicasFor(keys[0] as Uint8Array, names, 9)).toEqual(names)
    expect(replicasFor(keys[0] as Uint8Array, names, 1)).toEqual([])
  })

  it('parses copies=N, N and all, and refuses anything else with INVALID', () => {
    expect(parseCopies('copies=2')).toBe(2)
    expect(parseCopies('3')).toBe(3)
    expect(parseCopies('copies=all')).toBe('all')
    for (const bad of ['copies=0', 'copies=-1', 'copies=1.5', 'two', 'copies=', 'copies=65']) {
      let error: unknown
      try { parseCopies(bad) } catch (err) { error = err }
      expect(isBazilError(error, 'INVALID'), bad).toBe(true)
    }
  })
})
