#!/usr/bin/env node
// `npm run bench`: loads tsx, then runs the TypeScript benchmark in scripts/bench/ (main.ts).
import { register } from 'tsx/esm/api'

register()
await import('./bench/main.ts')
