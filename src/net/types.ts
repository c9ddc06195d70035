/**
 * Contracts between the networking pieces (issue 3): the trust store (which peers are paired),
 * the libp2p node wrapper, and the protocol services. Discovery is automatic (mDNS); trust
 * never is: every Bazil protocol except pairing refuses streams from peers not in the store.
 */
import type { Libp2p } from 'libp2p'

export interface PairedPeer {
  /** libp2p peer id string ("12D3KooW..."). */
  peerId: string
  /** Hostname at pairing time; editable. */
  name: string
  /** Multiaddrs last known for the peer. */
  addrs: string[]
  pairedAt: string
}

/** Paired peers, persisted in the data dir (`<home>/peers.json`, 0600, written atomically). */
export interface TrustStore {
  isPaired: (peerId: string) => boolean
  get: (peerId: string) => PairedPeer | undefined
  list: () => PairedPeer[]
  add: (peer: PairedPeer) => Promise<void>
  remove: (peerId: string) => Promise<boolean>
  rename: (peerId: string, name: string) => Promise<void>
}

export interface NetNode {
  libp2p: Libp2p
  peerId: string
  trust: TrustStore
  stop: () => Promise<void>
}
