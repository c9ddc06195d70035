/**
 * Bytes exchanged with each peer over Bazil's own protocols, for `bazil peers`. libp2p 3 has
 * no byte counters unless a full Metrics implementation is plugged in (its `metrics` option;
 * @libp2p/simple-metrics or prometheus), so our protocols count what they frame instead:
 * payload and framing of /bazil/ streams, not Noise/yamux overhead, identify or ping.
 */

export interface PeerTraffic {
  sent: number
  received: number
}

export class Traffic {
  readonly #peers = new Map<string, PeerTraffic>()

  sent (peerId: string, bytes: number): void {
    this.#entry(peerId).sent += bytes
  }

  received (peerId: string, bytes: number): void {
    this.#entry(peerId).received += bytes
  }

  get (peerId: string): PeerTraffic {
    const entry = this.#peers.get(peerId)
    return entry === undefined ? { sent: 0, received: 0 } : { ...entry }
  }

  #entry (peerId: string): PeerTraffic {
    let entry = this.#peers.get(peerId)
    if (entry === undefined) {
      entry = { sent: 0, received: 0 }
      this.#peers.set(peerId, entry)
    }
    return entry
  }
}
