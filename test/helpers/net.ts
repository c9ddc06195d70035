/**
 * Networking test helpers: an in-memory TrustStore (the persisted one is src/net/trust.ts),
 * fresh Ed25519 identities, and `startNode()`, a libp2p node on 127.0.0.1 at a free port with
 * mDNS off, stopped after the current test (or suite) like tmpDir(). `pair()` makes two nodes
 * trust each other and `connect()` dials one from the other.
 */
import { generateKeyPairSync } from 'node:crypto'
import { afterAll, onTestFinished } from 'vitest'
import { createNetNode, type BazilNetNode, type NetNodeOptions } from '../../src/net/node.ts'
import { Traffic } from '../../src/net/traffic.ts'
import type { PairedPeer, TrustStore } from '../../src/net/types.ts'
import { peerIdFromEd25519 } from '../../src/node/home.ts'
import type { Identity } from '../../src/node/home.ts'

export class MemoryTrustStore implements TrustStore {
  readonly #peers = new Map<string, PairedPeer>()

  isPaired (peerId: string): boolean { return this.#peers.has(peerId) }
  get (peerId: string): PairedPeer | undefined { return this.#peers.get(peerId) }
  list (): PairedPeer[] { return [...this.#peers.values()] }
  async add (peer: PairedPeer): Promise<void> { this.#peers.set(peer.peerId, { ...peer }) }
  async remove (peerId: string): Promise<boolean> { return this.#peers.delete(peerId) }
  async rename (peerId: string, name: string): Promise<void> {
    const peer = this.#peers.get(peerId)
    if (peer !== undefined) peer.name = name
  }
}

export function testIdentity (): Identity {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const raw = new Uint8Array(Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url'))
  return { privateKey, publicKey: raw, peerId: peerIdFromEd25519(raw) }
}

export interface TestNode<S extends Record<string, unknown>> extends BazilNetNode<S> {
  identity: Identity
  trust: MemoryTrustStore
}

export interface StartNodeOptions<S extends Record<string, unknown>> extends Partial<Omit<NetNodeOptions<S>, 'services' | 'trust'>> {
  /** Service factories, given the node's trust store and byte counters. */
  services?: (trust: MemoryTrustStore, traffic: Traffic) => NetNodeOptions<S>['services']
}

/** A node on 127.0.0.1 (free port, no mDNS), stopped when the test (or suite) ends. */
export async function startNode<S extends Record<string, unknown> = Record<string, never>> (options: StartNodeOptions<S> = {}): Promise<TestNode<S>> {
  const identity = testIdentity()
  const trust = new MemoryTrustStore()
  const traffic = new Traffic()
  const node = await createNetNode<S>({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    dialPaired: false,
    ...options,
    privateKey: identity.privateKey,
    trust,
    traffic,
    services: options.services?.(trust, traffic)
  })
  afterward(async () => { await node.stop() })
  return Object.assign(node, { identity, trust })
}

/** Makes `a` and `b` trust each other (both directions unless `oneWay`: then only `a` trusts `b`). */
export async function pair (a: TestNode<Record<string, unknown>>, b: TestNode<Record<string, unknown>>, oneWay = false): Promise<void> {
  const record = (node: TestNode<Record<string, unknown>>): PairedPeer =>
    ({ peerId: node.peerId, name: `node-${node.peerId.slice(-6)}`, addrs: node.addrs(), pairedAt: new Date().toISOString() })
  await a.trust.add(record(b))
  if (!oneWay) await b.trust.add(record(a))
}

/** Connects `from` to `to` on its loopback address; resolves once both ends see the connection. */
export async function connect (from: BazilNetNode<Record<string, unknown>>, to: BazilNetNode<Record<string, unknown>>): Promise<void> {
  const addr = to.addrs().find(a => a.startsWith('/ip4/127.0.0.1/'))
  if (addr === undefined) throw new Error(`node ${to.peerId} has no loopback address`)
  const accepted = new Promise<void>(resolve => {
    const onOpen = (): void => {
      if (!to.libp2p.getConnections().some(conn => conn.remotePeer.toString() === from.peerId)) return
      to.libp2p.removeEventListener('connection:open', onOpen)
      resolve()
    }
    to.libp2p.addEventListener('connection:open', onOpen)
    onOpen()
  })
  await from.dial(addr)
  await accepted
}

function afterward (cleanup: () => Promise<void>): void {
  try {
    onTestFinished(cleanup)
  } catch {
    afterAll(cleanup)
  }
}
