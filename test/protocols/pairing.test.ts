/**
 * Pairing, `/bazil/pair/1.0.0`, between in-process nodes on 127.0.0.1: success (both trust
 * stores, the owner secret and volume arrive), wrong secret (checked on the wire: no proof or
 * ciphertext leaves the inviter), burning after repeated failures, expiry, replay, a relay
 * that does not know the secret (the proof is bound to both peer ids), strangers, a joiner
 * that already has another owner, garbage frames (the stream is reset and the service keeps
 * serving), and deadlines on both sides. Golden bytes are in pairing-wire.test.ts.
 */
import { describe, it, expect, onTestFinished } from 'vitest'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { CODE_P2P, multiaddr } from '@multiformats/multiaddr'
import { createNetNode } from '../../src/net/node.ts'
import type { BazilNetNode, NetNodeOptions } from '../../src/net/node.ts'
import { openTrustStore } from '../../src/net/trust.ts'
import { encodeInvite, InviteBook, parseInvite } from '../../src/net/invite.ts'
import type { Invite } from '../../src/net/invite.ts'
import type { PairedPeer, TrustStore } from '../../src/net/types.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { join, pairing, PAIRING_PROTOCOL } from '../../protocols/pairing/index.ts'
import { proofMac, transcript } from '../../protocols/pairing/crypto.ts'
import { Challenge, Confirm, Hello, Proof, Result } from '../../protocols/pairing/pairing.ts'
import { createRng, testSeed } from '../helpers/rng.ts'
import { tmpDir } from '../helpers/tmp.ts'

const VOLUME = { name: 'default', id: '0123456789abcdef0123456789abcdef' }
const LISTEN = ['/ip4/127.0.0.1/tcp/0']

type Outcome = { paired: PairedPeer } | { failed: string, code: string }

/** Outcomes the inviter reports, awaited in order: no sleeping, no polling. */
class Outcomes {
  private readonly seen: Outcome[] = []
  private readonly waiting: Array<(outcome: Outcome) => void> = []

  push (outcome: Outcome): void {
    const waiter = this.waiting.shift()
    if (waiter !== undefined) waiter(outcome)
    else this.seen.push(outcome)
  }

  async next (): Promise<Outcome> {
    const outcome = this.seen.shift()
    if (outcome !== undefined) return outcome
    return await new Promise(resolve => { this.waiting.push(resolve) })
  }
}

interface TestNode {
  node: BazilNetNode<Record<string, unknown>>
  trust: TrustStore
  home: string
}

interface Inviter extends TestNode {
  invites: InviteBook
  ownerSecret: Uint8Array
  outcomes: Outcomes
  issue: (ttlMs?: number) => Invite
}

async function startNode (services: NetNodeOptions<Record<string, unknown>>['services'] = {}, trust?: TrustStore, home?: string): Promise<TestNode> {
  home ??= await tmpDir()
  trust ??= await openTrustStore(home)
  const node = await createNetNode({
    privateKey: generateKeyPairSync('ed25519').privateKey,
    listen: LISTEN,
    trust,
    mdns: false,
    dialPaired: false,
    openProtocols: [PAIRING_PROTOCOL],
    services
  })
  onTestFinished(async () => { await node.stop() })
  return { node, trust, home }
}

async function startInviter (options: { now?: () => number, deadlineMs?: number } = {}): Promise<Inviter> {
  const home = await tmpDir()
  const trust = await openTrustStore(home)
  const invites = new InviteBook({ now: options.now })
  const ownerSecret = new Uint8Array(randomBytes(32))
  const outcomes = new Outcomes()
  const service = pairing({
    invites,
    trust,
    ownerSecret,
    volume: VOLUME,
    hostname: 'server',
    deadlineMs: options.deadlineMs,
    onPaired: peer => { outcomes.push({ paired: peer }) },
    onFailed: (peerId, error) => { outcomes.push({ failed: peerId, code: error.code }) }
  })
  const started = await startNode({ pairing: service }, trust, home)
  return {
    ...started,
    invites,
    ownerSecret,
    outcomes,
    issue: ttlMs => invites.issue({ peerId: started.node.peerId, addrs: started.node.addrs(), ttlMs })
  }
}

async function codeOf (work: Promise<unknown>): Promise<string> {
  try {
    await work
  } catch (err) {
    return err instanceof BazilError ? err.code : `not a BazilError: ${String(err)}`
  }
  return 'resolved'
}

async function joinWith (joiner: TestNode, code: string, options: { ownerSecret?: Uint8Array } = {}): Promise<Awaited<ReturnType<typeof join>>> {
  return await join(joiner.node.libp2p, code, { trust: joiner.trust, hostname: 'laptop', ...options })
}

/** A pairing stream from `from` to `to`, spoken by hand. */
async function rawStream (from: TestNode, to: TestNode): Promise<Stream> {
  const addr = to.node.addrs()[0]
  if (addr === undefined) throw new Error('the node has no address')
  const stream = await from.node.libp2p.dialProtocol(multiaddr(addr), PAIRING_PROTOCOL)
  onTestFinished(() => { stream.abort(new Error('test over')) })
  return stream
}

/** Runs a joiner's half by hand up to the Result, with the given secret. */
async function handJoin (joiner: TestNode, inviter: Inviter, invite: { id: string }, secret: Uint8Array): Promise<{ result: Result, lp: ReturnType<typeof lpStream> }> {
  const stream = await rawStream(joiner, inviter)
  const lp = lpStream(stream)
  const inviteId = new Uint8Array(Buffer.from(invite.id, 'hex'))
  const joinerNonce = new Uint8Array(randomBytes(32))
  await lp.write(Hello.encode({ inviteId, nonce: joinerNonce }))
  const challenge = Challenge.decode((await lp.read()).subarray())
  const bytes = transcript({
    inviteId,
    joinerPeerId: joiner.node.libp2p.peerId.toMultihash().bytes,
    inviterPeerId: inviter.node.libp2p.peerId.toMultihash().bytes,
    joinerNonce,
    inviterNonce: challenge.nonce
  })
  await lp.write(Proof.encode({ mac: new Uint8Array(proofMac(secret, 'joiner', bytes)), hostname: 'by hand' }))
  return { result: Result.decode((await lp.read()).subarray()), lp }
}

describe('pairing', () => {
  it('pairs: the joiner gets the owner secret and volume, both trust each other, on disk', async () => {
    const inviter = await startInviter()
    const joiner = await startNode()
    const invite = inviter.issue()

    const joined = await joinWith(joiner, invite.code)

    expect(Buffer.from(joined.ownerSecret).equals(Buffer.from(inviter.ownerSecret))).toBe(true)
    expect(joined.volume).toEqual(VOLUME)
    expect(joined.peer).toMatchObject({ peerId: inviter.node.peerId, name: 'server' })
    const outcome = await inviter.outcomes.next()
    expect(outcome).toMatchObject({ paired: { peerId: joiner.node.peerId, name: 'laptop' } })
    expect((await openTrustStore(joiner.home)).list().map(p => [p.peerId, p.name])).toEqual([[inviter.node.peerId, 'server']])
    expect((await openTrustStore(inviter.home)).list().map(p => [p.peerId, p.name])).toEqual([[joiner.node.peerId, 'laptop']])
    const listening = inviter.node.addrs().map(addr => multiaddr(addr).decapsulateCode(CODE_P2P).toString())
    expect(joined.peer.addrs).toEqual(expect.arrayContaining(listening))
    expect(inviter.invites.list()).toEqual([])
  })

  it('refuses a replayed code with PERMISSION, from the same or another node', async () => {
    const inviter = await startInviter()
    const first = await startNode()
    const second = await startNode()
    const invite = inviter.issue()
    await joinWith(first, invite.code)
    expect(await inviter.outcomes.next()).toMatchObject({ paired: { peerId: first.node.peerId } })

    expect(await codeOf(joinWith(second, invite.code))).toBe(ErrorCode.PERMISSION)
    expect(await inviter.outcomes.next()).toEqual({ failed: second.node.peerId, code: ErrorCode.PERMISSION })
    expect(await codeOf(joinWith(first, invite.code))).toBe(ErrorCode.PERMISSION)
    expect(await inviter.outcomes.next()).toEqual({ failed: first.node.peerId, code: ErrorCode.PERMISSION })
    expect(second.trust.list()).toEqual([])
    expect(inviter.trust.list().map(p => p.peerId)).toEqual([first.node.peerId])
  })

  it('refuses a wrong secret on both sides without consuming the invite', async () => {
    const inviter = await startInviter()
    const joiner = await startNode()
    const invite = inviter.issue()
    const forged = encodeInvite({ ...parseInvite(invite.code), secret: new Uint8Array(randomBytes(32)) })

    expect(await codeOf(joinWith(joiner, forged))).toBe(ErrorCode.PERMISSION)
    expect(await inviter.outcomes.next()).toEqual({ failed: joiner.node.peerId, code: ErrorCode.PERMISSION })
    expect(joiner.trust.list()).toEqual([])
    expect(inviter.trust.list()).toEqual([])
    expect(inviter.invites.list()).toEqual([{ id: invite.id, expiresAt: invite.expiresAt, failures: 1 }])

    // The right code still works afterwards.
    await joinWith(joiner, invite.code)
    expect(await inviter.outcomes.next()).toMatchObject({ paired: { peerId: joiner.node.peerId } })
  })

  it('sends neither its proof nor the sealed grant after a wrong proof (on the wire)', async () => {
    const inviter = await startInviter()
    const joiner = await startNode()
    const invite = inviter.issue()

    const wrong = await handJoin(joiner, inviter, invite, new Uint8Array(randomBytes(32)))
    expect(wrong.result).toEqual({ status: Result.Status.DENIED, mac: new Uint8Array(), sealed: new Uint8Array() })
    // Nothing follows the refusal: the inviter ends its side of the stream.
    await expect(wrong.lp.read()).rejects.toMatchObject({ name: 'UnexpectedEOFError' })
    expect(await inviter.outcomes.next()).toEqual({ failed: joiner.node.peerId, code: ErrorCode.PERMISSION })

    // The same exchange with the right secret does get both: the check above can fail.
    const right = await handJoin(joiner, inviter, invite, invite.secret)
    expect(right.result.status).toBe(Result.Status.OK)
    expect(right.result.mac.length).toBe(32)
    expect(right.result.sealed.length).toBeGreaterThan(32 + 12 + 16)
    await right.lp.write(Confirm.encode({ accepted: true }))
    expect(await inviter.outcomes.next()).toMatchObject({ paired: { peerId: joiner.node.peerId, name: 'by hand' } })
  })

  it('burns an invite after five wrong proofs', async () => {
    const inviter = await startInviter()
    const joiner = await startNode()
    const invite = inviter.issue()
    for (let i = 0; i < 5; i++) {
      const { result, lp } = await handJoin(joiner, inviter, invite, new Uint8Array(randomBytes(32)))
      expect(result.status).toBe(Result.Status.DENIED)
      // Each attempt ends cleanly, or the inviter's limit on concurrent streams would refuse the next.
      await lp.unwrap().close()
      expect(await inviter.outcomes.next()).toMatchObject({ code: ErrorCode.PERMISSION })
    }
    expect(inviter.invites.list()).toEqual([])
    expect(await codeOf(joinWith(joiner, invite.code))).toBe(ErrorCode.PERMISSION)
    expect(joiner.trust.list()).toEqual([])
  })

  it('refuses an expired code with PERMISSION (the inviter\'s clock decides)', async () => {
    let now = Date.now()
    const inviter = await startInviter({ now: () => now })
    const joiner = await startNode()
    const invite = inviter.issue(60_000)
    now += 60_000
    expect(await codeOf(joinWith(joiner, invite.code))).toBe(ErrorCode.PERMISSION)
    expect(await inviter.outcomes.next()).toEqual({ failed: joiner.node.peerId, code: ErrorCode.PERMISSION })
    expect(joiner.trust.list()).toEqual([])
    expect(inviter.trust.list()).toEqual([])
  })

  it('binds the proof to both peer ids: a relay without the secret gets nowhere', async () => {
    const inviter = await startInviter()
    const joiner = await startNode()
    const relay = await startNode()
    // The relay answers pairing by forwarding every byte to the inviter and back.
    await relay.node.libp2p.handle(PAIRING_PROTOCOL, async (inbound) => {
      const outbound = await rawStream(relay, inviter)
      const forward = (from: Stream, to: Stream): void => {
        from.addEventListener('message', evt => { to.send(evt.data) })
        from.addEventListener('remoteCloseWrite', () => { to.close().catch(() => {}) })
        from.addEventListener('close', evt => { if (evt.error !== undefined) to.abort(evt.error) })
      }
      forward(inbound, outbound)
      forward(outbound, inbound)
    })
    const invite = inviter.issue()
    // The joiner is sent to the relay, with the genuine invite id and secret.
    const redirected = encodeInvite({ ...parseInvite(invite.code), peerId: relay.node.peerId, addrs: relay.node.addrs() })

    expect(await codeOf(joinWith(joiner, redirected))).toBe(ErrorCode.PERMISSION)
    // The inviter saw the joiner's proof (so the relay worked) and found it was not for this pair.
    expect(await inviter.outcomes.next()).toEqual({ failed: relay.node.peerId, code: ErrorCode.PERMISSION })
    expect(inviter.invites.list()).toEqual([{ id: invite.id, expiresAt: invite.expiresAt, failures: 1 }])
    expect(inviter.trust.list()).toEqual([])
    expect(joiner.trust.list()).toEqual([])
  })

  it('gives a stranger without a code nothing', async () => {
    const inviter = await startInviter()
    const stranger = await startNode()
    inviter.issue()
    const { result } = await handJoin(stranger, inviter, { id: randomBytes(16).toString('hex') }, new Uint8Array(32))
    expect(result).toEqual({ status: Result.Status.DENIED, mac: new Uint8Array(), sealed: new Uint8Array() })
    expect(await inviter.outcomes.next()).toEqual({ failed: stranger.node.peerId, code: ErrorCode.PERMISSION })
    expect(inviter.trust.list()).toEqual([])
    expect(inviter.invites.list()).toHaveLength(1)
  })

  it('lets a joiner that belongs to another owner decline: neither side records the pairing', async () => {
    const inviter = await startInviter()
    const joiner = await startNode()
    const invite = inviter.issue()
    expect(await codeOf(joinWith(joiner, invite.code, { ownerSecret: new Uint8Array(randomBytes(32)) }))).toBe(ErrorCode.CONFLICT)
    expect(await inviter.outcomes.next()).toEqual({ failed: joiner.node.peerId, code: ErrorCode.CONFLICT })
    expect(joiner.trust.list()).toEqual([])
    expect(inviter.trust.list()).toEqual([])

    // The same owner secret is no conflict.
    const again = await joinWith(joiner, inviter.issue().code, { ownerSecret: inviter.ownerSecret })
    expect(again.peer.peerId).toBe(inviter.node.peerId)
  })

  it('refuses a peer claiming to be the inviter that cannot prove it', async () => {
    const fake = await startNode()
    const joiner = await startNode()
    // Accepts any proof, then answers OK with a made-up proof and box.
    await fake.node.libp2p.handle(PAIRING_PROTOCOL, async (stream) => {
      const lp = lpStream(stream)
      await lp.read()
      await lp.write(Challenge.encode({ nonce: new Uint8Array(32) }))
      await lp.read()
      await lp.write(Result.encode({ status: Result.Status.OK, mac: new Uint8Array(randomBytes(32)), sealed: new Uint8Array(randomBytes(100)) }))
    })
    const code = encodeInvite({ peerId: fake.node.peerId, addrs: fake.node.addrs(), id: randomBytes(16).toString('hex'), secret: new Uint8Array(randomBytes(32)), expiresAt: Date.now() + 60_000 })
    expect(await codeOf(joinWith(joiner, code))).toBe(ErrorCode.PERMISSION)
    expect(joiner.trust.list()).toEqual([])
  })

  it('resets streams of garbage and keeps serving (fuzz)', async () => {
    const seed = testSeed()
    const rng = createRng(seed)
    const inviter = await startInviter()
    const joiner = await startNode()
    const cases: Array<{ name: string, bytes: Uint8Array }> = [
      { name: 'oversized frame', bytes: new Uint8Array([0x80, 0x80, 0x40, 1, 2, 3]) },
      { name: 'cut-short frame', bytes: new Uint8Array([50, 1, 2, 3]) },
      { name: 'empty frame', bytes: new Uint8Array([0]) },
      { name: 'short nonce', bytes: new Uint8Array([...[4 + 16 + 4], ...Hello.encode({ inviteId: new Uint8Array(16), nonce: new Uint8Array(2) })]) }
    ]
    for (let i = 0; i < 16; i++) {
      const body = rng.bytes(rng.int(0, 600))
      // Half are well-framed protobuf garbage, half raw garbage.
      cases.push({ name: `random ${i}`, bytes: rng.chance(0.5) ? new Uint8Array([...varint(body.length), ...body]) : new Uint8Array(body) })
    }
    for (const { name, bytes } of cases) {
      const stream = await rawStream(joiner, inviter)
      stream.send(bytes)
      await stream.close()
      const lp = lpStream(stream)
      await expect(lp.read(), `${name}, seed ${seed}`).rejects.toThrow()
      const outcome = await inviter.outcomes.next()
      expect(outcome, `${name}, seed ${seed}`).toEqual({ failed: joiner.node.peerId, code: ErrorCode.PROTOCOL })
      expect(['reset', 'aborted', 'closed'], name).toContain(stream.status)
    }
    // Still serving.
    await joinWith(joiner, inviter.issue().code)
    expect(await inviter.outcomes.next()).toMatchObject({ paired: { peerId: joiner.node.peerId } })
  })
})

describe('pairing deadlines', () => {
  it('inviter: a joiner that stalls mid-exchange is reset at the deadline (TIMEOUT)', async () => {
    const inviter = await startInviter({ deadlineMs: 300 })
    const joiner = await startNode()
    const stream = await rawStream(joiner, inviter)
    const lp = lpStream(stream)
    await lp.write(Hello.encode({ inviteId: new Uint8Array(16), nonce: new Uint8Array(32) }))
    expect(Challenge.decode((await lp.read()).subarray()).nonce.length).toBe(32)
    // ...and never sends its proof.
    expect(await inviter.outcomes.next()).toEqual({ failed: joiner.node.peerId, code: ErrorCode.TIMEOUT })
    await expect(lp.read()).rejects.toThrow()
    expect(['reset', 'aborted']).toContain(stream.status)
  })

  it('inviter: a joiner that never closes its side is reset at the deadline, freeing the slot', async () => {
    const inviter = await startInviter({ deadlineMs: 300 })
    const joiner = await startNode()
    const { result, lp } = await handJoin(joiner, inviter, { id: randomBytes(16).toString('hex') }, new Uint8Array(32))
    expect(result.status).toBe(Result.Status.DENIED)
    expect(await inviter.outcomes.next()).toMatchObject({ code: ErrorCode.PERMISSION })
    const stream = lp.unwrap()
    if (stream.status === 'open') await new Promise(resolve => { stream.addEventListener('close', resolve, { once: true }) })
    expect(['reset', 'aborted']).toContain(stream.status)
  })

  it('joiner: an inviter that never answers is TIMEOUT; the caller\'s abort is ABORTED', async () => {
    const silent = await startNode()
    const joiner = await startNode()
    await silent.node.libp2p.handle(PAIRING_PROTOCOL, () => {})
    const code = encodeInvite({ peerId: silent.node.peerId, addrs: silent.node.addrs(), id: randomBytes(16).toString('hex'), secret: new Uint8Array(32), expiresAt: Date.now() + 60_000 })
    const options = { trust: joiner.trust, hostname: 'laptop' }
    expect(await codeOf(join(joiner.node.libp2p, code, { ...options, deadlineMs: 300 }))).toBe(ErrorCode.TIMEOUT)
    const controller = new AbortController()
    const joining = join(joiner.node.libp2p, code, { ...options, signal: controller.signal })
    controller.abort()
    expect(await codeOf(joining)).toBe(ErrorCode.ABORTED)
    expect(joiner.trust.list()).toEqual([])
  })

  it('joiner: an inviter that is gone is UNAVAILABLE', async () => {
    const gone = await startNode()
    const joiner = await startNode()
    const code = encodeInvite({ peerId: gone.node.peerId, addrs: gone.node.addrs(), id: randomBytes(16).toString('hex'), secret: new Uint8Array(32), expiresAt: Date.now() + 60_000 })
    await gone.node.stop()
    expect(await codeOf(joinWith(joiner, code))).toBe(ErrorCode.UNAVAILABLE)
  })

  it('joiner: garbage codes are INVALID before any dial', async () => {
    const joiner = await startNode()
    expect(await codeOf(joinWith(joiner, 'bazil1notacode'))).toBe(ErrorCode.INVALID)
    expect(joiner.node.libp2p.getConnections()).toEqual([])
  })
})

function varint (value: number): number[] {
  const out: number[] = []
  while (value >= 0x80) { out.push((value & 0x7f) | 0x80); value >>>= 7 }
  out.push(value)
  return out
}
