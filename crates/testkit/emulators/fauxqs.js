#!/usr/bin/env node
// Starts fauxqs (in-memory SQS/SNS/S3 emulator) bound to 127.0.0.1 only.
//
//   node fauxqs.js [--port N] [--region us-east-1] [--verbose 1]
//
// --port 0 (the default) picks a free port. fauxqs' own startFauxqs() always listens
// on 0.0.0.0, so this uses its exported buildApp() and calls listen() on 127.0.0.1.
// Queue URLs are http://127.0.0.1:<port>/000000000000/<name> with the real port, whatever
// Host header the request carried (fauxqs' own default, sqs.<region>.localhost:<port>,
// does not resolve on most machines), and an SQS call POSTed to a queue URL itself (as
// `curl -X POST $QUEUE_URL -H 'X-Amz-Target: AmazonSQS.SendMessage' ...` does) is served
// like one POSTed to /, so a URL works exactly as printed.
// --region is only the fallback when the region cannot be read from the SigV4
// Authorization header. --verbose 1 turns on fastify's request log (stderr).
// Readiness: exactly one line `LISTENING <port>` on stdout; everything else goes to stderr.
// Exits on SIGTERM/SIGINT, and by itself when its parent process dies (unless
// SAMEDAY_EMULATOR_DETACHED=1, set by `sameday-stack`: then it outlives its starter).
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
  const store = path.join(npmDir(), 'node_modules', 'fauxqs', 'dist', 'sqs', 'sqsStore.js')
  const { SqsStore } = await import(pathToFileURL(store).href)
  const sqsStore = new SqsStore()
  let listening = 0
  // An empty host makes fauxqs use its host argument as is: pass 127.0.0.1 and the real port.
  sqsStore.host = ''
  const buildQueueUrl = sqsStore.buildQueueUrl.bind(sqsStore)
  sqsStore.buildQueueUrl = (name, _port, _requestHost, region) =>
    buildQueueUrl(name, '', `127.0.0.1:${listening}`, region)
  const app = buildApp({ logger: verbose, defaultRegion: args.region || 'us-east-1', stores: { sqsStore } })
  // fauxqs routes SQS (JSON protocol) only at POST /; send SQS calls made to a queue URL there.
  const [fastifyHandler] = app.server.listeners('request')
  app.server.removeAllListeners('request')
  app.server.on('request', (req, res) => {
    if (req.method === 'POST' && String(req.headers['x-amz-target'] || '').startsWith('AmazonSQS.')) req.url = '/'
    fastifyHandler(req, res)
  })
  await app.listen({ port, host: '127.0.0.1' })
  listening = app.server.address().port
  process.stdout.write(`LISTENING ${listening}\n`)

  exitWithParent()
}

main().catch((err) => {
  console.error(`fauxqs.js: ${err.stack || err}`)
  process.exit(err && err.code === 'EADDRINUSE' ? 1 : 2)
})
