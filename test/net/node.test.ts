/**
 * The libp2p node (src/net/node.ts): its peer id is the data dir's identity, it listens where
 * told (falling back to a free port only when allowed), the trust guard refuses every /bazil/
 * protocol to unpaired peers whichever way the handler was registered, and `peers()` reports
 * what `bazil peers` shows. Nodes run on 127.0.0.1 at free ports.
 */
import { createServer, type Server } from 'node:net'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { describe, expect, it, onTestFinished } from 'vitest'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { FrameReader, encodeVarint, sendParts } from '../../src/net/frames.ts'
import { createNetNode } from '../../src/net/node.ts'
import { initHome } from '../../src/node/home.ts'
import { MemoryTrustStore, connect, pair, startNode, testIdentity, type TestNode } from '../helpers/net.ts'
import { tmpDir } from '../helpers/tmp.ts'

type AnyNode = TestNode<Record<string, unknown>>

describe('identity and listening', () => {
  it('uses the data dir identity as its peer id', async () => {
    const home = await initHome(await tmpDir())
    const node = await createNetNode({ privateKey: home.identity.privateKey, trust: new MemoryTrustStore(), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
    onTestFinished(async () => { await node.stop() })
    expect(node.peerId).toBe(home.identity.peerId)
    expect(node.libp2p.peerId.toString()).toBe(home.identity.peerId)
    expect(node.addrs().length).toBeGreaterThan(0)
    for (const addr of node.addrs()) expect(addr).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${home.identity.peerId}$`))
  })

  it('falls back to a free port when its port is taken and fallback is on; fails with BUSY when off', async () => {
    const port = await occupyPort()
    const taken = `/ip4/127.0.0.1/tcp/${port}`
    const identity = testIdentity()
    const refused = await createNetNode({ privateKey: identity.privateKey, trust: new MemoryTrustStore(), listen: [taken], mdns: false })
      .then(async node => { await node.stop(); return undefined }, (err: unknown) => err)
    expect(refused).toBeInstanceOf(BazilError)
    expect((refused as BazilError).code).toBe(ErrorCode.BUSY)

    const node = await createNetNode({ privateKey: identity.privateKey, trust: new MemoryTrustStore(), listen: [taken], fallbackToAnyPort: true, mdns: false })
    onTestFinished(async () => { await node.stop() })
    const ports = node.addrs().map(addr => Number(/\/tcp\/(\d+)\//.exec(addr)?.[1]))
    expect(ports.length).toBeGreaterThan(0)
    for (const listening of ports) {
      expect(listening).toBeGreaterThan(0)
      expect(listening).not.toBe(port)
    }
  })
})

describe('the trust guard', () => {
  const PROTOCOL = '/bazil/test-echo/1.0.0'
  const OPEN = '/bazil/test-open/1.0.0'

  /** A tiny service registering its handlers through libp2p components, unaware of trust. */
  function echoService (protocol: string, calls: string[]): (components: { registrar: { handle: (p: string, h: (s: Stream) => void) => Promise<void> } }) => object {
    return components => ({
      start: async () => {
        await components.registrar.handle(protocol, stream => {
          calls.push(protocol)
          void echoOnce(stream)
        })
      },
      stop: () => {}
    })
  }

  it('resets /bazil/ streams from unpaired peers, for service and node.handle handlers alike, until they pair', async () => {
    const calls: string[] = []
    const server = await startNode<{ echo: object, open: object }>({
      openProtocols: [OPEN],
      services: () => ({ echo: echoService(PROTOCOL, calls), open: echoService(OPEN, calls) })
    })
    await server.handle('/bazil/test-direct/1.0.0', stream => { calls.push('direct'); void echoOnce(stream) })
    const client = await startNode()
    await pair(client as AnyNode, server as AnyNode, true) // the client trusts the server; not the reverse
    await connect(client, server)

    for (const protocol of [PROTOCOL, '/bazil/test-direct/1.0.0']) {
      await expect(askEcho(client as AnyNode, server.peerId, protocol)).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE })
    }
    expect(calls).toEqual([])
    // A protocol the node opens on purpose (pairing) still answers strangers.
    expect(await askEcho(client as AnyNode, server.peerId, OPEN)).toBe('hello')
    expect(calls).toEqual([OPEN])

    await pair(server as AnyNode, client as AnyNode, true)
    expect(await askEcho(client as AnyNode, server.peerId, PROTOCOL)).toBe('hello')
    expect(await askEcho(client as AnyNode, server.peerId, '/bazil/test-direct/1.0.0')).toBe('hello')
    expect(calls).toEqual([OPEN, PROTOCOL, 'direct'])

    await server.trust.remove(client.peerId)
    await expect(askEcho(client as AnyNode, server.peerId, PROTOCOL)).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE })
    expect(calls).toEqual([OPEN, PROTOCOL, 'direct'])
  })

  it('leaves libp2p protocols (ping, identify) open to every peer', async () => {
    const server = await startNode()
    const stranger = await startNode()
    await connect(stranger, server)
    expect(await stranger.ping(server.peerId)).toBeGreaterThanOrEqual(0)
  })
})

describe('peers()', () => {
  it('reports paired, connected peers with addresses, round trip and bytes; paired offline ones by name', async () => {
    const a = await startNode()
    const b = await startNode()
    const offline = testIdentity()
    await pair(a as AnyNode, b as AnyNode)
    await a.trust.add({ peerId: offline.peerId, name: 'laptop', addrs: ['/ip4/127.0.0.1/tcp/9/p2p/' + offline.peerId], pairedAt: new Date().toISOString() })
    await connect(a, b)
    const rtt = await a.ping(b.peerId)

    const rows = a.peers()
    expect(rows.map(row => row.peerId).sort()).toEqual([b.peerId, offline.peerId].sort())
    const online = rows.find(row => row.peerId === b.peerId)
    expect(online).toMatchObject({ paired: true, connected: true, name: `node-${b.peerId.slice(-6)}`, rttMs: rtt, bytesSent: 0, bytesReceived: 0 })
    expect(online?.addrs).toEqual([expect.stringMatching(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${b.peerId}$`))])
    expect(online?.lastSeen).toBeDefined()
    expect(rows.find(row => row.peerId === offline.peerId)).toEqual({
      peerId: offline.peerId, name: 'laptop', paired: true, connected: false,
      addrs: ['/ip4/127.0.0.1/tcp/9/p2p/' + offline.peerId], bytesSent: 0, bytesReceived: 0
    })

    await a.libp2p.hangUp(peerIdFromString(b.peerId))
    const after = a.peers().find(row => row.peerId === b.peerId)
    expect(after).toMatchObject({ paired: true, connected: false })
    expect(after?.rttMs).toBeUndefined()
    expect(after?.lastSeen).toBeDefined()
  })

  it('lists a connected stranger as unpaired', async () => {
    const a = await startNode()
    const stranger = await startNode()
    await connect(stranger, a)
    expect(a.peers()).toEqual([expect.objectContaining({ peerId: stranger.peerId, paired: false, connected: true })])
  })
})

/** Reads one frame and writes it back, then closes. */
async function echoOnce (stream: Stream): Promise<void> {
  const reader = new FrameReader(stream, { maxFrameBytes: 1024 })
  try {
    const frame = await reader.next()
    if (frame !== null) await sendParts(stream, [encodeVarint(frame.byteLength), frame])
    await stream.close()
  } catch (err) {
    stream.abort(err as Error)
  } finally {
    reader.release()
  }
}

/** Sends "hello" on `protocol` and returns what comes back; rejects with a BazilError. */
async function askEcho (client: AnyNode, peerId: string, protocol: string): Promise<string> {
  const stream = await client.libp2p.dialProtocol(peerIdFromString(peerId), protocol)
  const reader = new FrameReader(stream, { maxFrameBytes: 1024 })
  try {
    const hello = Buffer.from('hello')
    await sendParts(stream, [encodeVarint(hello.byteLength), hello])
    await stream.close()
    const frame = await reader.next()
    if (frame === null) throw new BazilError(ErrorCode.UNAVAILABLE, 'no answer')
    return Buffer.from(frame).toString()
  } finally {
    reader.release()
  }
}

async function occupyPort (): Promise<number> {
  const server: Server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  onTestFinished(async () => { await new Promise<void>(resolve => server.close(() => { resolve() })) })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}
