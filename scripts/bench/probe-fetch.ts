/**
 * A probe, not a run: the latency of one-block requests over /bazil/block/1.0.0 to a peer
 * process (block-peer.ts), as a lazy read on a synced peer makes them (one chunk, then the
 * next), next to a libp2p ping (a new stream each) over the same connection and one request
 * for all the blocks. `node --import tsx scripts/bench/probe-fetch.ts [KiB] [count]`
 */
import '../../src/util/polyfills.ts'
import { generateKeyPairSync, randomFillSync } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { blockExchange, type BlockExchange } from '../../protocols/block-exchange/index.ts'
import { LocalStore } from '../../src/kv/local.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { createNetNode } from '../../src/net/node.ts'
import type { TrustStore } from '../../src/net/types.ts'
import { startPeerProcess, singlePeerTrust } from './peer-process.ts'

const kib = Number(process.argv[2] ?? '256')
const count = Number(process.argv[3] ?? '200')
const dir = await mkdtemp('/var/tmp/bazil-probe-')
const store = await LocalStore.open(join(dir, 's'), { fsync: false })
const ids: Uint8Array[] = []
for (let i = 0; i < count; i++) { const id = randomFillSync(Buffer.alloc(32)); await store.put(id, randomFillSync(Buffer.alloc(kib * 1024))); ids.push(id) }
await store.close()
let trusted: TrustStore = singlePeerTrust('')
const trust: TrustStore = { isPaired: id => trusted.isPaired(id), get: id => trusted.get(id), list: () => trusted.list(), add: async () => {}, remove: async () => false, rename: async () => {} }
const node = await createNetNode<{ blocks: BlockExchange }>({ privateKey: generateKeyPairSync('ed25519').privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, trust, services: { blocks: blockExchange({ store: new MemoryStore(), trust }) } })
const peer = await startPeerProcess(join(dir, 's'), node.peerId)
try {
  trusted = singlePeerTrust(peer.peerId)
  await node.dial(peer.addr)
  const { peerIdFromString } = await import('@libp2p/peer-id')
  const pings: number[] = []
  const ping = (node.libp2p.services as unknown as { ping: { ping: (p: unknown) => Promise<number> } }).ping
  const echoes: number[] = []
  for (let i = 0; i < 50; i++) {
    const s = performance.now()
    echoes.push(await ping.ping(peerIdFromString(peer.peerId)))
    pings.push(performance.now() - s)
  }
  pings.sort((a, b) => a - b)
  echoes.sort((a, b) => a - b)
  process.stdout.write(`libp2p ping (a new stream each): p50 ${pings[25]?.toFixed(2)} ms, p90 ${pings[45]?.toFixed(2)} ms; the echo alone (as ping reports it): p50 ${echoes[25]?.toFixed(2)} ms` + '\n')
  const times: number[] = []
  for (const id of ids) {
    const s = performance.now()
    for await (const { value } of node.services.blocks.fetch(peer.peerId, [id])) if (value === null) throw new Error('missing')
    times.push(performance.now() - s)
  }
  const sorted = [...times].sort((a, b) => a - b)
  const q = (p: number): string => (sorted[Math.floor(p * (sorted.length - 1))] ?? 0).toFixed(2)
  process.stdout.write(`${count} one-block fetches of ${kib} KiB: total ${(times.reduce((a, b) => a + b, 0) / 1000).toFixed(2)} s; p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)} ms` + '\n')
  const s = performance.now()
  let n = 0
  for await (const { value } of node.services.blocks.fetch(peer.peerId, ids)) n += value?.byteLength ?? 0
  process.stdout.write(`one request of all ${count}: ${(performance.now() - s).toFixed(0)} ms (${(n / 1048576 / (performance.now() - s) * 1000).toFixed(0)} MiB/s)` + '\n')
} finally {
  await peer.stop(); await node.stop(); await rm(dir, { recursive: true, force: true })
}
