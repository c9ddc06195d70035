#!/usr/bin/env node
// The `bazil` command: runs the TypeScript CLI (src/cli/main.ts) through tsx's ESM loader, so
// there is no build step. Polyfills load first, before anything that might pull in libp2p.
// The daemon's chunk store fsyncs on libuv's thread pool; the default 4 threads let those
// fsyncs queue reads behind them. Must be set before the pool's first use, hence before tsx.
process.env.UV_THREADPOOL_SIZE ??= '16'
const { register } = await import('tsx/esm/api')

register()
await import('../src/util/polyfills.ts')
const { main } = await import('../src/cli/main.ts')
const code = await main(process.argv)
// Exit explicitly: a stopped daemon may leave handles (timers, sockets) that would keep the
// process alive. stdout and stderr are synchronous for files, pipes and terminals on Linux.
process.exit(code)
