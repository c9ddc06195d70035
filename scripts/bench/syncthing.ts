/**
 * Two Syncthing instances (the Debian package, 1.19) paired over loopback, for the sync run's
 * side-by-side numbers: configs made by `syncthing generate`, then edited before the first start
 * so nothing leaves the machine (GUI/API and listen addresses on free 127.0.0.1 ports; global
 * and local discovery, relays, NAT, usage and crash reporting, auto-upgrade all off; no
 * self-renicing). Each device is added to the other and one shared folder created through the
 * REST API, with the file-system watcher off: the bench asks for a scan right after each write
 * (`POST /rest/db/scan`), which is Syncthing's fastest path, not its 10 s watcher delay.
 * Processes and homes are registered with the run's cleanup.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { Cleanup } from './cleanup.ts'
import { run } from './proc.ts'

export const FOLDER_ID = 'bench'
const START_GUARD_MS = 60_000
const STOP_GRACE_MS = 5_000

export interface SyncthingNode {
  name: string
  deviceId: string
  /** The shared folder's directory. */
  folder: string
  /** GET or POST on the REST API; resolves with the parsed JSON (or undefined for an empty body). */
  rest: (method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, body?: unknown) => Promise<unknown>
}

export interface SyncthingPair { a: SyncthingNode, b: SyncthingNode, version: string }

export interface FolderStatus { localFiles: number, localBytes: number, needTotalItems: number, globalFiles: number, state: string }

/** A free TCP port on 127.0.0.1 (closed again; the race with other users is accepted). */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export async function startSyncthingPair (dir: string, cleanup: Cleanup): Promise<SyncthingPair> {
  const version = (await run('syncthing', ['--version'])).stdout.trim().split(' ').slice(0, 2).join(' ')
  const a = await startNode('A', join(dir, 'a'), cleanup)
  const b = await startNode('B', join(dir, 'b'), cleanup)
  for (const [self, other] of [[a, b], [b, a]] as const) {
    await self.node.rest('POST', '/rest/config/devices', { deviceID: other.node.deviceId, name: other.node.name, addresses: [`tcp://127.0.0.1:${other.listenPort}`] })
    await self.node.rest('POST', '/rest/config/folders', {
      id: FOLDER_ID,
      label: FOLDER_ID,
      path: self.node.folder,
      type: 'sendreceive',
      devices: [{ deviceID: a.node.deviceId }, { deviceID: b.node.deviceId }],
      fsWatcherEnabled: false,
      rescanIntervalS: 3600
    })
  }
  await waitUntil('the Syncthing instances to connect', 60_000, async () => {
    const connections = await a.node.rest('GET', '/rest/system/connections') as { connections: Record<string, { connected: boolean }> }
    return connections.connections[b.node.deviceId]?.connected === true
  })
  for (const node of [a.node, b.node]) {
    await waitUntil(`Syncthing ${node.name}'s folder to be idle`, 60_000, async () => (await folderStatus(node)).state === 'idle')
  }
  return { a: a.node, b: b.node, version }
}

export async function folderStatus (node: SyncthingNode): Promise<FolderStatus> {
  return await node.rest('GET', `/rest/db/status?folder=${FOLDER_ID}`) as FolderStatus
}

/** Asks `node` to scan the shared folder (or one path in it) now; resolves when the scan is done. */
export async function scan (node: SyncthingNode, sub?: string): Promise<void> {
  await node.rest('POST', `/rest/db/scan?folder=${FOLDER_ID}${sub !== undefined ? `&sub=${encodeURIComponent(sub)}` : ''}`)
}

async function startNode (name: string, home: string, cleanup: Cleanup): Promise<{ node: SyncthingNode, listenPort: number }> {
  const folder = join(home, 'folder')
  await mkdir(folder, { recursive: true })
  await run('syncthing', ['generate', '--home', home, '--no-default-folder'])
  const guiPort = await freePort()
  const listenPort = await freePort()
  const configFile = join(home, 'config.xml')
  let config = await readFile(configFile, 'utf8')
  const set = (tag: string, value: string): void => {
    const pattern = new RegExp(`<${tag}>[^<]*</${tag}>`)
    if (!pattern.test(config)) throw new Error(`Syncthing config has no <${tag}>`)
    config = config.replace(pattern, `<${tag}>${value}</${tag}>`)
  }
  config = config.replace(/(<gui [^>]*>\s*<address>)[^<]*(<\/address>)/, `$1127.0.0.1:${guiPort}$2`)
  set('listenAddress', `tcp://127.0.0.1:${listenPort}`)
  set('globalAnnounceEnabled', 'false')
  set('localAnnounceEnabled', 'false')
  set('relaysEnabled', 'false')
  set('natEnabled', 'false')
  set('urAccepted', '-1')
  set('startBrowser', 'false')
  set('autoUpgradeIntervalH', '0')
  set('crashReportingEnabled', 'false')
  set('setLowPriority', 'false')
  await writeFile(configFile, config)
  const apiKey = /<apikey>([^<]+)<\/apikey>/.exec(config)?.[1]
  if (apiKey === undefined) throw new Error('Syncthing config has no API key')

  const child = spawn('syncthing', ['serve', '--home', home, '--no-browser', '--no-restart', '--no-upgrade', '--logfile', join(home, 'syncthing.log')], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, STNODEFAULTFOLDER: '1', STNOUPGRADE: '1' }
  })
  cleanup.defer(`stop Syncthing ${name}`, async () => { await stop(child) })
  const base = `http://127.0.0.1:${guiPort}`
  const rest = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const response = await fetch(base + path, {
      method,
      headers: { 'X-API-Key': apiKey, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {})
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`Syncthing ${name} ${method} ${path}: ${response.status} ${text.trim()}`)
    return text === '' ? undefined : JSON.parse(text) as unknown
  }
  let deviceId = ''
  await waitUntil(`Syncthing ${name} to answer`, START_GUARD_MS, async () => {
    if (child.exitCode !== null) throw new Error(`Syncthing ${name} exited with ${child.exitCode}`)
    try {
      deviceId = (await rest('GET', '/rest/system/status') as { myID: string }).myID
      return true
    } catch {
      return false
    }
  })
  return { node: { name, deviceId, folder, rest }, listenPort }
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const grace = setTimeout(() => { child.kill('SIGKILL') }, STOP_GRACE_MS)
  try {
    await exited
  } finally {
    clearTimeout(grace)
  }
}

/** Polls `check` every 50 ms until it returns true; rejects after `ms`. */
export async function waitUntil (what: string, ms: number, check: () => Promise<boolean>, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
}
