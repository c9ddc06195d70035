/**
 * A NodeApi that does nothing, for tests of the control socket and the CLI: every method
 * answers an empty result unless the test overrides it.
 */
import type { NodeApi, StatusReport } from '../../src/node/api.ts'

export const stubStatus: StatusReport = {
  home: '/h', volume: 'default', mount: '/m', pid: 4242, peerId: '12D3KooWfake', chunks: 1234,
  storedBytes: 5 * 1024 * 1024, logicalBytes: 1536, files: 7, directories: 2,
  replication: [], peers: [], listen: [], startedAt: '2025-01-01T00:00:00.000Z'
}

export function stubApi (overrides: Partial<NodeApi> = {}): NodeApi {
  const none = { files: 0, objects: 0, missing: 0, bytes: 0, dryRun: false }
  return {
    status: async () => stubStatus,
    check: async () => ({ files: 0, chunksChecked: 0, bytesChecked: 0, problems: [], ok: true }),
    stop: async () => {},
    storeAdd: async () => [],
    storeList: async () => [],
    storeRemove: async () => [],
    get: async () => none,
    push: async () => none,
    peers: async () => [],
    invite: async () => ({ code: 'bazil1test', expiresAt: 0 }),
    peersRemove: async () => [],
    ...overrides
  }
}
