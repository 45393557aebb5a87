"""The resource graph as tests ask for it: shared operations, the emulator's counts."""

from __future__ import annotations

from gateway.emulator.seed import demo_regions
from tests.support.servers import Emulator

DETAIL = """
query ClusterDetail($id: String!) {
  cluster(identifier: $id) {
    name id status
    tags { key value }
    queues {
      nodes {
        name id arn status statusRaw clusterId createdAt modifiedAt
        computeNodeGroupConfigurations { computeNodeGroupId }
        slurmConfiguration { slurmCustomSettings { parameterName parameterValue } }
        errorInfo { code message }
        tags { key value }
      }
    }
    computeNodeGroups {
      nodes {
        name id status amiId subnetIds purchaseOption purchaseOptionRaw
        scalingConfiguration { minInstanceCount maxInstanceCount }
        instanceConfigs { instanceType }
        errorInfo { code message }
        tags { key value }
      }
    }
  }
}
"""

PAGE = """
query Page($first: Int!, $after: String) {
  clusterList(first: $first, after: $after) {
    edges { cursor node { name id status } }
    nodes { name }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


def counts(emulator: Emulator) -> dict[str, int]:
    """Calls the emulator received, by operation, leaving out those with none."""
    found = emulator.http.get("/_emulator/calls").json()
    return {k: v for k, v in found.items() if isinstance(v, int) and v}


def seeded(region: str = "us-east-1") -> list[str]:
    """The names of the demo clusters of a region, in PCS's order."""
    return sorted(c["name"] for c in demo_regions()[region])


#: The calls of DETAIL for demo-full (4 queues, 6 node groups, 11 resources with tags), cold.
EXPECTED_COLD = {
    "GetCluster": 1,
    "ListQueues": 1,
    "ListComputeNodeGroups": 1,
    "GetQueue": 4,
    "GetComputeNodeGroup": 6,
    "ListTagsForResource": 11,
}
