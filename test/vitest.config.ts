import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // FUSE and daemon tests share the machine's mounts and ports: run files one at a time.
    fileParallelism: false,
    pool: 'forks'
  }
})
