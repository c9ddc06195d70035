/**
 * Crash safety of a Bazil node, end to end: a writer process fsyncs files into the mount while
 * the daemon is SIGKILLed at two points; after `start` recovers the dead mount every file the
 * writer reported as fsynced must be intact byte for byte and `check` must be clean. Then a
 * sealed object is corrupted on disk: reading the file that uses it must fail with EIO (never
 * return wrong bytes), `check` must name it, and every other file must still read fine.
 * Only meaningful on Bazil; BAZIL_SEED replays the kill points.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, expect, it, test } from 'vitest'
import type { BazilMount } from '../helpers/mount.ts'
import { errnoOf, repoRoot, requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import { crashFile } from '../helpers/crash-files.ts'
import { createRng, testSeed } from '../helpers/rng.ts'

const kind = testTarget()
const WRITER = new URL('../helpers/crash-writer.ts', import.meta.url).pathname

interface CheckReport {
  files: number
  chunksChecked: number
  bytesChecked: number
  problems: Array<{ chunk: string, problem: 'missing' | 'corrupt', paths: string[] }>
  ok: boolean
}

async function check (bazil: BazilMount): Promise<{ code: number | null, report: CheckReport }> {
  const result = await bazil.run(['check', '--json'])
  let report: CheckReport
  try {
    report = JSON.parse(result.stdout) as CheckReport
  } catch {
    throw new Error(`check --json printed no JSON (exit ${String(result.code)}): ${result.stdout}\n${result.stderr}`)
  }
  return { code: result.code, report }
}

function sha (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** The writer child; `synced` is the highest index it reported as fsynced. */
function startWriter (dir: string, prefix: string): {
  waitFor: (index: number) => Promise<void>
  killAndWait: () => Promise<number>
} {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, prefix], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let synced = -1
  let stderr = ''
  const waiters: Array<{ index: number, resolve: () => void, reject: (err: Error) => void }> = []
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  createInterface({ input: child.stdout }).on('line', (line) => {
    const match = /^synced (\d+)$/.exec(line)
    if (match === null) return
    synced = Number(match[1])
    for (const waiter of waiters.filter((w) => w.index <= synced)) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  })
  const closed = new Promise<void>((resolve) => child.once('close', () => { resolve() }))
  void closed.then(() => {
    for (const waiter of waiters.splice(0)) {
      waiter.reject(new Error(`writer exited after "synced ${synced}" before reaching ${waiter.index}: ${stderr}`))
    }
  })
  return {
    waitFor: async (index) => {
      if (synced >= index) return
      await new Promise<void>((resolve, reject) => { waiters.push({ index, resolve, reject }) })
    },
    // Waits for 'close' so every line the writer printed has been counted.
    killAndWait: async () => {
      child.kill('SIGKILL')
      await closed
      return synced
    }
  }
}

async function expectIntact (dir: string, prefix: string, upTo: number, context: string): Promise<void> {
  for (let i = 0; i <= upTo; i++) {
    const { name, data } = crashFile(prefix, i)
    const back = await readFile(join(dir, name)).catch((err: unknown) => errnoOf(err) ?? String(err))
    if (typeof back === 'string') {
      expect.fail(`${context}: ${name} (fsynced, ${data.length} bytes) cannot be read: ${back}`)
    }
    expect(back.length, `${context}: size of fsynced ${name}`).toBe(data.length)
    expect(sha(back), `${context}: content of fsynced ${name}`).toBe(sha(data))
  }
}

async function listFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...await listFiles(path))
    else if (entry.isFile()) out.push(path)
  }
  return out
}

if (kind !== 'bazil') {
  test.skip(`skipped: crash recovery is a property of Bazil, not of the ${kind} reference`, () => {})
}

describe.runIf(kind === 'bazil' && requireFuse('bazil'))('crash safety of a Bazil node', () => {
  it('keeps every fsynced file across two SIGKILLs of the daemon', async () => {
    const seed = testSeed()
    const rng = createRng(seed)
    const killPoints = [rng.int(2, 8), rng.int(4, 16)]
    console.log(`crash test: BAZIL_SEED=${seed}, kill after fsync #${killPoints.join(' and #')}`)
    const bazil = await startBazil()
    const dir = join(bazil.mount, 'crash')
    await mkdir(dir)
    const survivors: Array<{ prefix: string, upTo: number }> = []

    for (const [round, killAfter] of killPoints.entries()) {
      const prefix = `round${round}`
      const writer = startWriter(dir, prefix)
      await writer.waitFor(killAfter)
      await bazil.kill9()
      const upTo = await writer.killAndWait()
      survivors.push({ prefix, upTo })
      await bazil.start()
      for (const survivor of survivors) {
        await expectIntact(dir, survivor.prefix, survivor.upTo, `BAZIL_SEED=${seed}, after kill ${round + 1}`)
      }
      const { code, report } = await check(bazil)
      expect(report.problems, `BAZIL_SEED=${seed}: check after kill ${round + 1}`).toEqual([])
      expect(report.ok).toBe(true)
      expect(code).toBe(0)
      expect(report.files).toBeGreaterThanOrEqual(survivors.reduce((n, s) => n + s.upTo + 1, 0))
    }
    // Still a working volume: write, read, and survive a clean restart.
    await writeFile(join(dir, 'after.txt'), 'after the crashes')
    await bazil.restart()
    expect(await readFile(join(dir, 'after.txt'), 'utf8')).toBe('after the crashes')
    for (const survivor of survivors) await expectIntact(dir, survivor.prefix, survivor.upTo, `BAZIL_SEED=${seed}, after clean restart`)
  }, 600_000)

  it('answers EIO for a corrupted chunk, names it in check, and serves every other file', async () => {
    const bazil = await startBazil()
    const objects = join(bazil.home, 'store', 'objects')
    const dir = join(bazil.mount, 'c')
    await mkdir(dir)
    const rng = createRng(99)
    const contents = new Map<string, Buffer>()
    const writeSynced = async (name: string, size: number): Promise<void> => {
      const data = rng.bytes(size)
      const handle = await open(join(dir, name), 'w')
      await handle.write(data)
      await handle.sync()
      await handle.close()
      contents.set(name, data)
    }
    await writeSynced('before.bin', 1_500_000)
    await writeSynced('small-before.txt', 3000)
    const known = new Set(await listFiles(objects))
    expect(known.size, `no object files under ${objects}`).toBeGreaterThan(0)
    await writeSynced('victim.bin', 2_500_000)
    const victimObjects = (await listFiles(objects)).filter((path) => !known.has(path))
    expect(victimObjects.length, 'writing victim.bin stored no new objects').toBeGreaterThan(0)
    await writeSynced('after.bin', 800_000)
    await writeSynced('small-after.txt', 10)

    // The largest new object is a content chunk of victim.bin (manifests are small).
    const sizes = await Promise.all(victimObjects.map(async (path) => ({ path, size: (await stat(path)).size })))
    const victim = sizes.sort((x, y) => y.size - x.size)[0]!
    const victimId = relative(objects, victim.path).replace(/\//g, '')
    await bazil.stop()
    const bytes = await readFile(victim.path)
    const at = Math.floor(bytes.length / 2)
    bytes[at] = bytes[at]! ^ 0x01
    await writeFile(victim.path, bytes)
    await bazil.start()

    const read = await readFile(join(dir, 'victim.bin')).catch((err: unknown) => errnoOf(err) ?? String(err))
    expect(typeof read === 'string' ? read : `read ${read.length} bytes (${read.equals(contents.get('victim.bin')!) ? 'intact!?' : 'WRONG BYTES'})`)
      .toBe('EIO')
    for (const [name, data] of contents) {
      if (name === 'victim.bin') continue
      expect(sha(await readFile(join(dir, name))), `${name} after corrupting another file's chunk`).toBe(sha(data))
    }

    const { code, report } = await check(bazil)
    expect(report.ok).toBe(false)
    expect(code).not.toBe(0)
    expect(report.problems.map((p) => ({ problem: p.problem, paths: p.paths }))).toEqual([
      { problem: 'corrupt', paths: ['/c/victim.bin'] }
    ])
    expect.soft(report.problems[0]?.chunk, `the corrupted object file is ${victim.path}`).toBe(victimId)
    // Reading again still refuses, rather than serving something cached or repaired wrongly.
    expect(await readFile(join(dir, 'victim.bin')).then(() => 'OK', (err: unknown) => errnoOf(err))).toBe('EIO')
  }, 300_000)
})
