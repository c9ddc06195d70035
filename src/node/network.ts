/**
 * The node's place on the network (issue 3): a libp2p node with the data dir's identity, the
 * trust store of paired devices, block exchange serving the local store to paired peers, and
 * pairing by invite code. Paired peers become read-only stores in the fan-out. Also `join`,
 * which a new device runs (without a daemon) to become one of the owner's devices.
 */
import { hostname } from 'node:os'
import { peerIdFromString } from '@libp2p/peer-id'
import { createNetNode } from '../net/node.ts'
import type { BazilNetNode } from '../net/node.ts'
import { openTrustStore } from '../net/trust.ts'
import { InviteBook, DEFAULT_INVITE_TTL_MS } from '../net/invite.ts'
import { Traffic } from '../net/traffic.ts'
import type { PeerReport } from '../net/peers.ts'
import { blockExchange } from '../../protocols/block-exchange/index.ts'
import type { BlockExchange } from '../../protocols/block-exchange/index.ts'
import { pairing, join, PAIRING_PROTOCOL } from '../../protocols/pairing/index.ts'
import type { PairingService } from '../../protocols/pairing/index.ts'
import { changeLog } from '../../protocols/changes/index.ts'
import type { ChangeLog, ChangeSource } from '../../protocols/changes/index.ts'
import { PeerStore } from '../kv/peer.ts'
import type { KV, KVHas } from '../kv/kv.ts'
import type { Home } from './home.ts'
import { logger } from '../util/log.ts'

const log = logger('bazil:network')
/** Addresses remembered per paired peer (the trust store's own bound is higher). */
const MAX_REMEMBERED_ADDRS = 8

export interface NetworkOptions {
  /** Listen multiaddrs (default: all interfaces, port 4011, falling back to any free port). */
  listen?: string[]
  /** LAN discovery (mDNS). Default true. */
  mdns?: boolean
}

/** The change log this node serves, and where heard heads and served pulls are reported. */
export interface ChangeLogHooks {
  source: ChangeSource
  onHead: (peerId: string, head: number) => void
  onServed: (peerId: string, upTo: number) => void
}

export interface Network {
  peerId: string
  addrs: () => string[]
  peers: () => PeerReport[]
  invite: (ttlMs?: number) => { code: string, expiresAt: number }
  removePeer: (peerId: string) => Promise<boolean>
  renamePeer: (peerId: string, name: string) => Promise<void>
  /** Read-only stores over block exchange, one per paired peer. */
  peerStores: () => Array<{ name: string, kv: KV & KVHas }>
  onPeersChanged: (listener: () => void) => void
  /** /bazil/changes/1.0.0, when the node was started with change-log hooks. */
  changes: ChangeLog
  /** Paired peers with an open connection now. */
  connectedPaired: () => string[]
  pairedPeers: () => string[]
  /** Called with a paired peer's id whenever a connection to it opens. */
  onPairedConnect: (listener: (peerId: string) => void) => void
  stop: () => Promise<void>
}

interface Services extends Record<string, unknown> {
  blocks: BlockExchange
  pairing: PairingService
  changes: ChangeLog
}

export async function startNetwork (home: Home, local: KV & KVHas, options: NetworkOptions, hooks: ChangeLogHooks): Promise<Network> {
  const trust = await openTrustStore(home.dir)
  const invites = new InviteBook()
  const traffic = new Traffic()
  const listeners: Array<() => void> = []
  const changed = (): void => { for (const l of listeners) l() }
  const node: BazilNetNode<Services> = await createNetNode<Services>({
    privateKey: home.identity.privateKey,
    ...(options.listen !== undefined ? { listen: options.listen } : {}),
    mdns: options.mdns ?? true,
    trust,
    traffic,
    openProtocols: [PAIRING_PROTOCOL],
    services: {
      blocks: blockExchange({ store: local, trust, traffic }),
      changes: changeLog({ source: hooks.source, trust, traffic, onHead: hooks.onHead, onServed: hooks.onServed }),
      pairing: pairing({
        invites,
        trust,
        ownerSecret: home.ownerSecret,
        volume: home.volume,
        hostname: hostname(),
        onPaired: peer => { log('paired with %s (%s)', peer.name, peer.peerId); changed() },
        onFailed: (peerId, err) => { log('a pairing attempt from %s failed: %s', peerId, err.message) }
      })
    }
  })
  // A paired peer's current listen addresses (identify) replace the ones remembered, so this
  // node can dial it after either side restarts on another port or address.
  node.libp2p.addEventListener('peer:identify', evt => {
    const id = evt.detail.peerId.toString()
    const known = trust.get(id)
    if (known === undefined) return
    const addrs = evt.detail.listenAddrs.map(String).filter(a => !a.includes('/p2p-circuit')).slice(0, MAX_REMEMBERED_ADDRS)
    if (addrs.length === 0 || addrs.join(' ') === known.addrs.join(' ')) return
    trust.add({ ...known, addrs }).catch((err: unknown) => { log('remembering the addresses of %s: %s', id, (err as Error).message) })
  })
  const connectListeners: Array<(peerId: string) => void> = []
  node.libp2p.addEventListener('peer:connect', evt => {
    const id = evt.detail.toString()
    if (!trust.isPaired(id)) return
    for (const listener of connectListeners) listener(id)
  })
  return {
    peerId: node.peerId,
    changes: node.services.changes,
    connectedPaired: () => [...new Set(node.libp2p.getConnections().map(c => c.remotePeer.toString()))].filter(id => trust.isPaired(id)),
    pairedPeers: () => trust.list().map(p => p.peerId),
    onPairedConnect: listener => { connectListeners.push(listener) },
    addrs: () => node.addrs(),
    peers: () => node.peers(),
    invite: (ttlMs = DEFAULT_INVITE_TTL_MS) => {
      // Addresses another machine can use first; loopback last.
      const addrs = [...node.addrs()].map(a => a.replace(/\/p2p\/[^/]+$/, ''))
        .sort((a, b) => Number(a.includes('/127.0.0.1/') || a.includes('/::1/')) - Number(b.includes('/127.0.0.1/') || b.includes('/::1/')))
      const invite = invites.issue({ peerId: node.peerId, addrs, ttlMs })
      return { code: invite.code, expiresAt: invite.expiresAt }
    },
    removePeer: async peerId => {
      const removed = await trust.remove(peerId)
      if (removed) {
        // The guard checks when a stream opens: close what is open now.
        await node.libp2p.hangUp(peerIdFromString(peerId)).catch(() => {})
        changed()
      }
      return removed
    },
    renamePeer: async (peerId, name) => {
      await trust.rename(peerId, name)
      changed()
    },
    peerStores: () => trust.list().map(peer => ({
      name: `peer:${peer.name}`,
      kv: new PeerStore(node.services.blocks, peer.peerId)
    })),
    onPeersChanged: listener => { listeners.push(listener) },
    stop: async () => { await node.stop() }
  }
}

/**
 * Joins this (fresh) data dir to an owner's devices with an invite code from one of them:
 * a short-lived node dials the inviter, both prove the code, and the owner secret and volume
 * record come back sealed. The caller persists them (home.adoptOwner).
 */
export async function joinWithCode (home: Home, code: string, options: { signal?: AbortSignal } = {}): Promise<{ ownerSecret: Uint8Array, volume: { name: string, id: string }, peerName: string }> {
  const trust = await openTrustStore(home.dir)
  const node = await createNetNode({
    privateKey: home.identity.privateKey,
    listen: ['/ip4/0.0.0.0/tcp/0'],
    mdns: false,
    trust,
    dialPaired: false
  })
  try {
    const result = await join(node.libp2p, code, { trust, hostname: hostname(), signal: options.signal })
    return { ownerSecret: result.ownerSecret, volume: result.volume, peerName: result.peer.name }
  } finally {
    await node.stop()
  }
}
