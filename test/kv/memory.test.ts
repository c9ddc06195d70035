/** MemoryStore against the KV compliance suite. */
import { kvComplianceSuite } from '../compliance/kv.suite.ts'
import { MemoryStore } from '../../src/kv/memory.ts'

kvComplianceSuite('MemoryStore', async () => ({ kv: new MemoryStore() }))
