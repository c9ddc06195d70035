/**
 * What each command does: parse-free actions that take already-parsed options, call into
 * `src/node/`, print, and return an exit code. Failures are thrown as BazilErrors and turned
 * into sentences and exit codes by `exit.ts`.
 */
import { mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { relative, resolve, isAbsolute, join } from 'node:path'
import { BazilError, ErrorCode, fromSystemError, isBazilError } from '../errors.ts'
import { connectControl } from '../node/control.ts'
import type { ControlClient } from '../node/control.ts'
import { runForeground, startBackground, stopDaemon } from '../node/daemon.ts'
import { initHome, openHome, resolveHome } from '../node/home.ts'
import type { Home } from '../node/home.ts'
import { ExitCode } from './exit.ts'
import { formatCheck, formatStatus } from './format.ts'

export interface GlobalOptions { home?: string }
export interface JsonOption { json?: boolean }
export interface StartOptions { mount?: string, foreground?: boolean, init?: boolean, listen?: string[], mdns?: boolean, offline?: boolean }

function networkOptions (options: StartOptions): { listen?: string[], mdns?: boolean, offline?: boolean } {
  return {
    ...(options.listen !== undefined && options.listen.length > 0 ? { listen: options.listen } : {}),
    ...(options.mdns === false ? { mdns: false } : {}),
    ...(options.offline === true ? { offline: true } : {})
  }
}

export async function initCommand (global: GlobalOptions, options: JsonOption): Promise<number> {
  const home = await initHome(homeDir(global))
  if (options.json === true) {
    printJson({ home: home.dir, volume: home.volume, peerId: home.identity.peerId })
  } else {
    print(describeNewHome(home))
    print('Start it with `bazil start`.')
  }
  return ExitCode.OK
}

export async function startCommand (global: GlobalOptions, options: StartOptions): Promise<number> {
  const home = options.init === true ? await openOrInitHome(homeDir(global)) : await openHome(homeDir(global))
  const mount = resolveMount(options.mount)
  checkMountPlacement(mount, home.dir)
  await ensureMountDir(mount)
  if (options.foreground === true) {
    await runForeground({
      home,
      mount,
      ...networkOptions(options),
      onReady: () => {
        const howToStop = process.stdout.isTTY ? ' Press Ctrl-C to stop.' : ''
        print(`Bazil is running (pid ${process.pid}): volume ${home.volume.name} is mounted at ${mount}.${howToStop}`)
      }
    })
    print('Bazil stopped; the volume is unmounted.')
    return ExitCode.OK
  }
  const status = await startBackground({ home, mount, ...networkOptions(options) })
  print(`Bazil started (pid ${status.pid}): volume ${status.volume} is mounted at ${status.mount}.`)
  print(`Log: ${home.logPath}`)
  return ExitCode.OK
}

export async function stopCommand (global: GlobalOptions): Promise<number> {
  const home = await openHome(homeDir(global))
  const { pid } = await stopDaemon(home)
  print(`Bazil stopped (pid ${pid}); the volume is unmounted.`)
  return ExitCode.OK
}

export async function statusCommand (global: GlobalOptions, options: JsonOption): Promise<number> {
  const status = await withDaemon(global, async client => await client.status())
  if (options.json === true) printJson(status)
  else print(formatStatus(status))
  return ExitCode.OK
}

export async function checkCommand (global: GlobalOptions, options: JsonOption): Promise<number> {
  const controller = new AbortController()
  const onInterrupt = (): void => { controller.abort() }
  process.once('SIGINT', onInterrupt)
  try {
    const report = await withDaemon(global, async client => await client.check({ signal: controller.signal }))
    if (options.json === true) printJson(report)
    else print(formatCheck(report))
    return report.ok && report.problems.length === 0 ? ExitCode.OK : ExitCode.FAILURE
  } finally {
    process.off('SIGINT', onInterrupt)
  }
}

function homeDir (global: GlobalOptions): string {
  return global.home !== undefined ? resolve(global.home) : resolveHome()
}

/** The mount point: --mount, else $BAZIL_MOUNT, else ~/bazil. */
export function resolveMount (option: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (option !== undefined && option !== '') return resolve(option)
  if (env.BAZIL_MOUNT !== undefined && env.BAZIL_MOUNT !== '') return resolve(env.BAZIL_MOUNT)
  return join(homedir(), 'bazil')
}

async function openOrInitHome (dir: string): Promise<Home> {
  try {
    return await openHome(dir)
  } catch (err) {
    if (!isBazilError(err, ErrorCode.NOT_INITIALIZED)) throw err
  }
  const home = await initHome(dir)
  print(describeNewHome(home))
  return home
}

function describeNewHome (home: Home): string {
  return `Initialized a Bazil data dir at ${home.dir}\n  volume  ${home.volume.name} (${home.volume.id})\n  peer id ${home.identity.peerId}`
}

function checkMountPlacement (mount: string, homeDir: string): void {
  if (isInside(mount, homeDir) || isInside(homeDir, mount)) {
    throw new BazilError(ErrorCode.INVALID, `the mount point ${mount} and the data dir ${homeDir} must not contain each other; choose another --mount`)
  }
}

function isInside (path: string, dir: string): boolean {
  const rel = relative(dir, path)
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))
}

async function ensureMountDir (mount: string): Promise<void> {
  try {
    await mkdir(mount, { recursive: true })
  } catch (err) {
    // A dead FUSE mount answers ENOTCONN; the daemon clears it before mounting.
    if ((err as NodeJS.ErrnoException).code === 'ENOTCONN') return
    throw fromSystemError(err, `cannot create the mount point ${mount}`)
  }
}

export async function withDaemon<T> (global: GlobalOptions, use: (client: ControlClient) => Promise<T>): Promise<T> {
  const home = await openHome(homeDir(global))
  const client = await connectControl(home.socketPath)
  try { return await use(client) } finally { client.close() }
}

export function print (text: string): void {
  process.stdout.write(text + '\n')
}

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}
