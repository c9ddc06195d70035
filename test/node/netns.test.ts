/**
 * Three computers on one LAN: real daemons, each in its own network namespace on one bridge,
 * listening on all interfaces with mDNS on (issue 3). A and C find each other as nearby
 * strangers; B joins A with an invite code from its own namespace and, once started, both show
 * each other paired and connected over the bridge; C sees A and B but exchanges no Bazil
 * traffic with them; a partition of B (nftables in its namespace) shows as a disconnection,
 * and once it heals A and B should connect again by themselves.
 *
 * Bounds on polls guard against hangs only (mDNS queries every 10 s, libp2p's connection
 * monitor pings every 10 s); nothing here judges speed.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import type { PeerInfo, StatusReport } from '../../src/node/api.ts'
import { requireFuse, testTarget } from '../helpers/mount.ts'
import type { BazilMount } from '../helpers/mount.ts'
import { requireNetns, useLan } from '../helpers/netns.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** Two mDNS query intervals and more: discovery itself takes milliseconds here. */
const DISCOVERY_BOUND_MS = 25_000
/** A ping interval plus libp2p's longest ping timeout, and more. */
const DISCONNECT_BOUND_MS = 45_000
/** Two mDNS query intervals after the heal: a paired peer seen again should be dialled. */
const RECONNECT_BOUND_MS = 25_000
const POLL = { interval: 250 }

const kind = testTarget()

async function peersOf (node: BazilMount): Promise<PeerInfo[]> {
  const result = await node.run(['peers', '--json'])
  if (result.code !== 0) throw new Error(`bazil peers exited ${String(result.code)}: ${result.stderr}`)
  return JSON.parse(result.stdout) as PeerInfo[]
}

async function peerIdOf (node: BazilMount): Promise<string> {
  const result = await node.run(['status', '--json'])
  if (result.code !== 0) throw new Error(`bazil status exited ${String(result.code)}: ${result.stderr}`)
  return (JSON.parse(result.stdout) as StatusReport).peerId
}

/** Polls `node`'s peer list until `check` passes on the row for `peerId`; returns that row. */
async function waitForPeer (node: BazilMount, peerId: string, timeout: number, check: (row: PeerInfo) => void): Promise<PeerInfo> {
  return await vi.waitFor(async () => {
    const peers = await peersOf(node)
    const row = peers.find(p => p.peerId === peerId)
    expect(row, `${peerId} not in ${JSON.stringify(peers)}`).toBeDefined()
    check(row as PeerInfo)
    return row as PeerInfo
  }, { timeout, ...POLL })
}

describe.runIf(kind === 'bazil' && requireFuse('bazil') && requireNetns())('three computers on one bridge (network namespaces, mDNS)', () => {
  const lan = useLan(['a', 'b', 'c'])
  let a: BazilMount
  let c: BazilMount
  let ids: { a: string, b?: string, c: string }
  let bHome: string

  beforeAll(async () => {
    [a, c] = await Promise.all([lan().start('a'), lan().start('c')])
    ids = { a: await peerIdOf(a), c: await peerIdOf(c) }
    // Made in beforeAll so it outlives the join test; tmp.ts's exit sweep removes it.
    bHome = join(await tmpDir('bazil-netns-b-'), 'home')
  })

  it('A and C, unpaired, find each other over mDNS as nearby devices at their bridge addresses', async () => {
    const cOnA = await waitForPeer(a, ids.c, DISCOVERY_BOUND_MS, row => { expect(row.addrs.join(' ')).toContain(`/ip4/${lan().node('c').addr}/`) })
    const aOnC = await waitForPeer(c, ids.a, DISCOVERY_BOUND_MS, row => { expect(row.addrs.join(' ')).toContain(`/ip4/${lan().node('a').addr}/`) })
    expect(cOnA.paired).toBe(false)
    expect(aOnC.paired).toBe(false)
  })

  it('B joins with an invite code from A, running the join in its own namespace', async () => {
    const invite = await a.run(['invite', '--json'])
    expect(invite.code, invite.stderr).toBe(0)
    const { code } = JSON.parse(invite.stdout) as { code: string }
    const joined = await lan().bazil('b', ['--home', bHome, 'join', code, '--json'])
    expect(joined.code, joined.stderr).toBe(0)
    expect(Buffer.compare(await readFile(join(bHome, 'owner.key')), await readFile(join(a.home, 'owner.key')))).toBe(0)
    const volumeId = async (home: string): Promise<string> => (JSON.parse(await readFile(join(home, 'volume.json'), 'utf8')) as { id: string }).id
    expect(await volumeId(bHome)).toBe(await volumeId(a.home))
  })

  describe('with B running after the join', () => {
    let b: BazilMount

    beforeAll(async () => {
      if (await readFile(join(bHome, 'owner.key')).then(() => false, () => true)) {
        throw new Error('B has not joined (see the join test above)')
      }
      b = await lan().start('b', { home: bHome })
      ids.b = await peerIdOf(b)
    })

    it('A and B show each other paired and connected, over the bridge', async () => {
      const bOnA = await waitForPeer(a, ids.b as string, DISCOVERY_BOUND_MS, row => { expect(row.connected).toBe(true) })
      expect(bOnA.paired).toBe(true)
      expect(bOnA.addrs.join(' ')).toContain(`/ip4/${lan().node('b').addr}/`)
      const aOnB = await waitForPeer(b, ids.a, DISCOVERY_BOUND_MS, row => { expect(row.connected).toBe(true) })
      expect(aOnB.paired).toBe(true)
      expect(aOnB.addrs.join(' ')).toContain(`/ip4/${lan().node('a').addr}/`)
    })

    it('C sees A and B only as nearby strangers, and no Bazil bytes pass between C and either', async () => {
      for (const id of [ids.a, ids.b as string]) {
        expect((await waitForPeer(c, id, DISCOVERY_BOUND_MS, () => {})).paired).toBe(false)
      }
      for (const node of [a, b]) {
        const cRow = await waitForPeer(node, ids.c, DISCOVERY_BOUND_MS, () => {})
        expect(cRow).toMatchObject({ paired: false, bytesSent: 0, bytesReceived: 0 })
      }
      for (const row of await peersOf(c)) {
        expect(row).toMatchObject({ paired: false, bytesSent: 0, bytesReceived: 0 })
      }
    })

    it('a partition of B (nftables drop in its namespace) shows A and B disconnected', async () => {
      await lan().partition('b')
      const [bOnA, aOnB] = await Promise.all([
        waitForPeer(a, ids.b as string, DISCONNECT_BOUND_MS, row => { expect(row.connected).toBe(false) }),
        waitForPeer(b, ids.a, DISCONNECT_BOUND_MS, row => { expect(row.connected).toBe(false) })
      ])
      expect(bOnA.paired).toBe(true)
      expect(aOnB.paired).toBe(true)
    }, DISCONNECT_BOUND_MS + 15_000)

    it('after the partition heals, A and B reconnect by themselves', async () => {
      await lan().heal('b')
      const bOnA = await waitForPeer(a, ids.b as string, RECONNECT_BOUND_MS, row => { expect(row.connected).toBe(true) })
      expect(bOnA.paired).toBe(true)
    }, RECONNECT_BOUND_MS + 15_000)
  })
})
