/**
 * Measures the hot-path candidates on this machine: hashes, AEADs, the chunker and the full
 * seal/open path, in MB/s (10^6 bytes/s) on 1 MiB buffers. Each figure is the best of 5 rounds of
 * at least ~0.3 s (best, not median: on a shared 2-core VM the slow rounds measure the neighbours)
 * and the median is shown beside it. The numbers behind docs/DECISIONS.md.
 * Run: `npx tsx scripts/measure-crypto.ts`.
 */
import { createCipheriv, createHash, createHmac, randomFillSync } from 'node:crypto'
import { blake3 } from '@noble/hashes/blake3.js'
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { DEFAULT_CHUNKER_PARAMS, chunkLengths } from '../src/cas/chunker.ts'
import { deriveContentKeys } from '../src/cas/keys.ts'
import { chunkId, open, seal } from '../src/cas/seal.ts'

const MiB = 1024 * 1024

function randomBytes (length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let at = 0; at < length; at += 65536) randomFillSync(out, at, Math.min(65536, length - at))
  return out
}

interface Rate { best: number, median: number, faultsPerMiB: number }

/** Runs `fn` (which processes `bytesPerCall` bytes) repeatedly; MB/s of the best and median round. */
function rate (bytesPerCall: number, fn: () => void, minSeconds = 0.3): Rate {
  fn() // warm up (JIT, first touch of fresh memory)
  const rounds: number[] = []
  const faults0 = process.resourceUsage().minorPageFault
  let bytes = 0
  for (let round = 0; round < 5; round++) {
    let calls = 0
    const t0 = performance.now()
    let elapsed = 0
    while (elapsed < minSeconds * 1000 || calls < 2) {
      fn(); calls++
      elapsed = performance.now() - t0
    }
    rounds.push(bytesPerCall * calls / 1e6 / (elapsed / 1000))
    bytes += bytesPerCall * calls
  }
  const faultsPerMiB = (process.resourceUsage().minorPageFault - faults0) / (bytes / MiB)
  rounds.sort((a, b) => b - a)
  return { best: rounds[0]!, median: rounds[2]!, faultsPerMiB }
}

function print (name: string, { best, median, faultsPerMiB }: Rate, note = ''): void {
  const figures = `${best.toFixed(0).padStart(6)} MB/s (median ${median.toFixed(0).padStart(4)}, ` +
    `${faultsPerMiB.toFixed(0).padStart(3)} page faults/MiB)`
  process.stdout.write(`${name.padEnd(42)} ${figures}${note === '' ? '' : `  ${note}`}\n`)
}

const buf = randomBytes(MiB)
const key32 = randomBytes(32)
const nonce12 = new Uint8Array(12)
const keys = deriveContentKeys(randomBytes(32))

// glibc malloc tunables change results a lot (fresh 1 MiB allocations fault in every page; see
// docs/DECISIONS.md "Hot-path crypto uses node:crypto"), so print them with the results.
const mallocEnv = Object.entries(process.env).filter(([name]) => name.startsWith('MALLOC_'))
  .map(([name, value]) => `${name}=${value ?? ''}`).join(' ')
process.stdout.write(`# ${new Date().toISOString()}  node ${process.version}  ${process.arch}  ${mallocEnv === '' ? 'default malloc' : mallocEnv}\n`)
process.stdout.write('## primitives, 1 MiB buffers\n')
print('node:crypto SHA-256', rate(MiB, () => { createHash('sha256').update(buf).digest() }))
print('node:crypto HMAC-SHA256', rate(MiB, () => { createHmac('sha256', key32).update(buf).digest() }))
print('node:crypto AES-256-GCM (encrypt)', rate(MiB, () => {
  const c = createCipheriv('aes-256-gcm', key32, nonce12); c.update(buf); c.final(); c.getAuthTag()
}))
print('node:crypto ChaCha20-Poly1305 (encrypt)', rate(MiB, () => {
  const c = createCipheriv('chacha20-poly1305', key32, nonce12, { authTagLength: 16 }); c.update(buf); c.final(); c.getAuthTag()
}))
print('@noble/hashes BLAKE3', rate(MiB, () => { blake3(buf) }, 0.15))
print('@noble/hashes SHA-256', rate(MiB, () => { nobleSha256(buf) }, 0.15))

process.stdout.write('## chunker (FastCDC, default 256 KiB / 1 MiB / 4 MiB)\n')
const big = randomBytes(64 * MiB)
let lengths: number[] = []
print('chunkLengths, 64 MiB buffer (effective)', rate(big.length, () => { lengths = chunkLengths(big) }),
  `${lengths.length} chunks, mean ${(big.length / lengths.length / 1024).toFixed(0)} KiB`)
const everyByte = { minSize: 1, avgSize: MiB, maxSize: 4 * MiB }
print('gear hash over every byte (minSize 1)', rate(big.length, () => { chunkLengths(big, everyByte) }))
print('chunkLengths, 1 MiB buffer', rate(MiB, () => { chunkLengths(buf) }), '(one chunk; first 256 KiB skipped)')

process.stdout.write('## seal path (chunkId + seal, open + verify)\n')
for (const size of [MiB, 256 * 1024, 64 * 1024]) {
  const plain = buf.subarray(0, size)
  const id = chunkId(keys, plain)
  const sealed = seal(keys, id, plain)
  const label = `${size / 1024} KiB`
  print(`chunkId + seal, ${label}`, rate(size, () => { seal(keys, chunkId(keys, plain), plain) }))
  print(`open + verify, ${label}`, rate(size, () => { open(keys, id, sealed) }))
}
print('write path: chunk + id + seal, 64 MiB', rate(big.length, () => {
  let at = 0
  for (const length of chunkLengths(big, DEFAULT_CHUNKER_PARAMS)) {
    const plain = big.subarray(at, at + length)
    seal(keys, chunkId(keys, plain), plain)
    at += length
  }
}, 0.5))

process.stdout.write('## chunker locality (insert 100 bytes; bytes in chunks not already stored)\n')
const known = new Set<string>()
let at = 0
for (const length of lengths) {
  known.add(createHash('sha256').update(big.subarray(at, at + length)).digest('hex')); at += length
}
for (const where of [1000, 32 * MiB + 12345]) {
  const edited = new Uint8Array(big.length + 100)
  edited.set(big.subarray(0, where)); edited.set(randomBytes(100), where); edited.set(big.subarray(where), where + 100)
  let fresh = 0
  let freshChunks = 0
  let offset = 0
  for (const length of chunkLengths(edited)) {
    const hash = createHash('sha256').update(edited.subarray(offset, offset + length)).digest('hex')
    if (!known.has(hash)) { fresh += length; freshChunks++ }
    offset += length
  }
  process.stdout.write(`insert at ${where}: ${freshChunks} new chunks, ${(fresh / MiB).toFixed(2)} MiB re-stored of 64 MiB\n`)
}
