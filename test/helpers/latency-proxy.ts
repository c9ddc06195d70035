/**
 * A slow network in front of an HTTP server (the S3 gateway): a reverse proxy on a free
 * loopback port that holds every request for `latencyMs` before forwarding it, streams bodies
 * both ways, and counts what it sees — requests, and requests the client gave up on before the
 * answer was complete (a fan-out cancelling its slower store shows up here as `aborted`; the
 * upstream request is then cancelled too). Headers pass through unchanged, Host included, so
 * AWS signatures made for the proxy's address stay valid.
 *
 * Why not `toxy` (npm, suggested in ../shared/TESTING.md): 0.3.16 installs and runs on Node 20
 * and proxies a plain node:http server, but the AWS SDK's requests through it to radosgw ended
 * in "socket hang up" (ECONNRESET, from the first request: creating the bucket); tried here on
 * 2026-12-04. Forty lines of node:http do what the tests need and count cancellations too.
 *
 * `startLatencyProxy()` closes it after the current test (or file); `bootLatencyProxy()` leaves
 * that to the caller (the bench).
 */
import { request } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:http'

export interface LatencyProxy {
  /** The proxy's base URL, e.g. http://127.0.0.1:PORT. */
  url: string
  /** Milliseconds every request is held before it is forwarded (change at any time). */
  latencyMs: number
  /** What the proxy has seen since it started (or since `reset()`). */
  readonly stats: { requests: number, aborted: number }
  reset: () => void
  close: () => Promise<void>
}

export async function startLatencyProxy (target: string, latencyMs = 0): Promise<LatencyProxy> {
  const proxy = await bootLatencyProxy(target, latencyMs)
  const { afterAll, onTestFinished } = await import('vitest')
  try {
    onTestFinished(proxy.close)
  } catch {
    afterAll(proxy.close)
  }
  return proxy
}

export async function bootLatencyProxy (target: string, latencyMs = 0): Promise<LatencyProxy> {
  const upstream = new URL(target)
  const stats = { requests: 0, aborted: 0 }
  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const out = request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers
    }, answer => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    out.on('error', () => { res.destroy() })
    res.on('close', () => { if (!res.writableFinished) out.destroy() })
    req.pipe(out)
  }
  const server = createServer((req, res) => {
    stats.requests++
    res.on('close', () => { if (!res.writableFinished) stats.aborted++ })
    const delay = state.latencyMs
    if (delay <= 0) { forward(req, res); return }
    const timer = setTimeout(() => { if (!res.destroyed) forward(req, res) }, delay)
    res.on('close', () => { clearTimeout(timer) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve() })
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const state: LatencyProxy = {
    url: `http://127.0.0.1:${port}`,
    latencyMs,
    stats,
    reset: () => { stats.requests = 0; stats.aborted = 0 },
    close: async () => {
      if (!server.listening) return
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
  return state
}
