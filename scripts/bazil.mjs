#!/usr/bin/env node
// The `bazil` command: runs the TypeScript CLI (src/cli/main.ts) through tsx's ESM loader, so
// there is no build step. Polyfills load first, before anything that might pull in libp2p.
import { register } from 'tsx/esm/api'

register()
await import('../src/util/polyfills.ts')
const { main } = await import('../src/cli/main.ts')
const code = await main(process.argv)
// Exit explicitly: a stopped daemon may leave handles (timers, sockets) that would keep the
// process alive. stdout and stderr are synchronous for files, pipes and terminals on Linux.
process.exit(code)
