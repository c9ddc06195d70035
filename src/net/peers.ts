/**
 * What `bazil peers` shows about each peer: paired ones (from the trust store), nearby ones
 * (seen by mDNS) and connected ones, merged into one row per peer id. The node keeps the
 * sightings; this module only merges them.
 */
import type { Connection } from '@libp2p/interface'
import type { Traffic } from './traffic.ts'
import type { TrustStore } from './types.ts'

export interface PeerReport {
  peerId: string
  /** The name given at pairing; undefined for unpaired peers. */
  name?: string
  paired: boolean
  connected: boolean
  /** Connection addresses when connected, else the last known ones (mDNS, then pairing). */
  addrs: string[]
  /** ISO time: now when connected, else when last discovered or disconnected; undefined if never seen. */
  lastSeen?: string
  /** Round trip in ms: libp2p's connection monitor (a ping every 10 s) or the last `ping()`. */
  rttMs?: number
  /** Bytes of Bazil protocol traffic (see traffic.ts): sent to and received from the peer. */
  bytesSent: number
  bytesReceived: number
}

export interface Sighting {
  addrs: string[]
  lastSeen: Date
}

export interface PeerSources {
  trust: TrustStore
  traffic: Traffic
  /** Open connections by peer id. */
  connections: Map<string, Connection[]>
  /** Peers seen by discovery or a past connection, by peer id. */
  sightings: Map<string, Sighting>
  /** Round trips from explicit pings, by peer id. */
  pinged: Map<string, number>
  now: Date
}

/** One row per peer, paired peers first, then by peer id. */
export function peerReports (sources: PeerSources): PeerReport[] {
  const { trust, traffic, connections, sightings, pinged, now } = sources
  const ids = new Set<string>([...trust.list().map(peer => peer.peerId), ...connections.keys(), ...sightings.keys()])
  const rows = [...ids].map(peerId => {
    const paired = trust.get(peerId)
    const open = (connections.get(peerId) ?? []).filter(conn => conn.status === 'open')
    const sighting = sightings.get(peerId)
    const rtts = open.flatMap(conn => conn.rtt === undefined ? [] : [conn.rtt])
    const bytes = traffic.get(peerId)
    const report: PeerReport = {
      peerId,
      paired: paired !== undefined,
      connected: open.length > 0,
      addrs: open.length > 0
        ? unique(open.map(conn => conn.remoteAddr.toString()))
        : sighting?.addrs ?? paired?.addrs ?? [],
      bytesSent: bytes.sent,
      bytesReceived: bytes.received
    }
    if (paired !== undefined) report.name = paired.name
    const lastSeen = open.length > 0 ? now : sighting?.lastSeen
    if (lastSeen !== undefined) report.lastSeen = lastSeen.toISOString()
    const rtt = rtts.length > 0 ? Math.min(...rtts) : open.length > 0 ? pinged.get(peerId) : undefined
    if (rtt !== undefined) report.rttMs = rtt
    return report
  })
  return rows.sort((a, b) => Number(b.paired) - Number(a.paired) || (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0))
}

function unique (values: string[]): string[] {
  return [...new Set(values)]
}
