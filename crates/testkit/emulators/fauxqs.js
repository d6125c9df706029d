#!/usr/bin/env node
// Starts fauxqs (in-memory SQS/SNS/S3 emulator) bound to 127.0.0.1 only.
//
//   node fauxqs.js [--port N] [--region us-east-1] [--verbose 1]
//
// --port 0 (the default) picks a free port. fauxqs' own startFauxqs() always listens
// on 0.0.0.0, so this uses its exported buildApp() and calls listen() on 127.0.0.1.
// Queue URLs are built from the request's Host header (http://127.0.0.1:<port>/000000000000/<name>).
// --region is only the fallback when the region cannot be read from the SigV4
// Authorization header. --verbose 1 turns on fastify's request log (stderr).
// Readiness: exactly one line `LISTENING <port>` on stdout; everything else goes to stderr.
// Exits on SIGTERM/SIGINT, and by itself when its parent process dies.
// fauxqs is loaded from $SAMEDAY_NPM_DIR/node_modules, else
// $SAMEDAY_CACHE/npm/node_modules, else <repo>/.cache/npm/node_modules.
'use strict'

const path = require('path')
const { pathToFileURL } = require('url')
const { parseArgs, npmDir, intArg, exitWithParent } = require('./wrapper')


async function main() {
  const args = parseArgs(process.argv.slice(2), ['port', 'region', 'verbose'])
  const port = intArg(args, 'port', 0)
  if (port > 65535) throw new Error('--port must be 0..65535')
  const verbose = args.verbose !== undefined && args.verbose !== '0' && args.verbose !== 'false'

  // fauxqs is ESM with an import-only "exports" map: import its entry file by absolute URL.
  const entry = path.join(npmDir(), 'node_modules', 'fauxqs', 'dist', 'app.js')
  const { buildApp } = await import(pathToFileURL(entry).href)
  const app = buildApp({ logger: verbose, defaultRegion: args.region || 'us-east-1' })
  await app.listen({ port, host: '127.0.0.1' })
  process.stdout.write(`LISTENING ${app.server.address().port}\n`)

  exitWithParent()
}

main().catch((err) => {
  console.error(`fauxqs.js: ${err.stack || err}`)
  process.exit(err && err.code === 'EADDRINUSE' ? 1 : 2)
})
