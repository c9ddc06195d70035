/**
 * Store steps for end-to-end tests that drive a daemon through the CLI: add an S3 (RGW) or SFTP
 * (sshd) store, read the replication backlog, wait for it to drain, and restart with an empty
 * local store so every read must come from the other stores. `until()` polls with no deadline
 * of its own: the test's timeout guards against a hang.
 */
import { randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'vitest'
import type { BazilMount, RunResult } from './mount.ts'
import type { RgwEndpoint } from './rgw.ts'
import type { Sshd } from './sshd.ts'
import { tmpDir } from './tmp.ts'
import type { StatusReport } from '../../src/node/api.ts'

/** The JSON a command printed, after checking that it succeeded. */
export async function json<T> (result: RunResult): Promise<T> {
  expect(result.code, result.stderr).toBe(0)
  return JSON.parse(result.stdout) as T
}

/** `bazil status --json`. */
export async function status (node: BazilMount): Promise<StatusReport> {
  return await json<StatusReport>(await node.run(['status', '--json']))
}

/** Polls until `done` holds; the test's own timeout is the only deadline. */
export async function until (done: () => Promise<boolean>): Promise<void> {
  while (!await done()) await new Promise(resolve => setTimeout(resolve, 100))
}

/** Adds an S3 store in a fresh bucket, reached at `endpoint` (e.g. a latency proxy in front of the gateway). */
export async function addS3 (node: BazilMount, name: string, s3: RgwEndpoint, endpoint = s3.endpoint): Promise<void> {
  await writeFile(join(node.home, 's3.json'), JSON.stringify({ accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }), { mode: 0o600 })
  const bucket = `bazil-${randomBytes(4).toString('hex')}`
  const added = await node.run(['store', 'add', name, `s3://${bucket}/vol?endpoint=${encodeURIComponent(endpoint)}&create=1`])
  expect(added.code, added.stderr).toBe(0)
}

export async function addSftp (node: BazilMount, name: string, sshd: Sshd): Promise<void> {
  const keyFile = join(await tmpDir(), 'client.key')
  await writeFile(keyFile, sshd.privateKey, { mode: 0o600 })
  const added = await node.run(['store', 'add', name, `sftp://${sshd.username}@${sshd.host}:${sshd.port}${sshd.dataDir}/bazil?key=${keyFile}`])
  expect(added.code, added.stderr).toBe(0)
}

/** Replication backlog by store name, from `status --json`. */
export async function backlog (node: BazilMount): Promise<Map<string, { pending: number, lastError?: string }>> {
  return new Map((await status(node)).replication.map(r => [r.store, r]))
}

/** Waits until every store's replication backlog is empty. */
export async function replicated (node: BazilMount): Promise<void> {
  await until(async () => [...(await backlog(node)).values()].every(r => r.pending === 0))
}

/** Restarts the daemon with an empty local store: every read must come from the other stores. */
export async function dropLocalCopies (node: BazilMount): Promise<void> {
  await node.stop()
  await rm(join(node.home, 'store', 'objects'), { recursive: true, force: true })
  await node.restart()
}
