/**
 * The libp2p node of a Bazil daemon: TCP, Noise, yamux, identify, ping and (optionally) mDNS,
 * with the node's own Ed25519 identity as its peer id. It owns the trust guard (every
 * `/bazil/` protocol refuses unpaired peers, see guard.ts), keeps paired peers connected —
 * dialling one whenever mDNS answers for it and, while it is away, every REDIAL_INTERVAL_MS at
 * its known addresses — and keeps what `bazil peers` shows (addresses, last seen, round trip,
 * bytes).
 *
 * Services are passed as libp2p service factories and reached as `node.services.NAME`.
 */
import type { KeyObject } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerId, PeerInfo, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { BazilError, ErrorCode } from '../errors.ts'
import { logger } from '../util/log.ts'
import { netError } from './errors.ts'
import { guardComponents, guardHandler, type GuardPolicy } from './guard.ts'
import { libp2pPrivateKey } from './identity.ts'
import { peerReports, type PeerReport, type Sighting } from './peers.ts'
import { Traffic } from './traffic.ts'
import type { NetNode, TrustStore } from './types.ts'

const log = logger('bazil:net')

/** All interfaces, Bazil's fixed port; a taken port falls back to any free one. */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/4011']
/**
 * yamux's largest per-stream receive window (its default). A paused stream still receives
 * what the sender had in flight, up to one window, so streams may buffer a little more than
 * that while paused instead of libp2p's default 4 MiB (which would reset them).
 */
export const STREAM_WINDOW_BYTES = 16 * 1024 * 1024
export const PAUSED_READ_BUFFER_BYTES = STREAM_WINDOW_BYTES + 1024 * 1024
/**
 * How often paired peers that are not connected are dialled at their known addresses. mDNS
 * answers (every 10 s on a LAN) dial at once; this covers peers mDNS does not reach.
 */
export const REDIAL_INTERVAL_MS = 15_000

// A factory's components are libp2p's internal Components type; services declare the
// smallest interface they need, so the map takes any.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ServiceFactories<S> = { [K in keyof S]: (components: any) => S[K] }

export interface NetNodeOptions<S extends Record<string, unknown>> {
  /** The node's Ed25519 identity (Home.identity.privateKey). */
  privateKey: KeyObject
  /** Listen multiaddrs; default DEFAULT_LISTEN. */
  listen?: string[]
  /** If a listen port is taken, listen on a free one instead. Default: true iff `listen` is omitted. */
  fallbackToAnyPort?: boolean
  trust: TrustStore
  /** LAN discovery. Default true. */
  mdns?: boolean
  services?: ServiceFactories<S>
  /** Bazil protocols unpaired peers may open (the pairing protocol); every other `/bazil/` one is guarded. */
  openProtocols?: string[]
  /** Byte counters shared with the protocol services; one is made if omitted. */
  traffic?: Traffic
  /** Keep paired peers connected (dial on discovery and every REDIAL_INTERVAL_MS). Default true. */
  dialPaired?: boolean
  /** Overrides REDIAL_INTERVAL_MS, for tests. */
  redialIntervalMs?: number
}

export interface BazilNetNode<S extends Record<string, unknown> = Record<string, unknown>> extends NetNode {
  services: S
  traffic: Traffic
  /** The multiaddrs the node listens on, each ending in /p2p/<peer id>. */
  addrs: () => string[]
  /** Registers a handler; `/bazil/` protocols get the trust guard (see guard.ts). */
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  /** Connects to a multiaddr that ends in /p2p/<peer id>; resolves with that peer id. */
  dial: (addr: string, options?: { signal?: AbortSignal }) => Promise<string>
  /** Round trip to a peer in ms (connecting if needed); `peers()` shows the latest. */
  ping: (peerId: string, options?: { signal?: AbortSignal }) => Promise<number>
  /** One row per paired, nearby or connected peer. */
  peers: () => PeerReport[]
}

export async function createNetNode<S extends Record<string, unknown> = Record<string, never>> (options: NetNodeOptions<S>): Promise<BazilNetNode<S>> {
  const privateKey = await libp2pPrivateKey(options.privateKey)
  const policy: GuardPolicy = { trust: options.trust, openProtocols: new Set(options.openProtocols ?? []), log }
  const traffic = options.traffic ?? new Traffic()
  const listen = options.listen ?? DEFAULT_LISTEN
  const fallback = options.fallbackToAnyPort ?? options.listen === undefined

  const sightings = new Map<string, Sighting>()
  /** Round trips measured by `ping()`, used where the connection monitor has none yet. */
  const pinged = new Map<string, number>()
  const dialing = new Set<string>()
  // Assigned below, before the node starts (and so before any discovery event).
  let libp2p: Libp2p<{ ping: Ping } & S>

  /** Dials a paired peer that is not connected (one dial at a time per peer). */
  const keepConnected = (id: PeerId, why: string): void => {
    const key = id.toString()
    if (options.dialPaired === false || !options.trust.isPaired(key) || dialing.has(key) || libp2p.getConnections(id).length > 0) return
    dialing.add(key)
    log('paired peer %s %s: dialling', key, why)
    libp2p.dial(id)
      .then(() => { log('connected to paired peer %s', key) }, (err: unknown) => { log('dialling paired peer %s failed: %s', key, (err as Error).message) })
      .finally(() => { dialing.delete(key) })
  }
  const sighted = (peer: PeerInfo): void => {
    const id = peer.id.toString()
    if (id === libp2p.peerId.toString()) return
    sightings.set(id, { addrs: peer.multiaddrs.map(String), lastSeen: new Date() })
    // Merged first so the dial has these addresses (libp2p merges them too, asynchronously).
    libp2p.peerStore.merge(peer.id, { multiaddrs: peer.multiaddrs })
      .catch(() => {})
      .finally(() => { keepConnected(peer.id, 'seen on the LAN') })
  }
  /** Paired peers at the addresses the trust store and the peer store know. */
  const redialPaired = async (): Promise<void> => {
    for (const peer of options.trust.list()) {
      try {
        const id = peerIdFromString(peer.peerId)
        if (libp2p.getConnections(id).length > 0 || dialing.has(peer.peerId)) continue
        const addrs = peer.addrs.map(addr => multiaddr(addr.replace(/\/p2p\/[^/]+$/, '')))
        if (addrs.length > 0) await libp2p.peerStore.merge(id, { multiaddrs: addrs })
        keepConnected(id, 'is away')
      } catch (err) {
        log('cannot redial %s: %s', peer.peerId, (err as Error).message)
      }
    }
  }

  const build = async (addrs: string[]): Promise<Libp2p<{ ping: Ping } & S>> => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const services: Record<string, (components: any) => unknown> = {
      identify: identify(),
      ping: ping()
    }
    for (const [name, factory] of Object.entries(options.services ?? {}) as Array<[string, (components: object) => unknown]>) {
      services[name] = (components: object) => factory(guardComponents(components, policy))
    }
    const node = await createLibp2p({
      privateKey,
      start: false,
      addresses: { listen: addrs },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({
        streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: PAUSED_READ_BUFFER_BYTES }
      })],
      // libp2p announces a peer only the first time it is discovered; the discovery's own event
      // fires on every mDNS answer, which is what last-seen and reconnecting after a partition need.
      peerDiscovery: options.mdns === false ? [] : [(components: Parameters<ReturnType<typeof mdns>>[0]) => {
        const discovery = mdns()(components)
        discovery.addEventListener('peer', evt => { sighted(evt.detail) })
        return discovery
      }],
      services
    })
    return node as unknown as Libp2p<{ ping: Ping } & S>
  }

  libp2p = await build(listen)
  try {
    await libp2p.start()
  } catch (err) {
    await Promise.resolve(libp2p.stop()).catch(() => {})
    const anyPort = listen.map(addr => addr.replace(/\/tcp\/\d+/, '/tcp/0'))
    if (!fallback || !isListenError(err) || anyPort.every((addr, i) => addr === listen[i])) {
      throw listenError(err, listen)
    }
    log('cannot listen on %s (%s); listening on a free port instead', listen.join(' '), (err as Error).message.split('\n')[0])
    libp2p = await build(anyPort)
    try {
      await libp2p.start()
    } catch (retryErr) {
      await Promise.resolve(libp2p.stop()).catch(() => {})
      throw listenError(retryErr, anyPort)
    }
  }
  const peerId = libp2p.peerId.toString()
  log('started %s listening on %s', peerId, libp2p.getMultiaddrs().map(String).join(' '))

  const onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    const previous = sightings.get(id)
    sightings.set(id, { addrs: previous?.addrs ?? [], lastSeen: new Date() })
  }
  libp2p.addEventListener('peer:disconnect', onDisconnect)
  let redialTimer: NodeJS.Timeout | undefined
  if (options.dialPaired !== false) {
    redialTimer = setInterval(() => { void redialPaired() }, options.redialIntervalMs ?? REDIAL_INTERVAL_MS)
    redialTimer.unref()
    void redialPaired()
  }

  let stopping: Promise<void> | undefined
  return {
    libp2p: libp2p as unknown as Libp2p,
    peerId,
    trust: options.trust,
    services: libp2p.services as unknown as S,
    traffic,
    addrs: () => libp2p.getMultiaddrs().map(String),
    handle: async (protocol, handler, handlerOptions) => {
      await libp2p.handle(protocol, guardHandler(policy, protocol, handler), handlerOptions)
    },
    dial: async (addr, dialOptions) => {
      let target
      try {
        target = multiaddr(addr)
      } catch (err) {
        throw new BazilError(ErrorCode.INVALID, `not a multiaddr: ${addr}`, { cause: err })
      }
      const remote = target.getComponents().findLast(component => component.name === 'p2p')?.value
      if (remote === undefined) throw new BazilError(ErrorCode.INVALID, `${addr} does not end in /p2p/<peer id>`)
      try {
        const connection = await libp2p.dial(target, { signal: dialOptions?.signal })
        return connection.remotePeer.toString()
      } catch (err) {
        throw netError(err, `dial ${addr}`, { signal: dialOptions?.signal })
      }
    },
    ping: async (remote, pingOptions) => {
      try {
        const rtt = await libp2p.services.ping.ping(peerIdFromString(remote), { signal: pingOptions?.signal })
        pinged.set(remote, rtt)
        return rtt
      } catch (err) {
        throw netError(err, `ping ${remote}`, { signal: pingOptions?.signal })
      }
    },
    peers: () => {
      const connections = new Map<string, ReturnType<typeof libp2p.getConnections>>()
      for (const connection of libp2p.getConnections()) {
        const id = connection.remotePeer.toString()
        connections.set(id, [...(connections.get(id) ?? []), connection])
      }
      return peerReports({ trust: options.trust, traffic, connections, sightings, pinged, now: new Date() })
    },
    stop: async () => {
      stopping ??= (async () => {
        clearInterval(redialTimer)
        libp2p.removeEventListener('peer:disconnect', onDisconnect)
        await libp2p.stop()
        log('stopped %s', peerId)
      })()
      await stopping
    }
  }
}

function isListenError (err: unknown): boolean {
  const error = err as Error & { code?: string }
  return error?.name === 'UnsupportedListenAddressesError' || error?.code === 'EADDRINUSE' ||
    /EADDRINUSE|address already in use/i.test(String(error?.message))
}

function listenError (err: unknown, addrs: string[]): BazilError {
  if (err instanceof BazilError) return err
  const busy = /EADDRINUSE|address already in use/i.test(String((err as Error)?.message))
  return new BazilError(busy ? ErrorCode.BUSY : ErrorCode.UNAVAILABLE,
    `cannot listen on ${addrs.join(' ')}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}
