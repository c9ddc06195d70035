import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/**/*.test.ts'],
    // libp2p 3 calls Promise.withResolvers (Node 22): polyfilled before any test module loads.
    setupFiles: ['src/util/polyfills.ts'],
    globalSetup: ['test/helpers/rgw-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // FUSE and daemon tests share the machine's mounts and ports: run files one at a time.
    fileParallelism: false,
    pool: 'forks'
  }
})
