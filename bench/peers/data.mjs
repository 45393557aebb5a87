// The schema and the demo data every peer serves: the gateway's own SDL, and the clusters
// the gateway answered when the benchmark started (a JSON file it writes), held in memory.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const schemaPath = fileURLToPath(new URL('../../schema/schema.graphql', import.meta.url))

export const typeDefs = readFileSync(schemaPath, 'utf8')

const clusters = JSON.parse(readFileSync(process.env.BENCH_DATA, 'utf8'))

export const resolvers = {
  Query: {
    cluster: (_, { identifier }) => clusters[identifier] ?? null,
    clusters: (_, { identifiers }) => identifiers.map((identifier) => clusters[identifier] ?? null),
  },
  Cluster: {
    freshness: (cluster) => cluster.freshness,
  },
  Freshness: {
    // Seconds since the value was fetched, to the millisecond, as the gateway states it.
    ageSeconds: (freshness) =>
      Math.round((Date.now() / 1000 - Date.parse(freshness.fetchedAt) / 1000) * 1000) / 1000,
  },
}

export const port = Number(process.env.PORT ?? 4000)
