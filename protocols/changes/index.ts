/**
 * /bazil/changes/1.0.0: paired devices pull each other's change logs and tell each other their
 * heads. See changes.proto for the exchange, constants.ts for its bounds, service.ts for the API.
 */
export { changeLog } from './service.ts'
export type { ChangeLog, ChangeLogComponents, ChangeLogInit, ChangeSource } from './service.ts'
export type { ChangeRecord } from './wire.ts'
export * from './constants.ts'
