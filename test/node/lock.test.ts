import { describe, it, expect, onTestFinished } from 'vitest'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile, writeFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { acquireLock, isProcessAlive, lockHolder, processIdentity } from '../../src/node/lock.ts'
import { ErrorCode } from '../../src/errors.ts'
import type { BazilError } from '../../src/errors.ts'
import { tmpDir } from '../helpers/tmp.ts'

async function codeOf (work: Promise<unknown>): Promise<string> {
  try { await work } catch (err) { return (err as BazilError).code }
  return 'no error'
}

async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''])
  await once(child, 'exit')
  if (child.pid === undefined) throw new Error('no pid')
  return child.pid
}

async function livePid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'])
  onTestFinished(() => { child.kill('SIGKILL') })
  await once(child, 'spawn')
  if (child.pid === undefined) throw new Error('no pid')
  return child.pid
}

describe('daemon lock', () => {
  it('holds the pid, refuses a second taker, and frees on release', async () => {
    const path = join(await tmpDir(), 'daemon.lock')
    const lock = await acquireLock(path)
    expect((await readFile(path, 'utf8')).split('\n')[0]).toBe(String(process.pid))
    expect(await lockHolder(path)).toBe(process.pid)
    expect(await codeOf(acquireLock(path))).toBe(ErrorCode.LOCKED)
    await lock.release()
    expect(await lockHolder(path)).toBeUndefined()
    const again = await acquireLock(path)
    await again.release()
    expect(await readdir(join(path, '..'))).toEqual([])
  })

  it('refuses a lock held by another live process', async () => {
    const path = join(await tmpDir(), 'daemon.lock')
    const pid = await livePid()
    await writeFile(path, `${pid}\n`)
    expect(await codeOf(acquireLock(path))).toBe(ErrorCode.LOCKED)
    expect(await readFile(path, 'utf8')).toBe(`${pid}\n`)
  })

  it('takes over a stale lock whose process is gone', async () => {
    const path = join(await tmpDir(), 'daemon.lock')
    const pid = await deadPid()
    expect(isProcessAlive(pid)).toBe(false)
    await writeFile(path, `${pid}\n`)
    expect(await lockHolder(path)).toBeUndefined()
    const lock = await acquireLock(path)
    expect((await readFile(path, 'utf8')).split('\n')[0]).toBe(String(process.pid))
    await lock.release()
  })

  it('treats a live pid from another boot or an earlier process as stale (pid reuse)', async () => {
    const path = join(await tmpDir(), 'daemon.lock')
    const pid = await livePid()
    const identity = processIdentity(pid)
    expect(identity).toMatch(/^\S+ \d+$/)
    await writeFile(path, `${pid}\n${identity ?? ''}\n`)
    expect(await lockHolder(path)).toBe(pid)
    await writeFile(path, `${pid}\nanother-boot ${identity?.split(' ')[1] ?? ''}\n`)
    expect(await lockHolder(path)).toBeUndefined()
    await writeFile(path, `${pid}\n${identity?.split(' ')[0] ?? ''} 1\n`)
    expect(await lockHolder(path)).toBeUndefined()
    const lock = await acquireLock(path)
    await lock.release()
  })

  it('treats a zombie (exited, not reaped) as gone', async () => {
    // The shell's background child exits; `exec sleep` never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] })
    onTestFinished(() => { parent.kill('SIGKILL') })
    const [line] = await once(parent.stdout, 'data') as [Buffer]
    const zombie = Number.parseInt(line.toString(), 10)
    await expect.poll(async () => (await readFile(`/proc/${zombie}/stat`, 'utf8')).split(') ')[1]?.[0]).toBe('Z')
    expect(isProcessAlive(zombie)).toBe(false)
    const path = join(await tmpDir(), 'daemon.lock')
    await writeFile(path, `${zombie}\n`)
    const lock = await acquireLock(path)
    await lock.release()
  })

  it('takes over an unreadable lock', async () => {
    const path = join(await tmpDir(), 'daemon.lock')
    await writeFile(path, '')
    const lock = await acquireLock(path)
    await lock.release()
  })

  it('lets exactly one of several racing takers win', async () => {
    const path = join(await tmpDir(), 'daemon.lock')
    await writeFile(path, `${await deadPid()}\n`)
    const pids = [await livePid(), await livePid(), await livePid(), await livePid()]
    const results = await Promise.allSettled(pids.map(async pid => await acquireLock(path, pid)))
    expect(results.filter(r => r.status === 'fulfilled')).toHaveLength(1)
    for (const r of results) if (r.status === 'rejected') expect((r.reason as BazilError).code).toBe(ErrorCode.LOCKED)
  })

  it('does not remove a lock that is no longer its own', async () => {
    const path = join(await tmpDir(), 'daemon.lock')
    const lock = await acquireLock(path)
    const other = await livePid()
    await writeFile(path, `${other}\n`)
    await lock.release()
    expect(await lockHolder(path)).toBe(other)
  })
})
