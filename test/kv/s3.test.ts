/**
 * S3Store against a real S3 (Ceph's RADOS Gateway, test/helpers/rgw.ts): the KV compliance
 * suite in a fresh bucket and under a fresh prefix of a shared bucket, plus what only a remote
 * store has: its object layout, refused credentials, a gateway that is down or hung, listings
 * longer than one page, and configuration errors.
 */
import { randomBytes } from 'node:crypto'
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { S3Store } from '../../src/kv/s3.ts'
import type { S3StoreConfig } from '../../src/kv/s3.ts'
import { kvComplianceSuite } from '../compliance/kv.suite.ts'
import { sharedRgw, startRgw } from '../helpers/rgw.ts'
import type { RgwEndpoint } from '../helpers/rgw.ts'

const rgw = await sharedRgw()

if ('unavailable' in rgw) {
  it('runs S3Store against a real RADOS Gateway', (ctx) => { ctx.skip(rgw.unavailable) })
} else {
  s3Tests(rgw)
}

function s3Tests (rgw: RgwEndpoint): void {
  let buckets = 0
  /** A bucket name no other test (or concurrent run on this cluster) uses. */
  const freshBucket = (): string => `bazil-${process.pid}-${buckets++}-${randomBytes(3).toString('hex')}`
  const credentials = { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey }
  const plainClient = (endpoint: RgwEndpoint = rgw): S3Client => {
    const client = new S3Client({
      endpoint: endpoint.endpoint, region: endpoint.region, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED',
      credentials: { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey }
    })
    onTestFinished(() => { client.destroy() })
    return client
  }

  async function openStore (config: Partial<S3StoreConfig> = {}, endpoint: RgwEndpoint = rgw): Promise<S3Store> {
    const store = await S3Store.open({
      bucket: freshBucket(), createBucket: true, endpoint: endpoint.endpoint, region: endpoint.region,
      credentials: { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey }, ...config
    })
    onTestFinished(async () => { await store.close() })
    return store
  }

  kvComplianceSuite('S3Store in a fresh bucket', async () => {
    const store = await S3Store.open({ bucket: freshBucket(), createBucket: true, endpoint: rgw.endpoint, region: rgw.region, credentials })
    return { kv: store, teardown: async () => { await store.close() } }
  })

  // One bucket shared by many stores, each under its own prefix, with a neighbour's objects
  // beside them (prefix 'p' next to 'pp' and 'p/q'): none may leak into keys() or stat().
  const sharedBucket = freshBucket()
  let prefixes = 0
  kvComplianceSuite('S3Store under a prefix of a shared bucket', async () => {
    const prefix = `p${prefixes++}`
    const store = await S3Store.open({ bucket: sharedBucket, prefix, createBucket: true, endpoint: rgw.endpoint, region: rgw.region, credentials })
    for (const neighbour of [`${prefix}p`, `${prefix}/q`]) {
      const other = await S3Store.open({ bucket: sharedBucket, prefix: neighbour, endpoint: rgw.endpoint, region: rgw.region, credentials })
      await other.put(randomBytes(32), randomBytes(7))
      await other.close()
    }
    return { kv: store, teardown: async () => { await store.close() } }
  })

  describe('S3Store', () => {
    it('stores a value as the object <prefix>objects/<hex>, holding exactly its bytes', async () => {
      const store = await openStore({ prefix: 'vol/one' })
      const key = randomBytes(32)
      const value = randomBytes(300_000)
      await store.put(key, value)
      const got = await plainClient().send(new GetObjectCommand({ Bucket: store.bucket, Key: `vol/one/objects/${key.toString('hex')}` }))
      const body = Buffer.from(await got.Body!.transformToByteArray())
      expect(got.ContentLength).toBe(value.byteLength)
      expect(Buffer.compare(body, value)).toBe(0)
    })

    it('does not rewrite an object that is already there', async () => {
      const store = await openStore()
      const key = randomBytes(32)
      const first = randomBytes(100)
      await plainClient().send(new PutObjectCommand({ Bucket: store.bucket, Key: `objects/${key.toString('hex')}`, Body: first }))
      // A different value breaks content addressing on purpose, to see which bytes survive.
      await store.put(key, randomBytes(100))
      expect(Buffer.compare(await store.get(key), first)).toBe(0)
    })

    it('lists every key and sums every size past one page of 1,000', async () => {
      const store = await openStore({ concurrency: 16 })
      const keys = Array.from({ length: 1050 }, () => randomBytes(32))
      const sizes = keys.map((_, i) => i % 3)
      await Promise.all(keys.map(async (key, i) => { await store.put(key, randomBytes(sizes[i]!)) }))
      const listed: string[] = []
      for await (const key of store.keys()) listed.push(Buffer.from(key).toString('hex'))
      expect(listed.length).toBe(keys.length)
      expect(listed.sort()).toEqual(keys.map(key => key.toString('hex')).sort())
      expect(await store.stat()).toEqual({ objects: 1050, bytes: sizes.reduce((sum, size) => sum + size, 0) })
    })

    it('rejects a wrong secret or an unknown access key with PERMISSION', async () => {
      const store = await openStore()
      const key = randomBytes(32)
      await store.put(key, randomBytes(10))
      for (const wrong of [{ ...credentials, secretAccessKey: 'not-the-secret' }, { ...credentials, accessKeyId: 'NOSUCHKEY' }]) {
        const refused = await S3Store.open({ bucket: store.bucket, endpoint: rgw.endpoint, region: rgw.region, credentials: wrong })
        onTestFinished(async () => { await refused.close() })
        await expectCode(refused.get(key), ErrorCode.PERMISSION)
        await expectCode(refused.put(randomBytes(32), randomBytes(10)), ErrorCode.PERMISSION)
        await expectCode(refused.has(key), ErrorCode.PERMISSION)
        await expectCode(collect(refused.keys()), ErrorCode.PERMISSION)
        await expectCode(refused.check(), ErrorCode.PERMISSION)
      }
      await expectCode(S3Store.open({
        bucket: freshBucket(), createBucket: true, endpoint: rgw.endpoint, region: rgw.region, credentials: { ...credentials, secretAccessKey: 'x' }
      }), ErrorCode.PERMISSION)
    })

    it('check(): resolves for a usable bucket, NOT_FOUND for a missing one', async () => {
      const store = await openStore()
      await store.check()
      const missing = await S3Store.open({ bucket: freshBucket(), endpoint: rgw.endpoint, region: rgw.region, credentials })
      onTestFinished(async () => { await missing.close() })
      await expectCode(missing.check(), ErrorCode.NOT_FOUND)
      await expectCode(missing.get(randomBytes(32)), ErrorCode.NOT_FOUND)
    })

    it('aborts requests in flight and queued on close(), then refuses calls with CLOSED', async () => {
      const store = await openStore({ concurrency: 1 })
      const key = randomBytes(32)
      await store.put(key, randomBytes(4 * 1024 * 1024))
      const gets = Array.from({ length: 3 }, async () => await store.get(key).then(() => 'resolved', (err: unknown) => codeOf(err)))
      await store.close()
      for (const outcome of await Promise.all(gets)) expect(['resolved', ErrorCode.CLOSED]).toContain(outcome)
      expect(await Promise.all(gets)).toContain(ErrorCode.CLOSED) // the queued ones at least
      await expectCode(store.get(key), ErrorCode.CLOSED)
      await expectCode(store.put(randomBytes(32), randomBytes(1)), ErrorCode.CLOSED)
    })

    it('refuses a bad configuration with INVALID', async () => {
      vi.stubEnv('AWS_ACCESS_KEY_ID', undefined)
      vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined)
      onTestFinished(() => { vi.unstubAllEnvs() })
      const base = { bucket: 'b', endpoint: rgw.endpoint, credentials }
      await expectCode(S3Store.open({ bucket: 'b', endpoint: rgw.endpoint }), ErrorCode.INVALID)
      await expectCode(S3Store.open({ ...base, bucket: '' }), ErrorCode.INVALID)
      await expectCode(S3Store.open({ ...base, prefix: '/abs' }), ErrorCode.INVALID)
      await expectCode(S3Store.open({ ...base, timeoutMs: 0 }), ErrorCode.INVALID)
      await expectCode(S3Store.open({ ...base, concurrency: 0 }), ErrorCode.INVALID)
      const store = await openStore()
      await expectCode(store.get(new Uint8Array(1)), ErrorCode.INVALID)
      await expectCode(store.put(new Uint8Array(128), randomBytes(1)), ErrorCode.INVALID)
    })

    it('fails with UNAVAILABLE while the gateway is hung or down, and works again after a restart', async () => {
      const own = await startRgw() // a private cluster: this test kills its gateway
      const timeoutMs = 1000
      const store = await openStore({ timeoutMs }, own)
      const key = randomBytes(32)
      const value = randomBytes(1000)
      await store.put(key, value)

      // Stopped, the gateway's kernel still accepts connections; only the deadline ends a request.
      own.pause()
      await expectCode(store.get(key), ErrorCode.UNAVAILABLE)
      // (It may still land: its request waits in the socket for the gateway to wake.)
      await expectCode(store.put(randomBytes(32), value), ErrorCode.UNAVAILABLE)
      own.resume()
      expect(Buffer.compare(await store.get(key), value)).toBe(0)

      await own.kill()
      await expectCode(store.get(key), ErrorCode.UNAVAILABLE)
      await expectCode(store.put(randomBytes(32), value), ErrorCode.UNAVAILABLE)
      await expectCode(collect(store.keys()), ErrorCode.UNAVAILABLE)

      await own.restart()
      expect(Buffer.compare(await store.get(key), value)).toBe(0)
      const other = randomBytes(32)
      await store.put(other, value)
      expect(Buffer.compare(await store.get(other), value)).toBe(0)
      const listed: string[] = []
      for await (const k of store.keys()) listed.push(Buffer.from(k).toString('hex'))
      expect(listed).toEqual(expect.arrayContaining([key.toString('hex'), other.toString('hex')]))
    })

    it('works through a bucket made by another client, with the prefix given with or without its slash', async () => {
      const bucket = freshBucket()
      await plainClient().send(new CreateBucketCommand({ Bucket: bucket }))
      const key = randomBytes(32)
      const value = randomBytes(50)
      const a = await openStore({ bucket, prefix: 'x/', createBucket: false })
      await a.put(key, value)
      const b = await openStore({ bucket, prefix: 'x', createBucket: false })
      expect(Buffer.compare(await b.get(key), value)).toBe(0)
    })
  })
}

async function collect (keys: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0
  for await (const _ of keys) n++
  return n
}

function codeOf (err: unknown): string {
  return err instanceof BazilError ? err.code : String(err)
}

async function expectCode (promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const outcome = await promise.then(() => 'resolved', (err: unknown) => codeOf(err))
  expect(outcome).toBe(code)
}
