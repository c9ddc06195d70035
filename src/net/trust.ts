/**
 * The trust store: which peers are paired with this node, kept in `<home>/peers.json` (mode
 * 0600, replaced atomically: temp file, fsync, rename, fsync of the dir). Being listed here is
 * what lets a peer use any Bazil protocol besides pairing, so the file is refused if other
 * users could write it, and every change is written before memory reflects it: a failed write
 * leaves both the file and the store as they were. Changes are serialized; reads are sync.
 */
import { readFile, stat } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { writeFileAtomic } from '../util/atomic-file.ts'
import { BazilError, ErrorCode, fromSystemError } from '../errors.ts'
import type { PairedPeer, TrustStore } from './types.ts'

export const PEERS_FILE = 'peers.json'
const FORMAT_VERSION = 1
/** Peer names are shown in tables and sent at pairing time; both sides hold them to this. */
export const MAX_PEER_NAME_LENGTH = 255
const MAX_ADDRS = 16

interface PeersFile {
  version: number
  peers: PairedPeer[]
}

/** Opens (or starts empty, if there is no file yet) the trust store of the data dir `homeDir`. */
export async function openTrustStore (homeDir: string): Promise<TrustStore> {
  const path = join(homeDir, PEERS_FILE)
  let peers = parsePeersFile(await readPeersFile(path), path)
  let queue: Promise<unknown> = Promise.resolve()

  /**
   * Runs `change` on a copy, after every earlier change; writes the copy (unless `change` says
   * nothing changed) and only then makes it current.
   */
  async function update<T> (change: (next: Map<string, PairedPeer>) => { result: T, changed: boolean }): Promise<T> {
    const run = queue.then(async () => {
      const next = new Map(peers)
      const { result, changed } = change(next)
      if (!changed) return result
      await writePeersFile(path, next)
      peers = next
      return result
    })
    queue = run.catch(() => {})
    return await run
  }

  return {
    isPaired: peerId => peers.has(peerId),
    get: peerId => copy(peers.get(peerId)),
    list: () => [...peers.values()].map(peer => ({ ...peer, addrs: [...peer.addrs] })),
    add: async peer => {
      const valid = validatePeer(peer, 'cannot add the peer')
      await update(next => ({ result: next.set(valid.peerId, valid), changed: true }))
    },
    remove: async peerId => {
      return await update(next => {
        const removed = next.delete(peerId)
        return { result: removed, changed: removed }
      })
    },
    rename: async (peerId, name) => {
      const checked = checkName(name, 'cannot rename the peer')
      await update(next => {
        const peer = next.get(peerId)
        if (peer === undefined) throw new BazilError(ErrorCode.NOT_FOUND, `no paired peer ${peerId}`)
        next.set(peerId, { ...peer, name: checked })
        return { result: undefined, changed: true }
      })
    }
  }
}

function copy (peer: PairedPeer | undefined): PairedPeer | undefined {
  return peer === undefined ? undefined : { ...peer, addrs: [...peer.addrs] }
}

function validatePeer (value: unknown, what: string): PairedPeer {
  const peer = value as Partial<PairedPeer> | null
  if (typeof peer !== 'object' || peer === null) throw new BazilError(ErrorCode.INVALID, `${what}: not a peer record`)
  const peerId = checkPeerId(peer.peerId, what)
  const name = checkName(peer.name, what)
  if (!Array.isArray(peer.addrs) || peer.addrs.length > MAX_ADDRS || !peer.addrs.every(a => typeof a === 'string' && a !== '')) {
    throw new BazilError(ErrorCode.INVALID, `${what}: addrs must be a list of at most ${MAX_ADDRS} multiaddr strings`)
  }
  if (typeof peer.pairedAt !== 'string' || Number.isNaN(Date.parse(peer.pairedAt))) {
    throw new BazilError(ErrorCode.INVALID, `${what}: pairedAt must be an ISO date`)
  }
  return { peerId, name, addrs: [...peer.addrs], pairedAt: peer.pairedAt }
}

function checkPeerId (peerId: unknown, what: string): string {
  if (typeof peerId !== 'string') throw new BazilError(ErrorCode.INVALID, `${what}: the peer id is missing`)
  try {
    // Canonical form only, so one peer cannot appear under two spellings.
    if (peerIdFromString(peerId).toString() === peerId) return peerId
  } catch {}
  throw new BazilError(ErrorCode.INVALID, `${what}: ${JSON.stringify(peerId.slice(0, 80))} is not a peer id`)
}

function checkName (name: unknown, what: string): string {
  if (typeof name !== 'string' || name.trim() === '' || name.length > MAX_PEER_NAME_LENGTH ||
      // eslint-disable-next-line no-control-regex
      /[\u0000-\u001f\u007f]/.test(name)) {
    throw new BazilError(ErrorCode.INVALID,
      `${what}: a name must be 1–${MAX_PEER_NAME_LENGTH} printable characters`)
  }
  return name
}

function parsePeersFile (text: string | undefined, path: string): Map<string, PairedPeer> {
  const peers = new Map<string, PairedPeer>()
  if (text === undefined) return peers
  let value: unknown
  try { value = JSON.parse(text) } catch (err) {
    throw new BazilError(ErrorCode.INVALID, `${path} is broken: not valid JSON`, { cause: err })
  }
  const file = value as Partial<PeersFile> | null
  if (typeof file !== 'object' || file === null || file.version !== FORMAT_VERSION || !Array.isArray(file.peers)) {
    throw new BazilError(ErrorCode.INVALID, `${path} is broken: expected { "version": ${FORMAT_VERSION}, "peers": [...] }`)
  }
  for (const entry of file.peers) {
    const peer = validatePeer(entry, `${path} is broken`)
    peers.set(peer.peerId, peer)
  }
  return peers
}

async function readPeersFile (path: string): Promise<string | undefined> {
  let st: Stats
  try { st = await stat(path) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fromSystemError(err, `cannot read ${path}`)
  }
  if (!st.isFile()) throw new BazilError(ErrorCode.INVALID, `${path} is not a regular file: the data dir is damaged`)
  if ((st.mode & 0o077) !== 0) {
    // Whoever can write this file can make a stranger a paired device.
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
    throw new BazilError(ErrorCode.INVALID, `${path} is open to other users (mode ${mode}); make it private with: chmod 600 ${path}`)
  }
  try { return await readFile(path, 'utf8') } catch (err) { throw fromSystemError(err, `cannot read ${path}`) }
}

async function writePeersFile (path: string, peers: Map<string, PairedPeer>): Promise<void> {
  const file: PeersFile = { version: FORMAT_VERSION, peers: [...peers.values()] }
  try {
    await writeFileAtomic(path, JSON.stringify(file, null, 2) + '\n', 0o600)
  } catch (err) {
    throw fromSystemError(err, `cannot write ${path}`)
  }
}
