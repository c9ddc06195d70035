import { describe, it, expect, onTestFinished } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { initHome } from '../../src/node/home.ts'
import { serveControl } from '../../src/node/control.ts'
import { acquireLock } from '../../src/node/lock.ts'
import type { CheckReport, NodeApi, StatusReport } from '../../src/node/api.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { stubApi, stubStatus } from '../helpers/stub-api.ts'

const BIN = fileURLToPath(new URL('../../scripts/bazil.mjs', import.meta.url))

interface Result { code: number | null, stdout: string, stderr: string }

/** Runs the real `bazil` in a child process with a private HOME and no DEBUG. */
async function bazil (args: string[], env: Record<string, string> = {}): Promise<Result> {
  const home = await tmpDir()
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: home, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', chunk => { stdout += chunk })
  child.stderr.on('data', chunk => { stderr += chunk })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  return { code, stdout, stderr }
}

function expectNoStack (result: Result): void {
  expect(result.stderr).not.toMatch(/\n\s+at /)
}

const status: StatusReport = stubStatus

/** A data dir with a fake daemon (a stub NodeApi on its control socket) in this process. */
async function fakeDaemon (api: Partial<NodeApi>): Promise<string> {
  const dir = join(await tmpDir(), 'home')
  const home = await initHome(dir)
  const server = await serveControl(stubApi({ status: async () => status, ...api }), home.socketPath)
  onTestFinished(async () => { await server.close() })
  return dir
}

describe('bazil CLI', () => {
  it('prints help for the program and for each command', async () => {
    const top = await bazil(['--help'])
    expect(top.code).toBe(0)
    for (const command of ['init', 'start', 'stop', 'status', 'check']) expect(top.stdout).toContain(command)
    expect(top.stdout).toContain('--home')
    const commands = ['init', 'start', 'stop', 'status', 'check']
    const results = await Promise.all(commands.map(async command => await bazil([command, '--help'])))
    results.forEach((one, i) => {
      expect(one.code).toBe(0)
      expect(one.stdout).toContain(`Usage: bazil ${commands[i]}`)
    })
    expect(results[1]?.stdout).toContain('--mount')
  })

  it('treats bad command lines as usage errors (exit 2) with a hint', async () => {
    const cases = [['frobnicate'], ['status', '--bogus'], ['start', '--mount'], ['stop', 'extra'], []]
    const home = join(await tmpDir(), 'home')
    const results = await Promise.all(cases.map(async args => await bazil(args, { BAZIL_HOME: home })))
    results.forEach((result, i) => {
      expect(result.code, cases[i]?.join(' ')).toBe(2)
      // No command at all gets the full help (on stderr); anything else a pointer to it.
      expect(result.stderr).toContain(cases[i]?.length === 0 ? 'Usage: bazil' : 'bazil --help')
      expectNoStack(result)
    })
    expect((await bazil(['statsu'])).stderr).toContain('Did you mean status?')
  })

  it('initializes once, and refuses a second init clearly', async () => {
    const dir = join(await tmpDir(), 'home')
    const first = await bazil(['init'], { BAZIL_HOME: dir })
    expect(first.code).toBe(0)
    expect(first.stdout).toContain(dir)
    expect(first.stdout).toMatch(/12D3KooW\w+/)
    const second = await bazil(['init'], { BAZIL_HOME: dir })
    expect(second.code).toBe(1)
    expect(second.stderr).toContain('already a Bazil data dir')
    expect(second.stdout).toBe('')
    expectNoStack(second)
  })

  it('init --json prints one JSON document', async () => {
    const dir = join(await tmpDir(), 'home')
    const result = await bazil(['init', '--json'], { BAZIL_HOME: dir })
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({ home: dir, volume: { name: 'default' }, peerId: expect.stringMatching(/^12D3KooW/) })
  })

  it('--home overrides $BAZIL_HOME', async () => {
    const env = join(await tmpDir(), 'env-home')
    const flag = join(await tmpDir(), 'flag-home')
    expect((await bazil(['--home', flag, 'init'], { BAZIL_HOME: env })).code).toBe(0)
    expect((await bazil(['init', '--home', flag], { BAZIL_HOME: env })).code).toBe(1)
    expect((await bazil(['init'], { BAZIL_HOME: env })).code).toBe(0)
  })

  it('says how to fix a missing data dir (exit 3)', async () => {
    const dir = join(await tmpDir(), 'nowhere')
    const commands = ['status', 'stop', 'check', 'start']
    const results = await Promise.all(commands.map(async command => await bazil([command], { BAZIL_HOME: dir })))
    results.forEach((result, i) => {
      expect(result.code, commands[i]).toBe(3)
      expect(result.stderr).toContain('bazil init')
      expect(result.stderr).toContain(dir)
      expectNoStack(result)
    })
  })

  it('refuses a data dir that is a file or a foreign non-empty dir', async () => {
    const file = join(await tmpDir(), 'file')
    await writeFile(file, 'x')
    const asFile = await bazil(['status'], { BAZIL_HOME: file })
    expect(asFile.code).toBe(1)
    expect(asFile.stderr).toContain('not a directory')
    const foreign = join(await tmpDir(), 'foreign')
    await mkdir(foreign)
    await writeFile(join(foreign, 'thesis.tex'), 'x')
    const init = await bazil(['init'], { BAZIL_HOME: foreign })
    expect(init.code).toBe(1)
    expect(init.stderr).toContain('not empty')
    expectNoStack(init)
  })

  it('says Bazil is not running (exit 4) for status, check and stop', async () => {
    const dir = join(await tmpDir(), 'home')
    await initHome(dir)
    const cases = [['status'], ['status', '--json'], ['check'], ['stop']]
    const results = await Promise.all(cases.map(async args => await bazil(args, { BAZIL_HOME: dir })))
    results.forEach((result, i) => {
      expect(result.code, cases[i]?.join(' ')).toBe(4)
      expect(result.stderr).toContain('bazil start')
      expect(result.stdout).toBe('')
      expectNoStack(result)
    })
  })

  it('shows a stack trace only when DEBUG is set', async () => {
    const dir = join(await tmpDir(), 'home')
    await initHome(dir)
    const result = await bazil(['status'], { BAZIL_HOME: dir, DEBUG: 'bazil:nothing' })
    expect(result.code).toBe(4)
    expect(result.stderr).toMatch(/\n\s+at /)
  })

  it('refuses to start a second daemon for a data dir', async () => {
    const dir = join(await tmpDir(), 'home')
    const home = await initHome(dir)
    const lock = await acquireLock(home.lockPath)
    onTestFinished(async () => { await lock.release() })
    const mount = join(await tmpDir(), 'mnt')
    for (const args of [['start'], ['start', '--foreground']]) {
      const result = await bazil([...args, '--mount', mount], { BAZIL_HOME: dir })
      expect(result.code, args.join(' ')).toBe(1)
      expect(result.stderr).toContain(`a daemon (pid ${process.pid}) is already running`)
      expectNoStack(result)
    }
  })

  it('refuses a mount point inside the data dir', async () => {
    const dir = join(await tmpDir(), 'home')
    await initHome(dir)
    const result = await bazil(['start', '--mount', join(dir, 'mnt')], { BAZIL_HOME: dir })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('must not contain each other')
  })

  it('prints status for people and as JSON', async () => {
    const dir = await fakeDaemon({})
    const human = await bazil(['status'], { BAZIL_HOME: dir })
    expect(human.code).toBe(0)
    expect(human.stdout).toMatch(/pid\s+4242/)
    expect(human.stdout).toMatch(/peer id\s+12D3KooWfake/)
    expect(human.stdout).toContain('5 MiB')
    expect(human.stdout).toContain('1.5 KiB')
    expect(human.stdout).toContain('1,234 chunks')
    const json = await bazil(['status', '--json'], { BAZIL_HOME: dir })
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toEqual(status)
  })

  it('check exits 0 when clean and 1 with the problem paths when not', async () => {
    const clean = await bazil(['check'], { BAZIL_HOME: await fakeDaemon({}) })
    expect(clean.code).toBe(0)
    expect(clean.stdout).toContain('no problems')
    const report: CheckReport = {
      files: 3, chunksChecked: 9, bytesChecked: 4096, ok: false,
      problems: [{ chunk: 'cd'.repeat(32), problem: 'missing', paths: ['/docs/a.txt', '/b.bin'] }]
    }
    const dir = await fakeDaemon({ check: async () => report })
    const bad = await bazil(['check'], { BAZIL_HOME: dir })
    expect(bad.code).toBe(1)
    expect(bad.stdout).toContain('/docs/a.txt')
    expect(bad.stdout).toContain('missing')
    expect(bad.stdout).toContain('1 problem')
    const json = await bazil(['check', '--json'], { BAZIL_HOME: dir })
    expect(json.code).toBe(1)
    expect(JSON.parse(json.stdout)).toEqual(report)
  })
})
