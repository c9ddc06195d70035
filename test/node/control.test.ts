import { describe, it, expect, onTestFinished } from 'vitest'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import { lstat, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { connectControl, serveControl, CONTROL_MAX_REQUEST_BYTES } from '../../src/node/control.ts'
import type { ControlClient } from '../../src/node/control.ts'
import type { CheckReport, NodeApi, StatusReport } from '../../src/node/api.ts'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { stubApi as stubBase } from '../helpers/stub-api.ts'

const status: StatusReport = {
  home: '/h', volume: 'default', mount: '/m', pid: 42, peerId: '12D3KooWtest', chunks: 3,
  storedBytes: 1000, logicalBytes: 2000, files: 2, directories: 1, replication: [], peers: [], listen: [], startedAt: '2025-01-01T00:00:00.000Z'
}
const report: CheckReport = {
  files: 2, chunksChecked: 3, bytesChecked: 1000, ok: false,
  problems: [{ chunk: 'ab'.repeat(32), problem: 'corrupt', paths: ['/a.txt', '/d/b.txt'] }]
}

function stubApi (overrides: Partial<NodeApi> = {}): NodeApi {
  return stubBase({ status: async () => status, check: async () => report, ...overrides })
}

async function setup (api: NodeApi = stubApi()): Promise<{ socketPath: string, client: ControlClient }> {
  const socketPath = join(await tmpDir(), 'control.sock')
  const server = await serveControl(api, socketPath, { closeGraceMs: 100 })
  onTestFinished(async () => { await server.close() })
  const client = await connectControl(socketPath)
  onTestFinished(() => { client.close() })
  return { socketPath, client }
}

async function codeOf (work: Promise<unknown>): Promise<string> {
  try { await work } catch (err) { return (err as BazilError).code }
  return 'no error'
}

/** Sends raw bytes and collects reply lines until the server closes or `count` lines came. */
async function rawExchange (socketPath: string, data: string, count: number): Promise<Array<Record<string, any>>> {
  const socket = createConnection(socketPath)
  await once(socket, 'connect')
  const lines: Array<Record<string, any>> = []
  let buffered = ''
  return await new Promise((resolve, reject) => {
    socket.on('data', chunk => {
      buffered += chunk.toString()
      let i: number
      while ((i = buffered.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buffered.slice(0, i)))
        buffered = buffered.slice(i + 1)
      }
      if (lines.length >= count) { socket.destroy(); resolve(lines) }
    })
    socket.on('close', () => { resolve(lines) })
    socket.on('error', reject)
    socket.write(data)
  })
}

describe('control socket', () => {
  it('serves status, check and ping', async () => {
    const { client } = await setup()
    expect(await client.status()).toEqual(status)
    expect(await client.check()).toEqual(report)
    expect(await client.ping()).toEqual({ pid: process.pid })
  })

  it('streams progress of a transfer before its result', async () => {
    const { client } = await setup(stubApi({
      push: async (_path, _store, o) => {
        o?.onProgress?.({ objects: 1, total: 4, missing: 1, bytes: 10 })
        o?.onProgress?.({ objects: 4, total: 4, missing: 2, bytes: 20 })
        return { files: 1, objects: 4, missing: 2, bytes: 20, dryRun: false }
      }
    }))
    const seen: number[] = []
    const result = await client.push('/', 'box', { onProgress: p => { seen.push(p.objects) } })
    expect(seen).toEqual([1, 4])
    expect(result.missing).toBe(2)
  })

  it('creates the socket private (0600)', async () => {
    const { socketPath } = await setup()
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600)
  })

  it('answers concurrent calls on one connection by id', async () => {
    let release!: () => void
    const slow = new Promise<void>(resolve => { release = resolve })
    const { client } = await setup(stubApi({ check: async () => { await slow; return report } }))
    const check = client.check()
    expect(await client.status()).toEqual(status)
    release()
    expect(await check).toEqual(report)
  })

  it('keeps BazilError codes across the wire', async () => {
    const { client } = await setup(stubApi({
      status: async () => { throw new BazilError(ErrorCode.UNAVAILABLE, 'volume busy') },
      check: async () => { throw new BazilError(ErrorCode.CORRUPT, 'bad chunk') }
    }))
    const err = await client.status().then(() => undefined, (e: unknown) => e as BazilError)
    expect(err).toBeInstanceOf(BazilError)
    expect(err?.code).toBe(ErrorCode.UNAVAILABLE)
    expect(err?.message).toBe('volume busy')
    expect(await codeOf(client.check())).toBe(ErrorCode.CORRUPT)
  })

  it('reports a non-Bazil failure as IO', async () => {
    const { client } = await setup(stubApi({ status: async () => { throw new TypeError('oops') } }))
    expect(await codeOf(client.status())).toBe(ErrorCode.IO)
  })

  it('cancels a check on the server when the caller aborts', async () => {
    let serverSignal: AbortSignal | undefined
    const { client } = await setup(stubApi({
      check: async options => {
        serverSignal = options?.signal
        await new Promise(resolve => options?.signal?.addEventListener('abort', resolve))
        throw new BazilError(ErrorCode.ABORTED, 'aborted')
      }
    }))
    const controller = new AbortController()
    const check = client.check({ signal: controller.signal })
    await expect.poll(() => serverSignal).toBeDefined()
    controller.abort()
    expect(await codeOf(check)).toBe(ErrorCode.ABORTED)
    await expect.poll(() => serverSignal?.aborted).toBe(true)
    // The connection stays usable.
    expect(await client.status()).toEqual(status)
  })

  it('times out a call the daemon does not answer', async () => {
    const { client } = await setup(stubApi({ status: async () => await new Promise<StatusReport>(() => {}) }))
    expect(await codeOf(client.status({ timeoutMs: 50 }))).toBe(ErrorCode.TIMEOUT)
  })

  it('closes even when a request never settles', async () => {
    const socketPath = join(await tmpDir(), 'control.sock')
    const server = await serveControl(stubApi({ status: async () => await new Promise<StatusReport>(() => {}) }), socketPath, { closeGraceMs: 50 })
    const client = await connectControl(socketPath)
    const pending = codeOf(client.status())
    await new Promise(resolve => setTimeout(resolve, 10))
    await server.close()
    expect(await pending).toBe(ErrorCode.CLOSED)
    client.close()
  })

  it('answers stop, and close() waits for in-flight answers', async () => {
    const socketPath = join(await tmpDir(), 'control.sock')
    let stopped = false
    const server = await serveControl(stubApi({ stop: async () => { await new Promise(resolve => setTimeout(resolve, 50)); stopped = true } }), socketPath)
    const client = await connectControl(socketPath)
    const stop = client.stop()
    await new Promise(resolve => setTimeout(resolve, 10))
    await server.close()
    await stop
    expect(stopped).toBe(true)
    await expect(lstat(socketPath)).rejects.toThrow()
    expect(await codeOf(client.status())).toBe(ErrorCode.CLOSED)
    client.close()
  })

  it('says NOT_RUNNING when no socket exists', async () => {
    expect(await codeOf(connectControl(join(await tmpDir(), 'control.sock')))).toBe(ErrorCode.NOT_RUNNING)
  })

  it('says NOT_RUNNING for a socket left by a dead daemon, and a new server replaces it', async () => {
    const socketPath = join(await tmpDir(), 'control.sock')
    const child = spawn(process.execPath, ['-e',
      `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`])
    await once(child, 'exit')
    expect((await lstat(socketPath)).isSocket()).toBe(true)
    expect(await codeOf(connectControl(socketPath))).toBe(ErrorCode.NOT_RUNNING)
    const server = await serveControl(stubApi(), socketPath)
    onTestFinished(async () => { await server.close() })
    const client = await connectControl(socketPath)
    expect(await client.status()).toEqual(status)
    client.close()
  })

  it('refuses to replace a socket a live server answers on', async () => {
    const { socketPath } = await setup()
    expect(await codeOf(serveControl(stubApi(), socketPath))).toBe(ErrorCode.LOCKED)
  })

  it('refuses an oversized request and closes the connection', async () => {
    const { socketPath, client } = await setup()
    const replies = await rawExchange(socketPath, 'x'.repeat(CONTROL_MAX_REQUEST_BYTES + 10), 1)
    expect(replies).toEqual([{ id: null, error: { code: ErrorCode.TOO_BIG, message: expect.any(String) } }])
    expect(await client.status()).toEqual(status)
  })

  it('answers garbage with PROTOCOL and unknown methods with NOT_SUPPORTED', async () => {
    const { socketPath } = await setup()
    const unknown = await rawExchange(socketPath, JSON.stringify({ id: 7, method: 'format-disk' }) + '\n', 1)
    expect(unknown).toEqual([{ id: 7, error: { code: ErrorCode.NOT_SUPPORTED, message: expect.any(String) } }])
    for (const garbage of ['{not json\n', '[]\n', '{"id":1}\n', '{"method":"status"}\n', '{"id":1,"method":"status","params":3}\n']) {
      const replies = await rawExchange(socketPath, garbage, 1)
      expect(replies).toEqual([{ id: null, error: { code: ErrorCode.PROTOCOL, message: expect.any(String) } }])
    }
  })

  it('handles requests split across writes and several in one write', async () => {
    const { socketPath } = await setup()
    const socket = createConnection(socketPath)
    await once(socket, 'connect')
    const request = JSON.stringify({ id: 1, method: 'ping' }) + '\n' + JSON.stringify({ id: 2, method: 'status' }) + '\n'
    const got: string[] = []
    socket.on('data', chunk => { got.push(chunk.toString()) })
    for (const char of request.slice(0, 10)) socket.write(char)
    socket.write(request.slice(10))
    await expect.poll(() => got.join('').split('\n').filter(Boolean).length).toBe(2)
    const replies = got.join('').split('\n').filter(Boolean).map(line => JSON.parse(line))
    expect(replies.map(r => r.id).sort()).toEqual([1, 2])
    socket.destroy()
  })
})
