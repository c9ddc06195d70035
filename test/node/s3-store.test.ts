/**
 * An S3 store added through the CLI against a real S3 (Ceph's RADOS Gateway): credentials from
 * the data dir's s3.json, push copies the objects there, a file whose chunks exist only in S3
 * reads back through the mount, and wrong credentials are a clear error at `store add`.
 */
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireFuse, startBazil, testTarget } from '../helpers/mount.ts'
import { sharedRgw } from '../helpers/rgw.ts'

const kind = testTarget()
const rgw = await sharedRgw()

describe.runIf(kind === 'bazil' && requireFuse('bazil') && !('unavailable' in rgw))('an S3 store through the CLI', () => {
  it('pushes content to S3 and reads it back from there through the mount', async () => {
    if ('unavailable' in rgw) return
    const node = await startBazil()
    const data = randomBytes(2 * 1024 * 1024 + 7)
    await writeFile(join(node.mount, 'f.bin'), data)
    const bucket = `bazil-${randomBytes(4).toString('hex')}`
    const url = `s3://${bucket}/vol?endpoint=${encodeURIComponent(rgw.endpoint)}&create=1`

    await writeFile(join(node.home, 's3.json'), JSON.stringify({ accessKeyId: rgw.accessKeyId, secretAccessKey: 'wrong' }), { mode: 0o600 })
    const refused = await node.run(['store', 'add', 'cloud', url])
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toMatch(/credential|permission|denied|refused/i)

    await writeFile(join(node.home, 's3.json'), JSON.stringify({ accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey }), { mode: 0o600 })
    const added = await node.run(['store', 'add', 'cloud', url])
    expect(added.code, added.stderr).toBe(0)
    const pushed = await node.run(['push', '/', 'cloud', '--json'])
    expect(pushed.code, pushed.stderr).toBe(0)
    expect((JSON.parse(pushed.stdout) as { missing: number }).missing).toBeGreaterThan(0)

    await node.stop()
    await rm(join(node.home, 'store', 'objects'), { recursive: true, force: true })
    await node.restart()
    expect((await readFile(join(node.mount, 'f.bin'))).equals(data)).toBe(true)
  })
})
