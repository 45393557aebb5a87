// Apollo Server 5 (standalone, Node's http server) with the benchmark's schema and data.
import { ApolloServer } from '@apollo/server'
import { startStandaloneServer } from '@apollo/server/standalone'
import { port, resolvers, typeDefs } from './data.mjs'

const server = new ApolloServer({ typeDefs, resolvers })
const { url } = await startStandaloneServer(server, { listen: { port, host: '127.0.0.1' } })
console.log(`apollo ready at ${url}`)
