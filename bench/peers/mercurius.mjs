// Mercurius on Fastify, compiling each repeated query with graphql-jit after its first run,
// with automatic persisted queries as Apollo clients send them.
import Fastify from 'fastify'
import mercurius from 'mercurius'
import { port, resolvers, typeDefs } from './data.mjs'

const app = Fastify({ logger: false })
app.register(mercurius, {
  schema: typeDefs,
  resolvers,
  jit: 1,
  path: '/graphql',
  persistedQueryProvider: mercurius.persistedQueryDefaults.automatic(),
})
await app.listen({ port, host: '127.0.0.1' })
console.log(`mercurius ready on ${port}`)
