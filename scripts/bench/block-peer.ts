/**
 * A block-exchange peer in a process of its own, for the block-exchange bench and for tests
 * that kill a peer mid-transfer. It serves the LocalStore in STORE_DIR over /bazil/block/1.0.0
 * to the one peer it is told to trust, and — as the bench's baseline — the same blocks as one
 * plain libp2p stream (raw-transfer.ts).
 *
 * Prints one JSON line {"peerId", "addrs"} once listening on 127.0.0.1; stops on SIGTERM,
 * SIGINT or when its stdin closes (so it never outlives its parent).
 *
 * Run: node --import tsx scripts/bench/block-peer.ts STORE_DIR TRUSTED_PEER_ID
 */
import '../../src/util/polyfills.ts'
import { generateKeyPairSync } from 'node:crypto'
import { blockExchange } from '../../protocols/block-exchange/index.ts'
import { LocalStore } from '../../src/kv/local.ts'
import { createNetNode } from '../../src/net/node.ts'
import { Traffic } from '../../src/net/traffic.ts'
import { singlePeerTrust } from './peer-process.ts'
import { RAW_PROTOCOL, serveRaw } from './raw-transfer.ts'

async function main (): Promise<void> {
  const [storeDir, trusted] = process.argv.slice(2)
  if (storeDir === undefined || trusted === undefined) {
    process.stderr.write('usage: block-peer STORE_DIR TRUSTED_PEER_ID\n')
    process.exit(2)
  }
  const store = await LocalStore.open(storeDir, { fsync: false })
  const trust = singlePeerTrust(trusted)
  const traffic = new Traffic()
  const node = await createNetNode({
    privateKey: generateKeyPairSync('ed25519').privateKey,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    trust,
    traffic,
    services: { blocks: blockExchange({ store, trust, traffic }) }
  })
  await node.handle(RAW_PROTOCOL, async stream => { await serveRaw(stream, store) })

  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    await node.stop()
    await store.close()
    process.exit(0)
  }
  process.once('SIGTERM', () => { void stop() })
  process.once('SIGINT', () => { void stop() })
  process.stdin.on('end', () => { void stop() })
  process.stdin.resume()
  process.stdout.write(JSON.stringify({ peerId: node.peerId, addrs: node.addrs() }) + '\n')
}

main().catch((err: unknown) => {
  process.stderr.write(`block-peer failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
