"""pcs-gateway: a GraphQL gateway in front of AWS Parallel Computing Service."""
