/**
 * Starts block-peer.ts in a process of its own (`node --import tsx`) and waits for the line
 * that says where it listens. The child stops when its stdin closes, so it cannot outlive
 * the parent; `stop()` asks it to (SIGTERM, then SIGKILL after a grace period), `kill()`
 * kills it at once, as a crash would.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { PairedPeer, TrustStore } from '../../src/net/types.ts'

const SCRIPT = fileURLToPath(new URL('./block-peer.ts', import.meta.url))
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** A hang guard for start-up, not a speed limit. */
const START_GUARD_MS = 60_000
const STOP_GRACE_MS = 5_000

export interface PeerProcess {
  peerId: string
  /** Its 127.0.0.1 listen address, ending in /p2p/<peer id>. */
  addr: string
  pid: number
  /** SIGKILL now; resolves when it is gone. */
  kill: () => Promise<void>
  /** SIGTERM, SIGKILL after a grace period; resolves when it is gone. */
  stop: () => Promise<void>
}

export async function startPeerProcess (storeDir: string, trustedPeerId: string): Promise<PeerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, storeDir, trustedPeerId], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe']
  })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (text: string) => { stderr = (stderr + text).slice(-4000) })
  const exited = once(child, 'exit').then(() => {})
  try {
    const line = await firstLine(child, exited, () => stderr)
    const { peerId, addrs } = JSON.parse(line) as { peerId: string, addrs: string[] }
    const addr = addrs.find(a => a.startsWith('/ip4/127.0.0.1/'))
    if (addr === undefined) throw new Error(`peer process listens on no loopback address: ${addrs.join(' ')}`)
    return {
      peerId,
      addr,
      pid: child.pid ?? -1,
      kill: async () => { await end(child, exited, 'SIGKILL') },
      stop: async () => { await end(child, exited, 'SIGTERM') }
    }
  } catch (err) {
    await end(child, exited, 'SIGKILL')
    throw err
  }
}

async function firstLine (child: ChildProcess, exited: Promise<void>, stderr: () => string): Promise<string> {
  let buffered = ''
  let timer: NodeJS.Timeout | undefined
  try {
    return await new Promise<string>((resolve, reject) => {
      child.stdout?.setEncoding('utf8').on('data', (text: string) => {
        buffered += text
        const newline = buffered.indexOf('\n')
        if (newline !== -1) resolve(buffered.slice(0, newline))
      })
      void exited.then(() => { reject(new Error(`peer process exited before listening: ${stderr().trim()}`)) })
      timer = setTimeout(() => { reject(new Error(`peer process did not start within ${START_GUARD_MS} ms: ${stderr().trim()}`)) }, START_GUARD_MS)
    })
  } finally {
    clearTimeout(timer)
  }
}

async function end (child: ChildProcess, exited: Promise<void>, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill(signal)
  if (signal === 'SIGKILL') { await exited; return }
  const grace = setTimeout(() => { child.kill('SIGKILL') }, STOP_GRACE_MS)
  try {
    await exited
  } finally {
    clearTimeout(grace)
  }
}

/** A trust store holding exactly one peer, for the bench's two nodes. */
export function singlePeerTrust (peerId: string): TrustStore {
  const peer: PairedPeer = { peerId, name: 'bench', addrs: [], pairedAt: new Date().toISOString() }
  return {
    isPaired: id => id === peerId,
    get: id => id === peerId ? peer : undefined,
    list: () => [peer],
    add: async () => {},
    remove: async () => false,
    rename: async () => {}
  }
}
