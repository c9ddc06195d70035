/**
 * Two of your devices, as two daemons on loopback: A makes an invite code, a fresh data dir
 * joins with it (receiving A's owner secret and volume), both list each other as paired and
 * connected in `bazil peers`, a replayed code is refused, `peers rename` names a device and
 * `peers remove` forgets one.
 */
import { describe, expect, it } from 'vitest'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerInfo, StatusReport } from '../../src/node/api.ts'

const kind = testTarget()

describe.runIf(kind === 'bazil' && requireFuse('bazil'))('pairing two devices', () => {
  it('joins with a code, shows both as paired and connected, refuses a replay, forgets on remove', async () => {
    const a = await startBazil()
    const invite = await a.run(['invite', '--json'])
    expect(invite.code, invite.stderr).toBe(0)
    const { code } = JSON.parse(invite.stdout) as { code: string }
    expect(code.startsWith('bazil1')).toBe(true)

    const bHome = join(await tmpDir('bazil-b-'), 'home')
    const joined = await a.run(['--home', bHome, 'join', code, '--json'])
    expect(joined.code, joined.stderr).toBe(0)
    expect(Buffer.compare(await readFile(join(bHome, 'owner.key')), await readFile(join(a.home, 'owner.key')))).toBe(0)
    expect(JSON.parse(await readFile(join(bHome, 'volume.json'), 'utf8')).id).toBe(JSON.parse(await readFile(join(a.home, 'volume.json'), 'utf8')).id)

    const replay = await a.run(['--home', join(await tmpDir('bazil-c-'), 'home'), 'join', code])
    expect(replay.code).not.toBe(0)
    expect(replay.stderr).toMatch(/wrong, expired or already used/)

    const b = await startBazil({ home: bHome })
    const aStatus = JSON.parse((await a.run(['status', '--json'])).stdout) as StatusReport
    const bStatus = JSON.parse((await b.run(['status', '--json'])).stdout) as StatusReport
    let seen: PeerInfo | undefined
    for (let i = 0; i < 100; i++) {
      const peers = JSON.parse((await a.run(['peers', '--json'])).stdout) as PeerInfo[]
      seen = peers.find(p => p.peerId === bStatus.peerId)
      if (seen?.connected === true) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(seen?.paired).toBe(true)
    expect(seen?.connected).toBe(true)
    const fromB = (JSON.parse((await b.run(['peers', '--json'])).stdout) as PeerInfo[]).find(p => p.peerId === aStatus.peerId)
    expect(fromB?.paired).toBe(true)
    expect((await a.run(['peers'])).stdout).toContain('paired')
    const renamed = await a.run(['peers', 'rename', bStatus.peerId, 'laptop', '--json'])
    expect(renamed.code, renamed.stderr).toBe(0)
    expect((JSON.parse(renamed.stdout) as PeerInfo[]).find(p => p.peerId === bStatus.peerId)?.name).toBe('laptop')
    expect((await a.run(['peers'])).stdout).toContain('laptop')
    expect((await a.run(['peers', 'rename', bStatus.peerId, ''])).code).not.toBe(0)

    const removed = await a.run(['peers', 'remove', bStatus.peerId, '--json'])
    expect(removed.code, removed.stderr).toBe(0)
    expect((JSON.parse(removed.stdout) as PeerInfo[]).find(p => p.peerId === bStatus.peerId)?.paired ?? false).toBe(false)
    expect((await a.run(['peers', 'remove', bStatus.peerId])).code).not.toBe(0)
  })
})
