/**
 * An SFTP store added through the CLI against a real sshd: the host key is pinned on first
 * use, push copies the volume's objects there, and a changed host key is refused with a clear
 * error instead of being trusted.
 */
import { randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import { requireSshd, startSshd } from '../helpers/sshd.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { readStores, writeStores } from '../../src/node/stores.ts'

const kind = testTarget()

describe.runIf(kind === 'bazil' && requireFuse('bazil') && requireSshd())('an SFTP store through the CLI', () => {
  it('pins the host key, pushes content, and refuses a changed host key', async () => {
    const sshd = await startSshd()
    const node = await startBazil()
    const keyFile = join(await tmpDir(), 'client.key')
    await writeFile(keyFile, sshd.privateKey, { mode: 0o600 })
    await writeFile(join(node.mount, 'f.bin'), randomBytes(1024 * 1024))
    const url = `sftp://${sshd.username}@${sshd.host}:${sshd.port}${sshd.dataDir}/bazil?key=${keyFile}`

    const added = await node.run(['store', 'add', 'box', url])
    expect(added.code, added.stderr).toBe(0)
    const box = (await readStores(node.home)).find(s => s.name === 'box')
    expect(box?.hostKey).toBe(sshd.hostPublicKey)

    const pushed = await node.run(['push', '/', 'box', '--json'])
    expect(pushed.code, pushed.stderr).toBe(0)
    const report = JSON.parse(pushed.stdout) as { missing: number }
    expect(report.missing).toBeGreaterThan(0)
    const shards = await readdir(join(sshd.dataDir, 'bazil', 'objects'))
    expect(shards.length).toBeGreaterThan(0)

    // A store whose pinned key differs from the server's: adding it again under another name
    // with a wrong pin is not possible from the CLI, so edit the config and restart.
    await node.stop()
    await writeStores(node.home, (await readStores(node.home)).map(s => ({ ...s, hostKey: Buffer.alloc(51, 1).toString('base64') })))
    await node.restart()
    const list = await node.run(['store', 'list', '--json'])
    const box2 = (JSON.parse(list.stdout) as Array<{ name: string, state: string, lastError?: string }>).find(s => s.name === 'box')
    expect(box2?.state).toBe('unavailable')
    expect(box2?.lastError).toMatch(/host key/i)
    const push2 = await node.run(['push', '/', 'box'])
    expect(push2.code).not.toBe(0)
  })
})
