/**
 * A full disk under the data dir: writes fail with ENOSPC, nothing written before is harmed,
 * the daemon keeps serving, and space freed by deleting the failed file's staging data lets
 * writing continue. The data dir lives on a small tmpfs; the mount point elsewhere.
 */
import { randomBytes } from 'node:crypto'
import { open, readFile, writeFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { errnoOf, requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import { tmpfsDir } from '../helpers/tmp.ts'

const kind = testTarget()

describe.runIf(kind === 'bazil' && requireFuse('bazil'))('a full disk under the data dir', () => {
  it('answers ENOSPC, keeps earlier files intact and keeps serving', async () => {
    const fs = await tmpfsDir('48m')
    if ('unavailable' in fs) {
      if (process.env.CI === 'true') throw new Error(`CI=true: ${fs.unavailable}`)
      console.log(`skipped: ${fs.unavailable}`)
      return
    }
    const node = await startBazil({ home: join(fs.dir, 'home'), init: true })
    const keep = randomBytes(2 * 1024 * 1024)
    await writeFile(join(node.mount, 'keep'), keep)
    const synced = await open(join(node.mount, 'keep'), 'r+')
    await synced.sync()
    await synced.close()

    // 64 MiB of incompressible data cannot fit in 48 MiB: some write, the close or the fsync fails.
    const big = await open(join(node.mount, 'big'), 'w')
    let failure: unknown
    try {
      const block = randomBytes(1024 * 1024)
      for (let i = 0; i < 64; i++) await big.write(block)
      await big.sync()
    } catch (err) {
      failure = err
    } finally {
      await big.close().catch((err: unknown) => { failure ??= err })
    }
    expect(errnoOf(failure)).toBe('ENOSPC')

    expect((await readFile(join(node.mount, 'keep'))).equals(keep)).toBe(true)
    await unlink(join(node.mount, 'big'))
    await writeFile(join(node.mount, 'small'), 'still writable')
    expect(await readFile(join(node.mount, 'small'), 'utf8')).toBe('still writable')
    await node.stop()
    await node.restart()
    expect((await readFile(join(node.mount, 'keep'))).equals(keep)).toBe(true)
    const check = await node.run(['check', '--json'])
    expect(JSON.parse(check.stdout).ok).toBe(true)
  })
})
