"""Coordination of replicas through Redis: leases, change channels, the shared rate budget.

Imports nothing of the gateway but its settings: the service and PCS layers use it, and
it knows nothing of them.
"""
