/**
 * The block-exchange run (issue #3): 1 GiB of sealed-size chunks (1,024 × 1 MiB + 17 bytes,
 * random) in a LocalStore served by a peer in another process (block-peer.ts) on loopback,
 * fetched by this process over /bazil/block/1.0.0 — next to a plain libp2p stream carrying
 * the same blocks from the same store (raw-transfer.ts), measured in the same run, alternating,
 * five rounds each; the median counts. Target: block exchange ≥ 0.8× the plain stream.
 * `--quick` uses 256 chunks.
 */
import '../../src/util/polyfills.ts'
import { generateKeyPairSync, randomFillSync } from 'node:crypto'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { blockExchange, type BlockExchange } from '../../protocols/block-exchange/index.ts'
import { LocalStore } from '../../src/kv/local.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import { createNetNode, type BazilNetNode } from '../../src/net/node.ts'
import type { TrustStore } from '../../src/net/types.ts'
import type { BenchContext, BenchRun, RunOutcome } from './context.ts'
import { describeMachine } from './machine.ts'
import { startPeerProcess, singlePeerTrust, type PeerProcess } from './peer-process.ts'
import { secondsSince } from './proc.ts'
import { RAW_PROTOCOL, fetchRaw } from './raw-transfer.ts'
import { table, type Section } from './report.ts'

const MiB = 1024 * 1024
/** A sealed chunk of the chunker's largest size: 1 MiB of plaintext plus version byte and tag. */
const CHUNK_BYTES = MiB + 17
const FULL_CHUNKS = 1024
const QUICK_CHUNKS = 256
const ROUNDS = 5
const TARGET_RATIO = 0.8

interface Measured { name: string, seconds: number[] }

export const blockExchangeRun: BenchRun = {
  id: 'block-exchange',
  describe: '1 GiB of chunks fetched from a peer process, next to a plain libp2p stream',
  run: async (context: BenchContext): Promise<RunOutcome> => {
    const chunks = context.quick ? QUICK_CHUNKS : FULL_CHUNKS
    const bytes = chunks * CHUNK_BYTES
    const { log } = context
    const errors: string[] = []
    const results: Measured[] = [{ name: 'plain libp2p stream', seconds: [] }, { name: 'block exchange', seconds: [] }]
    try {
      log(`block-exchange: writing ${chunks} chunks of ${CHUNK_BYTES} bytes to a local store`)
      const { dir, ids } = await seedStore(join(context.workDir, 'block-store'), chunks)
      const client = await startClient(context)
      log('block-exchange: starting the serving peer process')
      const peer = await startPeerProcess(dir, client.node.peerId)
      context.cleanup.defer('stop the block peer process', async () => { await peer.stop() })
      client.trustPeer(peer.peerId)
      await client.node.dial(peer.addr)

      await fetchBlocks(client.blocks, peer, ids.slice(0, 8)) // warm up both paths
      await rawTransfer(client.node, peer, ids.slice(0, 8))
      const transfers = [ // in the order of `results`
        async () => await rawTransfer(client.node, peer, ids),
        async () => await fetchBlocks(client.blocks, peer, ids)
      ]
      for (let round = 1; round <= ROUNDS; round++) {
        for (const [index, transfer] of transfers.entries()) {
          const start = process.hrtime.bigint()
          const got = await transfer()
          const seconds = secondsSince(start)
          if (got !== bytes) throw new Error(`${results[index]?.name} carried ${got} bytes, not ${bytes}`)
          results[index]?.seconds.push(seconds)
          log(`block-exchange: round ${round}: ${results[index]?.name} ${mibps(bytes, seconds).toFixed(0)} MiB/s`)
        }
      }
    } catch (error) {
      errors.push((error as Error).message)
      log(`block-exchange failed: ${(error as Error).message}`)
    }
    return { section: section(context, chunks, bytes, results, errors), errors }
  }
}

async function seedStore (dir: string, chunks: number): Promise<{ dir: string, ids: Uint8Array[] }> {
  const store = await LocalStore.open(dir, { fsync: false })
  const ids: Uint8Array[] = []
  const block = Buffer.allocUnsafe(CHUNK_BYTES)
  try {
    for (let i = 0; i < chunks; i++) {
      const id = randomFillSync(Buffer.alloc(32))
      await store.put(id, randomFillSync(block))
      ids.push(id)
    }
  } finally {
    await store.close()
  }
  return { dir, ids }
}

interface Client { node: BazilNetNode<{ blocks: BlockExchange }>, blocks: BlockExchange, trustPeer: (peerId: string) => void }

async function startClient (context: BenchContext): Promise<Client> {
  let trusted: TrustStore = singlePeerTrust('')
  const trust: TrustStore = {
    isPaired: id => trusted.isPaired(id),
    get: id => trusted.get(id),
    list: () => trusted.list(),
    add: async () => {},
    remove: async () => false,
    rename: async () => {}
  }
  const node = await createNetNode<{ blocks: BlockExchange }>({
    privateKey: generateKeyPairSync('ed25519').privateKey,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    trust,
    services: { blocks: blockExchange({ store: new MemoryStore(), trust }) }
  })
  context.cleanup.defer('stop the bench libp2p node', async () => { await node.stop() })
  return { node, blocks: node.services.blocks, trustPeer: peerId => { trusted = singlePeerTrust(peerId) } }
}

async function fetchBlocks (blocks: BlockExchange, peer: PeerProcess, ids: Uint8Array[]): Promise<number> {
  let bytes = 0
  for await (const { value } of blocks.fetch(peer.peerId, ids)) {
    if (value === null) throw new Error('the peer lacks a block it was given')
    bytes += value.byteLength
  }
  return bytes
}

async function rawTransfer (node: BazilNetNode<{ blocks: BlockExchange }>, peer: PeerProcess, ids: Uint8Array[]): Promise<number> {
  const stream = await node.libp2p.dialProtocol(peerIdFromString(peer.peerId), RAW_PROTOCOL)
  return await fetchRaw(stream, ids)
}

function mibps (bytes: number, seconds: number): number {
  return bytes / MiB / seconds
}

function median (values: number[]): number | undefined {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function section (context: BenchContext, chunks: number, bytes: number, results: Measured[], errors: string[]): Section {
  const [raw, exchange] = results.map(result => {
    const seconds = median(result.seconds)
    return seconds === undefined ? undefined : mibps(bytes, seconds)
  })
  const rows = results.map(result => {
    const speeds = result.seconds.map(seconds => mibps(bytes, seconds).toFixed(0))
    const best = median(result.seconds)
    return [result.name, best === undefined ? 'n/a' : mibps(bytes, best).toFixed(0), speeds.join(' / ') || 'n/a']
  })
  const ratio = raw !== undefined && exchange !== undefined ? exchange / raw : undefined
  const verdict = ratio === undefined ? 'n/a' : `${ratio.toFixed(2)}× (target ≥ ${TARGET_RATIO}×: ${ratio >= TARGET_RATIO ? 'PASS' : 'MISS'})`
  const markdown = [
    '## Block exchange',
    '',
    `Measured ${context.startedAt.toISOString()} with \`${context.command}\`.`,
    '',
    describeMachine(context.machine),
    '',
    `${chunks} random chunks of ${CHUNK_BYTES} bytes (a sealed 1 MiB chunk; ${(bytes / MiB).toFixed(0)} MiB in all) in a`,
    'LocalStore, served by a peer in another process over loopback (TCP, Noise, yamux) and fetched',
    'by the bench process: over `/bazil/block/1.0.0` (requests of 128 ids, answers streamed and',
    'back-pressured), and as the baseline, the same blocks from the same store written back to back',
    `on one plain libp2p stream. ${ROUNDS} rounds each, alternating; the median counts.`,
    '',
    table(['transfer', 'MiB/s (median)', 'MiB/s per round'], rows),
    '',
    `Block exchange / plain stream: ${verdict}`,
    ...(errors.length > 0 ? ['', `Errors: ${errors.join('; ')}`] : [])
  ].join('\n')
  return { id: 'block-exchange', markdown }
}
